"""Campaign reports from the command line.

`manage.py report generate C --format html|pdf|md|csv|zip [--out PATH] [--table T] [--json]`:
writes campaign C's report (C a slug or id) in one format to PATH (default: a kept copy in
AICMO_ARTIFACT_DIR/reports/<campaign>/, listed in the admin), atomically, and prints where,
its size and SHA-256. `--format csv` writes one table: outcomes (per lead, the default),
messages, events or audit. `zip` is the proof bundle: every format, the CSVs, the run
artifacts and a manifest.

`manage.py report due [--json]`: writes the daily reports whose hour has come (what the
django-q2 schedule runs every 15 minutes), for a cron job instead of the cluster.

`manage.py report verify BUNDLE.zip [--manifest-sha256 HEX] [--json]`: checks a proof bundle
(`reporting.bundle`): every file the manifest lists is present, of its size and SHA-256, the
manifest matches `manifest.sha256` (and the digest you were sent, when given), and nothing
else is in the ZIP. Prints "OK: ..." and exits 0, or prints each problem and exits 1.

`manage.py report facts [--campaign C] [--rebuild] [--json]`: checks what reports read instead
of the raw rows against those rows: the per-lead facts that the tick and the feedback keep
(`outreach.facts`: emails sent, kinds of events seen) against the messages and events, and the
messages' tallies that triggers keep (`outreach.tally`: by step, state, reason, sender and
quarter hour) against the messages; prints "agree", or each lead or count that differs and
exits 1. `--rebuild` recomputes both (after data was written around the engine, say).

Each action is a pair of methods, `add_<action>` (its arguments) and `handle_<action>`, listed
in `ACTIONS`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from django.core.management.base import CommandError, CommandParser

from reporting.bundle import bundle_verify
from reporting.pdf import ReportRenderError
from reporting.services import (
    CSV_TABLES,
    FORMATS,
    ReportError,
    report_file_path,
    report_keep,
    report_write,
)
from ventures.commands import ProjectCommand, current_user
from ventures.models import Campaign

ACTIONS = ("generate", "verify", "due", "facts")
# Leads listed when the facts differ (the count is always given).
DRIFT_SHOWN = 20


class Command(ProjectCommand):
    help = "Campaign reports and proof bundles (see `report <action> --help`)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="Machine-readable output.")
        sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
        for action in ACTIONS:
            getattr(self, f"add_{action}")(sub, parser)

    def handle(self, *args: Any, **options: Any) -> None:
        self.as_json = options["json"]
        handlers = {action: getattr(self, f"handle_{action}") for action in ACTIONS}
        handlers[options["action"]](options)

    def _subparser(self, sub, parser: CommandParser, name: str, text: str) -> CommandParser:
        p = sub.add_parser(
            name, help=text, description=text,
            called_from_command_line=parser.called_from_command_line,
        )  # fmt: skip
        # Accepted after the action too; SUPPRESS keeps a value given before the action.
        p.add_argument("--json", action="store_true", default=argparse.SUPPRESS)
        return p

    def add_generate(self, sub, parser: CommandParser) -> None:
        p = self._subparser(sub, parser, "generate", "Write a campaign's report in one format.")
        p.add_argument("campaign", metavar="C", help="The campaign's slug or id.")
        p.add_argument("--format", required=True, choices=FORMATS)
        p.add_argument(
            "--out",
            metavar="PATH",
            help="Where to write it (default: a kept copy in the artifact dir).",
        )
        p.add_argument(
            "--table",
            choices=CSV_TABLES,
            default="outcomes",
            help="The CSV to write (--format csv).",
        )

    def handle_generate(self, options: dict) -> None:
        campaign = self.campaign_named(options["campaign"])
        fmt, table = options["format"], options["table"]
        try:
            if options["out"]:
                written = report_write(campaign, fmt, Path(options["out"]), table=table)
                path, size, digest, rows = written.path, written.size, written.sha256, written.rows
            else:
                if fmt == "csv":
                    raise CommandError(
                        "--format csv needs --out PATH (kept copies are whole reports)."
                    )
                kept = report_keep(campaign, fmt, actor=f"cli:{current_user()}")
                path, size, digest, rows = report_file_path(kept), kept.size, kept.sha256, None
        except ReportError as exc:
            raise CommandError(str(exc)) from None
        except ReportRenderError as exc:
            raise CommandError(str(exc)) from None
        what = f"{table} CSV ({rows} rows)" if fmt == "csv" else f"{fmt} report"
        self.emit(
            {"campaign": campaign.slug, "format": fmt, "table": table if fmt == "csv" else None,
             "path": str(path), "size": size, "sha256": digest, "rows": rows},
            f"Wrote the {what} of campaign {campaign.slug} to {path} "
            f"({size:,} bytes, SHA-256 {digest}).",
        )  # fmt: skip

    def add_due(self, sub, parser: CommandParser) -> None:
        self._subparser(sub, parser, "due", "Write the daily reports whose hour has come.")

    def handle_due(self, options: dict) -> None:
        from reporting.services import report_file_path as where
        from reporting.services import reports_due

        written = reports_due()
        self.emit(
            {"written": len(written), "paths": [str(where(r)) for r in written]},
            f"Daily reports written: {len(written)}" + "".join(f"\n  {where(r)}" for r in written),
        )

    def add_verify(self, sub, parser: CommandParser) -> None:
        p = self._subparser(
            sub, parser, "verify", "Check a proof bundle's files against its manifest."
        )
        p.add_argument("bundle", metavar="BUNDLE.zip")
        p.add_argument(
            "--manifest-sha256",
            metavar="HEX",
            help="The manifest digest you were sent apart from the ZIP; checked too.",
        )

    def handle_verify(self, options: dict) -> None:
        path = options["bundle"]
        result = bundle_verify(path, manifest_sha256=options["manifest_sha256"])
        if result.ok:
            text = (
                f"OK: {result.files_checked} files verified against manifest.json, "
                f"manifest sha256 {result.manifest_sha256}"
            )
        else:
            text = "\n".join(f"FAILED: {problem}" for problem in result.problems)
        self.emit({"bundle": str(path), **result.as_dict()}, text)
        if not result.ok:
            count = len(result.problems)
            raise CommandError(
                f"{path} did not verify: {count} problem{'s' if count > 1 else ''}"
                + ("" if self.as_json else " (listed above)")
                + "."
            )

    def add_facts(self, sub, parser: CommandParser) -> None:
        p = self._subparser(
            sub, parser, "facts", "Check (or rebuild) the facts and tallies that reports read."
        )
        p.add_argument("--campaign", metavar="C", help="One campaign (slug or id); default all.")
        p.add_argument(
            "--rebuild", action="store_true", help="Recompute them from the messages and events."
        )

    def handle_facts(self, options: dict) -> None:
        from django.db import transaction

        from outreach.facts import lead_facts_drift, lead_facts_rebuild
        from outreach.tally import tally_drift, tally_rebuild

        campaign = self.campaign_named(options["campaign"]) if options["campaign"] else None
        scope = f"campaign {campaign.slug}" if campaign else "every campaign"
        campaigns = [campaign] if campaign else list(Campaign.objects.order_by("pk"))
        if options["rebuild"]:
            with transaction.atomic():
                rows = lead_facts_rebuild(campaign)
                tallied = sum(tally_rebuild(each.pk) for each in campaigns)
            self.emit(
                {"scope": scope, "rebuilt": rows, "tally_rows": tallied},
                f"{scope}: rebuilt {rows} leads' facts and {tallied} rows of the messages' tallies.",
            )
            return
        drift = lead_facts_drift(campaign)
        counts = [(each, row) for each in campaigns for row in tally_drift(each.pk)]
        lines = [
            f"lead {pk}: kept {_facts_text(kept)}, computed {_facts_text(computed)}"
            for pk, kept, computed in drift[:DRIFT_SHOWN]
        ] + [
            f"campaign {each.slug}, {table} {_key_text(key)}: tallied {kept}, counted {computed}"
            for each, (table, key, kept, computed) in counts[:DRIFT_SHOWN]
        ]
        self.emit(
            {"scope": scope, "differ": len(drift),
             "leads": [{"lead": pk, "kept": kept, "computed": computed}
                       for pk, kept, computed in drift],
             "tally_differ": len(counts),
             "tally": [{"campaign": each.slug, "table": table, "key": list(key), "kept": kept,
                        "computed": computed} for each, (table, key, kept, computed) in counts]},
            "\n".join(lines) if drift or counts else
            f"{scope}: the leads' facts agree with their messages and events, and the "
            "messages' tallies with the messages.",
        )  # fmt: skip
        problems = []
        if drift:
            problems.append(f"{len(drift)} leads' facts differ from their messages and events")
        if counts:
            problems.append(
                f"{len(counts)} counts of the messages' tallies differ from the messages"
            )
        if problems:
            raise CommandError(
                "; ".join(problems)
                + ("" if self.as_json else " (listed above)")
                + ": `manage.py report facts --rebuild` recomputes them."
            )


def _key_text(key: tuple) -> str:
    if len(key) == 1:
        return key[0]
    step, state, reason, mailbox, segment, version = key
    parts = [f"step #{step}", state]
    parts += [f"reason {reason}"] if reason else []
    parts += [f"mailbox #{mailbox}"] if mailbox else []
    parts += [f"segment #{segment}"] if segment else []
    parts += [f"template version #{version}"] if version else []
    return " ".join(parts)


def _facts_text(facts: tuple | None) -> str:
    if facts is None:
        return "nothing"
    _campaign, sent, flags = facts
    return f"{sent} sent, flags {flags:#x}"
