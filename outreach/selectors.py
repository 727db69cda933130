"""Reads of the outbox that reports and commands share: where a campaign's leads are, and what
a dispatch run held back and why."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db.models import Count, Min

from outreach.models import (
    DUE_STATES,
    DispatchDecision,
    DispatchRun,
    MessageState,
    OutboundMessage,
    Sequence,
)
from ventures.models import Campaign


def campaign_outbox(campaign: Campaign) -> dict[str, Any]:
    """Leads enrolled per sequence (every sequence of the campaign, default first), manual
    tasks waiting for an operator, and when the next message is due (None: nothing planned)."""
    enrolled = (
        Sequence.objects.filter(campaign=campaign)
        .annotate(leads=Count("enrollments"))
        .order_by("-is_default", "slug")
        .values_list("slug", "leads")
    )
    messages = OutboundMessage.objects.filter(campaign=campaign)
    next_due: dt.datetime | None = messages.filter(state__in=DUE_STATES).aggregate(
        at=Min("due_at")
    )["at"]
    return {
        "enrolled": dict(enrolled),
        "open_tasks": messages.filter(state=MessageState.TASK_OPEN).count(),
        "next_due": next_due,
    }


def run_held(run: DispatchRun) -> list[dict[str, Any]]:
    """What the run deferred or blocked, by reason: outcome, reason code, how many messages,
    and one of the reasons as written (they differ only in their details, e.g. a time)."""
    held = (
        DispatchDecision.objects.filter(
            run=run, outcome__in=[MessageState.DEFERRED, MessageState.BLOCKED]
        )
        .values("outcome", "reason_code")
        .annotate(messages=Count("id"), reason=Min("reason"))
        .order_by("-messages", "outcome", "reason_code")
    )
    return list(held)


def objection_counts(campaign: Campaign) -> list[dict[str, Any]]:
    """Replies filed under each objection, per ICP segment and narrative (the template's
    angle and variant), most frequent first: what the market says no with, and to what."""
    from outreach.models import FeedbackEvent

    rows = (
        FeedbackEvent.objects.filter(message__campaign=campaign)
        .exclude(objection="")
        .values(
            "objection",
            "lead__segment__name",
            "message__template__narrative_angle",
            "message__template__variant_label",
        )
        .annotate(replies=Count("id"))
        .order_by("-replies", "objection")
    )
    return [
        {
            "objection": row["objection"],
            "segment": row["lead__segment__name"] or "",
            "narrative": row["message__template__narrative_angle"] or "",
            "variant": row["message__template__variant_label"] or "",
            "replies": row["replies"],
        }
        for row in rows
    ]
