"""`preflight`: is this installation fit to run, and in live mode to send?

Prints one line per failure or warning and exits non-zero when any check fails.
"""

from __future__ import annotations

import json

from django.core.management.base import CommandError, CommandParser

from ventures.commands import ProjectCommand
from ventures.preflight import run_preflight


class Command(ProjectCommand):
    help = "Check database, migrations, settings for the send mode, artifact dir and worker."
    # This command reports the system checks itself, one line each, instead of Django's block.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--mode",
            choices=["proof", "live"],
            help="Check for this send mode (default: AICMO_SEND_MODE).",
        )
        parser.add_argument("--json", action="store_true", help="Machine-readable output.")

    def handle(self, *args, **options) -> None:
        messages = run_preflight(mode=options["mode"])
        errors = [m for m in messages if m.is_serious()]
        warnings = [m for m in messages if not m.is_serious()]
        if options["json"]:
            self.stdout.write(
                json.dumps(
                    {
                        "ok": not errors,
                        "errors": [{"id": m.id, "message": m.msg} for m in errors],
                        "warnings": [{"id": m.id, "message": m.msg} for m in warnings],
                    },
                    indent=2,
                )
            )
        else:
            for m in errors:
                self.stdout.write(f"FAIL {m.id}: {m.msg}")
            for m in warnings:
                self.stdout.write(f"WARN {m.id}: {m.msg}")
            if not errors:
                suffix = f" with {len(warnings)} warning(s)" if warnings else ""
                self.stdout.write(f"Preflight passed{suffix}.")
        if errors:
            raise CommandError(f"preflight failed: {len(errors)} check(s) failed.")
