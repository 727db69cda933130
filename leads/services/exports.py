"""A campaign's leads as CSV (`leads_export`, for the `leads export` command). Columns are
EXPORT_COLUMNS then the custom fields found on the leads; every cell goes through
`spreadsheet_safe` (which the admin's row-issue CSV uses too), so no value can start a
spreadsheet formula. Streams in chunks.
"""

from __future__ import annotations

import csv
import datetime as dt
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
    qs = (leads if leads is not None else Lead.objects.filter(campaign=campaign)).order_by("pk")
    custom_names: list[str] = []
    seen: set[str] = set()
    for custom in qs.values_list("custom_fields", flat=True).iterator(chunk_size=5000):
        for name in custom or {}:
            if name not in seen:
                seen.add(name)
                custom_names.append(name)
    writer = csv.writer(out)
    writer.writerow([spreadsheet_safe(c) for c in (*EXPORT_COLUMNS, *custom_names)])
    count = 0
    for row in qs.values_list(*EXPORT_COLUMNS, "custom_fields").iterator(chunk_size=5000):
        custom = row[-1] or {}
        writer.writerow(
            [spreadsheet_safe(v) for v in row[:-1]]
            + [spreadsheet_safe(custom.get(n, "")) for n in custom_names]
        )
        count += 1
    return count
