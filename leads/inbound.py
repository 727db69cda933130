"""Leads that arrive as records (the public capture form, the JSON bulk API), not as a file.

They go through exactly the file pipeline of `leads.importing`: the same header aliases
(`map_headers`), the same row normaliser and scorer, the same chunk processor (dedup within the
delivery, within the campaign and across the venture's campaigns, suppression, consent rules,
attribution), and each delivery gets its own ImportBatch with channel form/api and its counts.
The whole delivery is one transaction: it is recorded completely or not at all.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from leads.import_rows import RowNormaliser
from leads.importing import DEFAULT_CHUNKING, Chunking, ImportContext, run_chunks
from leads.models import BatchState, ImportBatch, ImportIssue
from leads.parsing import FileProblem, header_key, map_headers
from leads.scoring import LeadScorer
from leads.selectors import lead_policy_of
from leads.services.runs import import_batch_finish
from ventures.models import Campaign
from ventures.services import Actor, actor_label

__all__ = ["FileProblem", "inbound_records_import", "records_to_rows"]


def records_to_rows(records: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """The records as a header and rows of text. Keys are matched as headers are (case,
    spaces and punctuation ignored), so "email" in one record and "Email" in the next, or
    "first_name" and "First Name", are one column; one record with two spellings of the same
    key is refused (FileProblem)."""
    headers: list[str] = []
    column_of: dict[str, int] = {}
    cells: list[dict[int, str]] = []
    for number, record in enumerate(records, start=1):
        values: dict[int, str] = {}
        for key, value in record.items():
            folded = header_key(str(key)) or str(key)
            if folded not in column_of:
                column_of[folded] = len(headers)
                headers.append(str(key).strip())
            column = column_of[folded]
            if column in values:
                raise FileProblem(
                    f"Lead {number} has the key {headers[column]!r} twice (as {key!r} too)."
                )
            values[column] = _text(value)
        cells.append(values)
    return headers, [[row.get(i, "") for i in range(len(headers))] for row in cells]


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def inbound_records_import(
    *,
    campaign: Campaign,
    records: list[dict[str, Any]],
    channel: str,
    actor: Actor,
    source: str = "",
    chunking: Chunking = DEFAULT_CHUNKING,
) -> ImportBatch:
    """Import records into `campaign` as one ImportBatch of `channel` (form or api).

    Row numbers in the batch's row errors are the records' positions, starting at 1. Raises
    FileProblem (a DomainError) when the records as a whole cannot be imported (no email key,
    two keys that are the same column); nothing is written then.
    """
    headers, rows = records_to_rows(records)
    mapping = map_headers(headers)
    now = timezone.now()
    with transaction.atomic():
        batch = ImportBatch.objects.create(
            campaign=campaign,
            channel=channel,
            source=source[:200],
            actor=actor_label(actor)[:200],
            mapping=mapping.as_display(),
            state=BatchState.RUNNING,
            started_at=now,
            rows_total=len(rows),
        )
        ctx = ImportContext(
            batch=batch,
            normaliser=RowNormaliser(
                mapping=mapping, scorer=LeadScorer.for_venture(campaign.venture)
            ),
            policy=lead_policy_of(campaign),
            source_list=batch.source,
            channel=channel,
            chunking=chunking,
        )
        ctx.counts.rows_total = len(rows)
        counts = run_chunks(ctx=ctx, rows=enumerate(rows, start=1))
        import_batch_finish(batch=batch, counts=counts, actor=actor)
    return batch


def batch_issues(batch: ImportBatch, limit: int = 100) -> list[dict[str, Any]]:
    """The first `limit` row issues of a batch, for an API response."""
    errors = ImportIssue.objects.filter(batch=batch).order_by("row_number", "id")[:limit]
    return [
        {"row": e.row_number, "field": e.column, "kind": e.kind, "reason": e.reason} for e in errors
    ]
