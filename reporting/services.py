"""Writing reports: one format to a path (`report_write`, for `report generate` and the admin's
downloads), the proof bundle (`bundle_files`: every format, the CSVs, the campaign's run
artifacts), a kept report in the artifact directory (`report_keep`, listed in the admin), and
the daily reports (`reports_due`, the django-q2 schedule).

Every format of one bundle reads one snapshot of the database (a REPEATABLE READ transaction
on PostgreSQL, one read transaction on SQLite), so the HTML, the PDF and the CSVs agree even
while the tick and the webhooks write.
"""

from __future__ import annotations

import csv
import datetime as dt
import functools
import hashlib
import io
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from outreach.models import DispatchDecision, DispatchRun, OutboundMessage
from reporting.figures import Report, campaign_report
from reporting.models import ReportFile, ReportFormat, ReportSchedule
from reporting.render import render_html, render_markdown, render_pdf
from ventures.models import Campaign

log = logging.getLogger(__name__)
FORMATS = tuple(ReportFormat.values)  # html, pdf, md, csv, zip: also the files' extensions
CSV_TABLES = ("outcomes", "messages", "events", "audit")
CHUNK = 1 << 16


class ReportError(Exception):
    """A report that cannot be written, with the reason an operator reads."""


@dataclass
class Written:
    path: Path
    format: str
    size: int
    sha256: str
    rows: int | None = None  # a CSV's data rows


@contextmanager
def snapshot():
    """One consistent view of the database for everything read inside (inside a caller's
    transaction, that transaction's view)."""
    outermost = not connection.in_atomic_block
    with transaction.atomic():
        if outermost and connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        yield


def report_write(
    campaign: Campaign,
    fmt: str,
    out: Path,
    *,
    table: str = "outcomes",
    now: dt.datetime | None = None,
) -> Written:
    """Write the campaign's report in `fmt` (html, pdf, md, csv, zip) to `out`, atomically
    (a temporary file renamed into place: a failed run leaves no half-written report)."""
    if fmt not in FORMATS:
        raise ReportError(f"Unknown format {fmt!r}: use one of {', '.join(FORMATS)}.")
    if fmt == "csv" and table not in CSV_TABLES:
        raise ReportError(f"Unknown CSV table {table!r}: use one of {', '.join(CSV_TABLES)}.")
    out = Path(out)
    if not out.parent.is_dir():
        raise ReportError(f"Cannot write {out}: the directory {out.parent} does not exist.")
    partial = out.with_name(f".{out.name}.partial")
    rows = None
    try:
        with snapshot():
            if fmt == "zip":
                _bundle_write(campaign, partial, now=now)
            elif fmt == "csv":
                from reporting.exports import export_write

                with partial.open("wb") as fh:
                    rows = export_write(table, campaign, fh)
            else:
                data = report_bytes(campaign_report(campaign, now=now), fmt)
                partial.write_bytes(data)
        partial.replace(out)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise ReportError(f"Cannot write {out}: {exc.strerror or exc}.") from exc
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    size, digest = _digest(out)
    return Written(out, fmt, size, digest, rows)


def report_bytes(report: Report, fmt: str) -> bytes:
    if fmt == "html":
        return render_html(report).encode("utf-8")
    if fmt == "md":
        return render_markdown(report).encode("utf-8")
    if fmt == "pdf":
        return render_pdf(report)
    raise ReportError(f"{fmt!r} is not a single-document format.")


def _digest(path: Path) -> tuple[int, str]:
    sha, size = hashlib.sha256(), 0
    with path.open("rb") as fh:
        while block := fh.read(CHUNK):
            sha.update(block)
            size += len(block)
    return size, sha.hexdigest()


# --- The proof bundle -----------------------------------------------------------------------


def bundle_files(
    campaign: Campaign, report: Report
) -> Iterator[tuple[str, bytes | Callable[[BinaryIO], None] | Path]]:
    """What a campaign's proof bundle holds, as (name in the ZIP, content): the report in
    every format, the four CSVs (streamed into the ZIP), and the artifacts of every dispatch
    run that decided about the campaign's messages. A run that also served other campaigns
    contributes only this campaign's decisions and .eml files: a client never sees another
    client's mail."""
    from reporting.exports import EXPORTS, export_filename, export_write

    slug = campaign.slug
    yield f"{slug}-report.html", report_bytes(report, "html")
    yield f"{slug}-report.md", report_bytes(report, "md")
    yield f"{slug}-report.pdf", report_bytes(report, "pdf")
    for kind in EXPORTS:
        yield (
            f"csv/{export_filename(kind, campaign)}",
            functools.partial(export_write, kind, campaign),
        )
    yield from _run_artifacts(campaign)


