from django.apps import AppConfig


class TemplatingConfig(AppConfig):
    name = "templating"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from templating.campaign_code import templates_dump, templates_load
        from templating.signals import ensure_purge_schedule
        from ventures.campaign_code import register_section

        post_migrate.connect(ensure_purge_schedule, sender=self)
        # `[[templates]]` in campaign TOML files; before outreach's [sequence], which uses them.
        register_section("templates", load=templates_load, dump=templates_dump, order=20)
