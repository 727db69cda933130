"""What an import left behind, in a form two imports can be compared by: a resumed import
must leave exactly what a clean one does."""

from __future__ import annotations

from leads.models import ImportIssue, Lead


def leads_of(campaign) -> list[tuple]:
    fields = (
        "email_key",
        "first_name",
        "company",
        "status",
        "consent_status",
        "source_row",
        "source_list",
        "grade",
        "fit_score",
        "custom_fields",
    )
    rows = Lead.objects.filter(campaign=campaign).order_by("email_key").values_list(*fields)
    return [tuple(str(v) for v in row) for row in rows]


def issues_of(batch_id: int) -> list[tuple]:
    return list(
        ImportIssue.objects.filter(batch_id=batch_id)
        .order_by("row_number", "kind", "reason")
        .values_list("row_number", "column", "kind", "reason")
    )
