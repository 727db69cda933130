"""Feedback from outside the webhooks.

`manage.py feedback import FILE [--source NAME] [--json]`: an ESP's or a mailbox tool's
event export (CSV: bounces, complaints, unsubscribes, deliveries, opens, clicks, replies).
The file is checked whole first: a bad row stops the import with its line number, and nothing
is stored. Each row is stored once (`outreach.feedback`): importing the same file again
stores nothing new.

`manage.py feedback poll [--mailbox ID-or-address] [--json]`: reads the new mail of every
mailbox with an IMAP URL (or of the one named) into feedback events (`outreach.imap`): one
line per mailbox with what it found, or why it could not be polled; the other mailboxes are
polled all the same, and the exit status is 1 when any could not be.

`manage.py feedback escalate [--json]`: emails venture owners about positive replies past
their campaign's SLA, each once (the django-q2 cluster does this every minute; `outreach.sla`).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from django.core.management.base import CommandError, CommandParser

from outreach.feedback import FeedbackFileError, feedback_import
from outreach.imap import mailboxes_poll
from ventures.commands import ProjectCommand

MAX_BYTES = 200 * 1024 * 1024


class Command(ProjectCommand):
    help = (
        "Feedback from outside the webhooks: `feedback import FILE`, `feedback poll`, "
        "`feedback escalate`."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="Machine-readable output.")
        sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
        p = sub.add_parser("import", help="Import a CSV event export.", description=__doc__)
        p.add_argument("file", metavar="FILE")
        p.add_argument(
            "--source",
            default="import",
            help="Where the events come from (default: import); rows are unique per source.",
        )
        p.add_argument("--json", action="store_true", default=argparse.SUPPRESS)
        p = sub.add_parser(
            "poll",
            help="Read replies, bounces and auto-replies from the mailboxes' inboxes (IMAP).",
            description=__doc__,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        p.add_argument(
            "--mailbox", metavar="ID-or-address", help="Poll only this mailbox (its id or address)."
        )
        p.add_argument("--json", action="store_true", default=argparse.SUPPRESS)
        p = sub.add_parser(
            "escalate",
            help="Email venture owners about positive replies past their SLA (each once).",
        )
        p.add_argument("--json", action="store_true", default=argparse.SUPPRESS)

    def handle(self, *args: Any, **options: Any) -> None:
        self.as_json = options["json"]
        getattr(self, f"handle_{options['action']}")(options)

    def handle_escalate(self, options: dict) -> None:
        from outreach.sla import NO_OWNER, replies_escalate

        escalated = replies_escalate()
        emailed = [e for e in escalated if e.escalated_to != NO_OWNER]
        self.emit(
            {"escalated": len(escalated), "emailed": len(emailed),
             "events": [{"event": e.pk, "to": e.escalated_to} for e in escalated]},
            f"{len(escalated)} positive replies past their SLA escalated "
            f"({len(emailed)} emailed to venture owners, "
            f"{len(escalated) - len(emailed)} in ventures without an owner email)."
            if escalated else "No positive reply is past its SLA unescalated.",
        )  # fmt: skip

    def handle_import(self, options: dict) -> None:
        path = Path(options["file"])
        try:
            if path.stat().st_size > MAX_BYTES:
                raise CommandError(f"{path}: larger than {MAX_BYTES // (1024 * 1024)} MB.")
            data = path.read_bytes()
        except OSError as exc:
            raise CommandError(f"{path}: {exc.strerror or exc}.") from None
        source = options["source"].strip()[:40] or "import"
        try:
            result = feedback_import(data, source=source)
        except FeedbackFileError as exc:
            shown = "\n".join(f"  {p}" for p in exc.problems)
            raise CommandError(
                f"{path}: nothing imported; fix these rows and import it again:\n{shown}"
            ) from None
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(result.by_kind.items())) or "none new"
        self.emit(
            {"rows": result.rows, "stored": result.stored, "repeated": result.repeated,
             "unmatched": result.unmatched, "by_kind": result.by_kind},
            f"{path.name}: {result.rows} rows, {result.stored} new events ({kinds}), "
            f"{result.repeated} imported before, {result.unmatched} matching no message "
            "(kept: Outreach -> Feedback events).",
        )  # fmt: skip

    def handle_poll(self, options: dict) -> None:
        try:
            results = mailboxes_poll(mailbox=options["mailbox"])
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        failed = [r for r in results if r.error]
        lines = [r.summary() for r in results] or [
            "No mailbox has an IMAP URL: set one on a mailbox's page in the admin "
            "(Outreach -> Mailboxes) or with imap_url_env in its campaign file."
        ]
        self.emit(
            {"mailboxes": [r.as_dict() for r in results], "failed": len(failed)},
            "\n".join(lines),
        )
        if failed:
            raise CommandError(
                f"{len(failed)} of {len(results)} mailboxes could not be polled: "
                + "; ".join(r.mailbox.from_email for r in failed)
            )
