"""Signal receivers of the outbox."""

from __future__ import annotations

TICK_SCHEDULE = "outreach: dispatch tick"


def ensure_tick_schedule(**kwargs) -> None:
    """After migrate: the schedule that runs the tick every minute (idempotent)."""
    from ventures.signals import ensure_minutely_schedule

    ensure_minutely_schedule(TICK_SCHEDULE, "outreach.tasks.dispatch_tick")


def block_unsubscribed(sender=None, *, lead_ids: list[int], source: str = "", **kwargs) -> int:
    """leads.signals.lead_unsubscribed receiver: every pending message and open task of the
    person in the venture is blocked at once, and their sequences stop. Messages being handed
    over right now are not touched here: the hand-over re-reads the lead and blocks them."""
    from outreach.models import (
        DUE_STATES,
        Enrollment,
        EnrollmentState,
        MessageState,
        OutboundMessage,
    )

    reason = f"the lead unsubscribed ({source})" if source else "the lead unsubscribed"
    Enrollment.objects.filter(lead_id__in=lead_ids, state=EnrollmentState.ACTIVE).update(
        state=EnrollmentState.STOPPED, stop_reason=reason[:300]
    )
    return OutboundMessage.objects.filter(
        lead_id__in=lead_ids, state__in=[*DUE_STATES, MessageState.TASK_OPEN]
    ).update(state=MessageState.BLOCKED, reason_code="unsubscribed", reason=reason[:500])
