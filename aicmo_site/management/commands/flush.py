"""`flush`, allowed to empty the append-only audit table (a maintenance and test operation)."""

from django.core.management.commands.flush import Command as FlushCommand

from ventures.db import allow_audit_purge


class Command(FlushCommand):
    def handle(self, **options):
        with allow_audit_purge():
            return super().handle(**options)
