from django.apps import AppConfig


class LeadsConfig(AppConfig):
    name = "leads"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from leads.signals import ensure_import_schedules
        from leads.suppression import venture_delete_refusals
        from ventures.admin_toolkit import register_delete_refusals

        post_migrate.connect(ensure_import_schedules, sender=self)
        # The console's guarded delete keeps a venture whose suppression list holds entries.
        register_delete_refusals("ventures.venture", "suppressions", venture_delete_refusals)
