"""Set-wise writes on an operator's selection of leads (the lead list's bulk actions and the
lead page's buttons): one UPDATE for the whole selection, however many leads it holds, and one
audit row per campaign touched, never one per lead. Suppression has its own service,
`leads.suppression`. Every function takes the already-scoped queryset the admin built and
never widens it.
"""

from __future__ import annotations

from django.db import transaction
from django.db.models import Count, QuerySet
from django.utils import timezone

from leads.models import ConsentStatus, Lead, LeadStatus
from ventures.models import Campaign, IcpSegment
from ventures.services import Actor, actor_label, audit_record


def _per_campaign(leads: QuerySet[Lead]) -> dict[int, int]:
    rows = leads.order_by().values("campaign_id").annotate(n=Count("id"))
    return {row["campaign_id"]: row["n"] for row in rows}


def _audit_per_campaign(
    *, counts: dict[int, int], actor: Actor, action: str, after: dict, reason: str
) -> None:
    for campaign in Campaign.objects.filter(pk__in=counts):
        audit_record(
            actor=actor,
            action=action,
            entity=campaign,
            after={**after, "leads": counts[campaign.pk]},
            reason=reason,
        )


def leads_mark_dnc(*, leads: QuerySet[Lead], actor: Actor, reason: str = "") -> int:
    """Set consent to DNC on every selected lead that is not DNC yet; returns how many changed.
    DNC is never lifted by an import, so this is the operator's durable "never contact"."""
    now = timezone.now()
    with transaction.atomic():
        targets = Lead.objects.filter(pk__in=leads.order_by().values("pk")).exclude(
            consent_status=ConsentStatus.DNC
        )
        counts = _per_campaign(targets)
        changed = targets.update(
            consent_status=ConsentStatus.DNC,
            consent_at=now,
            consent_source=f"admin: {actor_label(actor)}"[:200],
            updated_at=now,
        )
        _audit_per_campaign(
            counts=counts, actor=actor, action="leads.mark_dnc", after={}, reason=reason
        )
    return changed


def leads_move_to_segment(
    *, leads: QuerySet[Lead], segment: IcpSegment, actor: Actor, reason: str = ""
) -> tuple[int, int]:
    """Put the selected leads of the segment's venture into `segment`.

    Returns (moved, refused): leads of another venture are refused (a segment belongs to one
    venture); erased leads and leads already in the segment are left alone and counted in
    neither."""
    with transaction.atomic():
        selected = Lead.objects.filter(pk__in=leads.order_by().values("pk"))
        refused = selected.exclude(venture_id=segment.venture_id).count()
        targets = (
            selected.filter(venture_id=segment.venture_id)
            .exclude(status=LeadStatus.ERASED)
            .exclude(segment=segment)
        )
        counts = _per_campaign(targets)
        moved = targets.update(segment=segment, updated_at=timezone.now())
        _audit_per_campaign(
            counts=counts,
            actor=actor,
            action="leads.move_to_segment",
            after={"segment": segment.name},
            reason=reason,
        )
    return moved, refused
