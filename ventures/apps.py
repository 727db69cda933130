from django.apps import AppConfig


class VenturesConfig(AppConfig):
    name = "ventures"

    def ready(self) -> None:
        from django.db.backends.signals import connection_created
        from django.db.models.signals import post_migrate

        from ventures.db import register_sqlite_functions
        from ventures.roles import sync_roles_after_migrate
        from ventures.signals import ensure_worker_schedules

        connection_created.connect(register_sqlite_functions)
        post_migrate.connect(ensure_worker_schedules, sender=self)
        post_migrate.connect(sync_roles_after_migrate)
