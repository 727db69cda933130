"""Signal receivers of the outbox."""

from __future__ import annotations

TICK_SCHEDULE = "outreach: dispatch tick"
REPLY_SLA_SCHEDULE = "outreach: reply SLA escalation"
IMAP_POLL_SCHEDULE = "outreach: IMAP poll of the mailboxes"


def ensure_tick_schedule(**kwargs) -> None:
    """After migrate: the schedules that run the tick and the reply SLA check every minute
    (idempotent)."""
    from ventures.signals import ensure_minutely_schedule

    ensure_minutely_schedule(TICK_SCHEDULE, "outreach.tasks.dispatch_tick")
    ensure_minutely_schedule(REPLY_SLA_SCHEDULE, "outreach.tasks.replies_escalate")


def ensure_imap_poll_schedule(**kwargs) -> None:
    """After migrate: the schedule that polls the mailboxes' inboxes every
    AICMO_IMAP_POLL_MINUTES (idempotent); none when that is 0."""
    from django.conf import settings
    from django_q.models import Schedule

    from ventures.signals import ensure_minutely_schedule

    minutes = settings.AICMO_IMAP_POLL_MINUTES
    if minutes:
        ensure_minutely_schedule(
            IMAP_POLL_SCHEDULE, "outreach.tasks.mailboxes_poll", minutes=minutes
        )
    else:
        Schedule.objects.filter(name=IMAP_POLL_SCHEDULE).delete()


def block_unsubscribed(sender=None, *, lead_ids: list[int], source: str = "", **kwargs) -> int:
    """leads.signals.lead_unsubscribed receiver: every pending message and open task of the
    person in the venture is blocked at once, and their sequences stop."""
    from outreach.services import sequences_stop

    reason = f"the lead unsubscribed ({source})" if source else "the lead unsubscribed"
    return sequences_stop(lead_ids=lead_ids, reason=reason, code="unsubscribed")
