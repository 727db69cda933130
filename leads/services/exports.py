"""Leads as CSV: a campaign's (`leads_export`, for the `leads export` command) or any selection
(`leads_csv_lines`, which the lead list's "Export CSV" streams with the list's filters, search
and venture scope). Columns are EXPORT_COLUMNS then the custom fields found on the leads; every
cell goes through `spreadsheet_safe` (which the admin's row-issue CSV uses too), so no value
can start a spreadsheet formula. Both stream in chunks: two passes over the rows (the custom
field names, then the rows), never the whole selection in memory.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterator
from typing import Any, TextIO

from django.db.models import QuerySet

from leads.models import (
    PROFILE_FIELDS,
    Lead,
)
from ventures.models import Campaign

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
