"""`manage.py tick [--campaign C] [--loop]`: run the outbox's tick in the foreground.

Without `--loop`, one pass (every due message settled, then exit). With `--loop`, a pass every
`--interval` seconds until SIGTERM or Ctrl-C; the signal stops the loop between two passes,
never in the middle of a batch's hand-over. A database error (the server restarted, the line
dropped) ends a pass with one line on stderr; with `--loop` the next pass reconnects and
recovers what the failed one held.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from typing import Any

from django.core.management.base import CommandError, CommandParser
from django.db import DatabaseError

from outreach.dispatch import tick
from ventures.commands import ProjectCommand


class Command(ProjectCommand):
    help = "Send what is due: claim due messages, check every guardrail, hand over, record."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--campaign", help="Only this campaign (slug or id).")
        parser.add_argument("--loop", action="store_true", help="Run until SIGTERM.")
        parser.add_argument("--interval", type=float, default=60.0, help="Seconds between passes.")
        parser.add_argument("--json", action="store_true", help="Machine-readable output.")

    def handle(self, *args: Any, **options: Any) -> None:
        self.as_json = options["json"]
        campaign = self.campaign_named(options["campaign"]) if options["campaign"] else None
        worker = f"tick@{socket.gethostname()}:{os.getpid()}"
        stop = {"now": False}

        def request_stop(signum, frame) -> None:
            stop["now"] = True

        signal.signal(signal.SIGTERM, request_stop)
        while True:
            try:
                run = tick(worker=worker, campaign=campaign)
            except DatabaseError as exc:
                # One line, no traceback; with --loop the next pass reconnects and recovers
                # what this one held.
                problem = (
                    f"Tick stopped by a database error: {str(exc).strip() or type(exc).__name__}"
                )
                if not options["loop"] or stop["now"]:
                    raise CommandError(problem) from None
                self.stderr.write(f"{problem}. Retrying in {options['interval']:g} s.")
                run = None
            if run is not None:
                counts = ", ".join(f"{k} {v}" for k, v in sorted(run.counts.items()))
                self.emit(
                    {"run": run.pk, "counts": run.counts, "artifacts": run.artifact_dir},
                    f"Run #{run.pk}: {counts or 'nothing due'}. Artifacts: {run.artifact_dir}",
                )
            if not options["loop"] or stop["now"]:
                return
            deadline = time.monotonic() + options["interval"]
            while not stop["now"] and time.monotonic() < deadline:
                time.sleep(0.2)
            if stop["now"]:
                return
