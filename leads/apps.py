from django.apps import AppConfig


class LeadsConfig(AppConfig):
    name = "leads"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from leads.signals import ensure_import_schedules

        post_migrate.connect(ensure_import_schedules, sender=self)
