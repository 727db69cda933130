from django.apps import AppConfig


class TemplatingConfig(AppConfig):
    name = "templating"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from templating.signals import ensure_purge_schedule

        post_migrate.connect(ensure_purge_schedule, sender=self)
