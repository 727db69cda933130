"""Leads as CSV: a campaign's (`leads_export`, for the `leads export` command) or any selection
(`leads_csv_lines`, which the lead list's "Export CSV" streams with the list's filters, search
and venture scope). Columns are EXPORT_COLUMNS then the custom fields found on the leads; every
cell goes through `spreadsheet_safe`, so no value can start a spreadsheet formula. An import's
rejected rows (`rejected_csv_lines`) come with the original file's columns while it is kept. Both stream in chunks: two passes over the rows (the custom
field names, then the rows), never the whole selection in memory.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import io
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from django.db.models import QuerySet

from leads.models import (
    PROFILE_FIELDS,
    ImportBatch,
    ImportIssue,
    Lead,
)
from leads.parsing import inspect_file, iter_rows
from ventures.models import Campaign
from ventures.services import DomainError

EXPORT_COLUMNS = (
    "id",
    "email",
    *PROFILE_FIELDS,
    "status",
    "consent_status",
    "consent_at",
    "consent_source",
    "value_estimate",
    "fit_score",
    "grade",
    "score_explanation",
    "source_channel",
    "source_list",
    "source_batch_id",
    "source_row",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "utm_content",
    "first_touch_at",
    "last_touch_at",
)
CHUNK = 5000  # rows a query fetches at a time
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value: Any) -> str:
    """A cell value a spreadsheet will show as text: one that would start a formula (=, +, -,
    @, tab, CR) gets a leading apostrophe (the OWASP CSV-injection advice)."""
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.isoformat()
    text = str(value)
    if text.startswith(_FORMULA_START):
        return "'" + text
    return text


def leads_export(*, campaign: Campaign, out: TextIO, leads: QuerySet[Lead] | None = None) -> int:
    """Write the campaign's leads as CSV (custom fields as extra columns); returns the count.
    Streams in chunks; every cell is formula-escaped."""
    qs = leads if leads is not None else Lead.objects.filter(campaign=campaign)
    count = -1  # the header line
    for line in leads_csv_lines(leads=qs):
        out.write(line)
        count += 1
    return count


def _custom_names(leads: QuerySet[Lead]) -> list[str]:
    names: dict[str, None] = {}
    for custom in leads.values_list("custom_fields", flat=True).iterator(chunk_size=CHUNK):
        names.update(dict.fromkeys(custom or {}))
    return list(names)


def leads_csv_lines(*, leads: QuerySet[Lead]) -> Iterator[str]:
    """The CSV of `leads` (in id order) line by line, header first, for a streamed download.
    The caller scopes and filters the queryset; this never widens it."""
    qs = leads.order_by("pk")
    custom_names = _custom_names(qs)
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def line(cells) -> str:
        buffer.seek(0)
        buffer.truncate()
        writer.writerow(cells)
        return buffer.getvalue()

    yield line([spreadsheet_safe(c) for c in (*EXPORT_COLUMNS, *custom_names)])
    for row in qs.values_list(*EXPORT_COLUMNS, "custom_fields").iterator(chunk_size=CHUNK):
        custom = row[-1] or {}
        yield line(
            [spreadsheet_safe(v) for v in row[:-1]]
            + [spreadsheet_safe(custom.get(n, "")) for n in custom_names]
        )


def _issue_text(issue: ImportIssue) -> str:
    column = f"{issue.column}: " if issue.column else ""
    return f"{issue.get_kind_display()}: {column}{issue.reason}"


def batch_upload_kept(batch: ImportBatch) -> bool:
    """Whether the batch's upload is still kept, so its rejected rows can be given whole."""
    return bool(batch.stored_path) and Path(batch.stored_path).is_file()


def rejected_csv_lines(batch: ImportBatch) -> Iterator[str]:
    """The batch's rejected and skipped rows as CSV, line by line, for a streamed download.

    While the upload is kept (`leads.services.runs` keeps it KEPT_UPLOAD_DAYS after an import
    with rejected rows, unless an erasure removed it), each rejected row comes with the
    original file's columns, as they were, then a `reason` column: fix the rows and import the
    file again (skip the reason column in the mapping, or leave it a custom field). Without the
    file (a command-line import, an expired or erased upload, or one that changed) it is the
    row number, column, kind and reason of each problem. Formula-escaped either way."""
    issues = ImportIssue.objects.filter(batch=batch).order_by("row_number", "id")
    info = None
    if batch_upload_kept(batch):
        with contextlib.suppress(DomainError, OSError):
            info = inspect_file(batch.stored_path, name=batch.file_name)
            if info.sha256 != batch.file_sha256:
                info = None
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def line(cells) -> str:
        buffer.seek(0)
        buffer.truncate()
        writer.writerow([spreadsheet_safe(c) for c in cells])
        return buffer.getvalue()

    if info is None:
        yield line(["row", "column", "kind", "reason"])
        for issue in issues.iterator(chunk_size=CHUNK):
            yield line([issue.row_number, issue.column, issue.kind, issue.reason])
        return
    yield from _rejected_with_columns(info, issues, line)


def _rejected_with_columns(info, issues, line) -> Iterator[str]:
    """A merge of the file's rows and the issues, both in row order: one pass over each."""
    rows = iter_rows(info)
    _, header = next(rows)
    yield line([*header, "reason"])
    pending = iter(itertools.groupby(issues.iterator(chunk_size=CHUNK), lambda i: i.row_number))
    wanted = next(pending, None)
    for number, row in rows:
        while wanted is not None and wanted[0] < number:  # a row the file no longer has
            wanted = next(pending, None)
        if wanted is None:
            return
        if wanted[0] == number:
            yield line([*row, "; ".join(_issue_text(i) for i in wanted[1])])
            wanted = next(pending, None)
