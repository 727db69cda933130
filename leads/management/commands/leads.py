"""`leads import C FILE [--source NAME] [--dry-run] [--force]`, `leads export C [--out FILE]`,
`leads suppress EMAIL|@DOMAIN|FILE [--reason R] [--venture V]`, `leads erase EMAIL`,
`leads resume BATCH_ID [--background] [--reason R]`.

Each sub-command parses its input, calls one service of `leads.services` and reports.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from django.core.management.base import CommandError, CommandParser

from leads.models import BatchState, ImportBatch, import_counts_text
from leads.services.exports import leads_export
from leads.services.imports import ImportOutcome, lead_import
from leads.services.privacy import lead_erase
from leads.services.runs import import_batch_resume
from leads.suppression import suppression_add, suppression_values_from_file
from ventures.commands import ProjectCommand, current_user
from ventures.models import Campaign, Venture
from ventures.selectors import campaign_get
from ventures.services import DomainError


class Command(ProjectCommand):
    help = "Import, export, suppress and erase leads (see `leads <action> --help`)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="Machine-readable output.")
        parser.add_argument("--actor", default=None, help="Who is acting (default: $USER).")
        sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

        def add(name: str, text: str) -> argparse.ArgumentParser:
            p = sub.add_parser(name, help=text, description=text)
            p.add_argument("--json", action="store_true", default=argparse.SUPPRESS)
            return p

        p = add("import", "Import a CSV or XLSX lead file into a campaign.")
        p.add_argument("campaign", metavar="C", help="Campaign slug or id.")
        p.add_argument("file", metavar="FILE")
        p.add_argument("--source", default="", help="Source list name (default: the file name).")
        p.add_argument("--dry-run", action="store_true", help="Do everything, then roll back.")
        p.add_argument("--force", action="store_true", help="Import a file imported before.")
        p = add(
            "resume",
            "Resume an interrupted background import from its first unprocessed row.",
        )
        p.add_argument("batch", metavar="BATCH_ID", type=int, help="The import batch id.")
        p.add_argument(
            "--background", action="store_true", help="Queue it on the task cluster instead."
        )
        p.add_argument("--reason", default="", help="Why (kept in the audit trail).")
        p = add("export", "Export a campaign's leads as CSV (formula-safe).")
        p.add_argument("campaign", metavar="C", help="Campaign slug or id.")
        p.add_argument("--out", default=None, help="Output file (default: standard output).")
        p = add("suppress", "Suppress an email, an @domain, or every address in a file.")
        p.add_argument("value", metavar="EMAIL|@DOMAIN|FILE")
        p.add_argument("--reason", default="", help="Why (kept with the entry).")
        p.add_argument("--venture", default=None, help="Only for this venture (slug); default all.")
        p = add("erase", "GDPR erasure of a person (keeps only a hashed suppression entry).")
        p.add_argument("email", metavar="EMAIL")
        p.add_argument("--reason", default="", help="Reference of the erasure request.")

    def handle(self, *args, **options) -> None:
        self.as_json = options["json"]
        self.actor = "cli:" + (options["actor"] or current_user())
        action = options["action"]
        try:
            getattr(self, "_" + action)(options)
        except (Campaign.DoesNotExist, Venture.DoesNotExist, ImportBatch.DoesNotExist) as exc:
            raise CommandError(str(exc)) from None
        except DomainError as exc:
            raise CommandError(str(exc)) from None
        except OSError as exc:
            raise CommandError(f"{exc.strerror or exc}: {exc.filename or ''}".strip()) from None

    def _import(self, options: dict[str, Any]) -> None:
        campaign = campaign_get(options["campaign"])
        path = Path(options["file"])
        if not path.is_file():
            raise CommandError(f"No such file: {path}")
        bar = _ProgressBar(sys.stderr) if sys.stderr.isatty() and not self.as_json else None
        outcome = lead_import(
            campaign=campaign,
            path=path,
            actor=self.actor,
            source=options["source"] or path.name,
            dry_run=options["dry_run"],
            force=options["force"],
            progress=bar,
        )
        if bar:
            bar.finish()
        self.emit(outcome.as_dict(), _import_summary(campaign, outcome))

    def _resume(self, options: dict[str, Any]) -> None:
        batch = ImportBatch.objects.get(pk=options["batch"])
        background = options["background"]
        bar = None
        if not background and sys.stderr.isatty() and not self.as_json:
            bar = _ProgressBar(sys.stderr)
        ran = import_batch_resume(
            batch=batch,
            actor=self.actor,
            reason=options["reason"],
            background=background,
            progress=bar,
        )
        if bar:
            bar.finish()
        batch.refresh_from_db()
        if not ran:
            raise CommandError(
                f"Import #{batch.pk} was claimed by another runner in the meantime; "
                f"it is {batch.run_status.lower()}."
            )
        if batch.state == BatchState.FAILED:
            raise CommandError(f"Import #{batch.pk} failed: {batch.error}")
        c = batch.counts()
        if background:
            head = f"Import #{batch.pk} queued to resume at row {batch.rows_done + 1}"
        else:
            head = f"Import #{batch.pk}: {batch.run_status.lower()}"
        self.emit(
            {"batch": batch.pk, "state": batch.state, "resumes": batch.resumes, "counts": c},
            f"{head} ({c['rows_done']} of {c['rows_total']} rows done; resumed "
            f"{batch.resumes} time(s)).\n  {import_counts_text(c)}",
        )

    def _export(self, options: dict[str, Any]) -> None:
        campaign = campaign_get(options["campaign"])
        if options["out"]:
            with open(options["out"], "w", encoding="utf-8", newline="") as out:
                count = leads_export(campaign=campaign, out=out)
            self.emit(
                {"campaign": campaign.slug, "leads": count, "out": options["out"]},
                f"Exported {count} leads of {campaign.slug} to {options['out']}.",
            )
        else:
            leads_export(campaign=campaign, out=self.stdout)

    def _suppress(self, options: dict[str, Any]) -> None:
        raw = options["value"]
        path = Path(raw)
        values = suppression_values_from_file(path) if path.is_file() else [raw]
        venture = Venture.objects.get(slug=options["venture"]) if options["venture"] else None
        result = suppression_add(
            values=values,
            actor=self.actor,
            venture=venture,
            reason=options["reason"],
            source="cli",
        )
        if not result.added and not result.already:
            raise CommandError("Nothing suppressed: " + "; ".join(result.invalid[:5]))
        scope = f"venture {venture.slug}" if venture else "all ventures"
        text = (
            f"Suppressed {result.added} new entr{'y' if result.added == 1 else 'ies'} "
            f"({result.already} already listed) for {scope}; "
            f"{result.leads_suppressed} active lead(s) marked suppressed."
        )
        if result.invalid:
            text += f" {len(result.invalid)} value(s) skipped: " + "; ".join(result.invalid[:5])
        self.emit(
            {
                "added": result.added,
                "already": result.already,
                "leads_suppressed": result.leads_suppressed,
                "invalid": result.invalid,
            },
            text,
        )

    def _erase(self, options: dict[str, Any]) -> None:
        result = lead_erase(email=options["email"], actor=self.actor, reason=options["reason"])
        self.emit(
            {"identity_hash": result.identity_hash, "lead_ids": result.lead_ids},
            f"Erased {len(result.lead_ids)} lead record(s); identity "
            f"{result.identity_hash[:12]}… is suppressed everywhere.",
        )


def _import_summary(campaign: Campaign, outcome: ImportOutcome) -> str:
    c = outcome.counts
    head = "Dry run (nothing written)" if outcome.dry_run else f"Import #{outcome.batch_id}"
    rate = c["rows_done"] / outcome.seconds if outcome.seconds else 0
    return (
        f"{head}: {outcome.file_name} into {campaign.slug} ({outcome.encoding}, "
        f"{outcome.delimiter}), {c['rows_total']} rows in {outcome.seconds:.1f}s "
        f"({rate:,.0f} rows/s).\n  {import_counts_text(c)}"
    )


class _ProgressBar:
    """A one-line progress bar on a terminal, redrawn at most ten times a second."""

    def __init__(self, stream) -> None:
        self.stream = stream
        self.last = 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if now - self.last < 0.1 and done < total:
            return
        self.last = now
        if not total:
            # A big file's row count arrives with its check, which runs beside the import.
            self.stream.write(f"\r{done} rows done (the file is still being checked)")
        else:
            share = done / total
            filled = int(share * 30)
            self.stream.write(
                f"\r[{'#' * filled}{'.' * (30 - filled)}] {share:4.0%} {done}/{total}" + " " * 12
            )
        self.stream.flush()

    def finish(self) -> None:
        self.stream.write("\n")
        self.stream.flush()