def _run_artifacts(campaign: Campaign) -> Iterator[tuple[str, bytes | Path]]:
    runs = DispatchRun.objects.filter(
        pk__in=DispatchDecision.objects.filter(message__campaign=campaign).values("run_id")
    ).order_by("pk")
    for run in runs:
        base = f"runs/run-{run.pk}"
        decisions = list(
            DispatchDecision.objects.filter(run=run, message__campaign=campaign)
            .order_by("pk")
            .values_list("message_id", "lead_id", "outcome", "reason_code", "reason", "decided_at")
        )
        shared = (
            DispatchDecision.objects.filter(run=run).exclude(message__campaign=campaign).exists()
        )
        directory = Path(run.artifact_dir) if run.artifact_dir else None
        if directory is not None and not shared and directory.is_dir():
            for path in sorted(p for p in directory.rglob("*") if p.is_file()):
                yield f"{base}/{path.relative_to(directory).as_posix()}", path
            continue
        # Shared with other campaigns, or its directory is gone: this campaign's decisions as
        # the database holds them, and the .eml files of its messages that are still there.
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["message", "lead", "outcome", "reason_code", "reason", "decided_at"])
        for message_id, lead_id, outcome, code, reason, at in decisions:
            writer.writerow([message_id, lead_id, outcome, code, reason, at.isoformat()])
        yield f"{base}/decisions.csv", buffer.getvalue().encode("utf-8")
        if directory is not None and (directory / "eml").is_dir():
            names = {
                f"l{lead}-s{step}.eml"
                for lead, step in OutboundMessage.objects.filter(
                    campaign=campaign, pk__in=[d[0] for d in decisions]
                ).values_list("lead_id", "step_id")
            }
            for name in sorted(names):
                path = directory / "eml" / name
                if path.is_file():
                    yield f"{base}/eml/{name}", path


def _bundle_write(campaign: Campaign, path: Path, *, now: dt.datetime | None = None):
    from reporting.bundle import bundle_write

    report = campaign_report(campaign, now=now)
    return bundle_write(
        path,
        bundle_files(campaign, report),
        campaign_slug=campaign.slug,
        filters={"campaign": campaign.slug, "scope": "the whole campaign, every lead and event"},
        generated_at=report.generated_at,
    )


# --- Kept reports and the daily schedule --------------------------------------------------------


def report_keep(
    campaign: Campaign,
    fmt: str,
    *,
    actor: str,
    scheduled: bool = False,
    now: dt.datetime | None = None,
) -> ReportFile:
    """Write a report into the artifact directory (reports/<campaign>/) and record it."""
    now = now or timezone.now()
    stamp = timezone.localtime(now, campaign.tzinfo).strftime("%Y%m%d-%H%M%S")
    relative = Path("reports") / campaign.slug / f"{campaign.slug}-{stamp}.{fmt}"
    target = Path(settings.AICMO_ARTIFACT_DIR) / relative
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ReportError(f"Cannot create {target.parent}: {exc.strerror or exc}.") from exc
    written = report_write(campaign, fmt, target, now=now)
    return ReportFile.objects.create(
        campaign=campaign,
        format=fmt,
        path=relative.as_posix(),
        size=written.size,
        sha256=written.sha256,
        generated_at=now,
        generated_by=actor,
        scheduled=scheduled,
    )


def report_file_path(report: ReportFile) -> Path:
    """Where a kept report is; refuses a path that would leave the artifact directory."""
    root = Path(settings.AICMO_ARTIFACT_DIR).resolve()
    path = (root / report.path).resolve()
    if not path.is_relative_to(root):
        raise ReportError("This report's path is outside the artifact directory.")
    return path


def report_file_remove(report: ReportFile) -> None:
    """Remove a kept report's file from the artifact directory once its row is deleted (the
    caller runs this on commit); one already gone, or outside the directory, is left alone."""
    try:
        report_file_path(report).unlink(missing_ok=True)
    except ReportError:
        return  # outside the directory: not ours to remove
    except OSError as exc:
        log.warning("Could not remove the deleted report's file %s: %s", report.path, exc)


def reports_due(now: dt.datetime | None = None) -> list[ReportFile]:
    """The daily reports whose hour has come in their campaign's time zone and that were not
    written today. Each schedule is claimed by a conditional UPDATE of its last day, so two
    workers running this at once write each report once. Old reports past `keep_days` are
    deleted with their files."""
    now = now or timezone.now()
    written: list[ReportFile] = []
    for schedule in ReportSchedule.objects.filter(is_active=True).select_related("campaign"):
        campaign = schedule.campaign
        today = timezone.localtime(now, campaign.tzinfo)
        if today.hour < schedule.hour or schedule.last_generated_on == today.date():
            continue
        claimed = (
            ReportSchedule.objects.filter(pk=schedule.pk)
            .exclude(last_generated_on=today.date())
            .update(last_generated_on=today.date())
        )
        if not claimed:
            continue
        for fmt in schedule.formats or [ReportFormat.BUNDLE]:
            try:
                written.append(
                    report_keep(campaign, fmt, actor="schedule", scheduled=True, now=now)
                )
            except ReportError:
                log.exception("daily report of %s (%s) failed", campaign.slug, fmt)
        reports_prune(campaign, keep_days=schedule.keep_days, now=now)
    return written


def reports_prune(campaign: Campaign, *, keep_days: int, now: dt.datetime) -> int:
    """Delete the campaign's scheduled reports older than `keep_days`, files first."""
    old = ReportFile.objects.filter(
        campaign=campaign, scheduled=True, generated_at__lt=now - dt.timedelta(days=keep_days)
    )
    count = 0
    for report in old:
        try:
            report_file_path(report).unlink(missing_ok=True)
        except (OSError, ReportError):
            log.warning("could not delete old report %s", report.path)
        report.delete()
        count += 1
    return count
