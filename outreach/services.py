"""Writes of the outbox beyond the tick: settling manual tasks and `unknown` messages, and
what feedback and the tick share: stopping sequences, recording hard bounces."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from leads.models import Lead, LeadStatus
from outreach.enrollment import plan_next_steps
from outreach.facts import lead_facts_add
from outreach.models import DUE_STATES, Enrollment, EnrollmentState, MessageState, OutboundMessage
from outreach.narrative import narrative_sends_record
from ventures.models import Venture
from ventures.services import Actor, DomainError, actor_label, audit_record


def manual_task_settle(
    *, message: OutboundMessage, done: bool, actor: Actor, note: str = ""
) -> OutboundMessage:
    """Mark an open manual task done or skipped; either way the step is over and the next one
    is planned (a skipped call still counts as the step)."""
    with transaction.atomic():
        locked = _locked_in(message, MessageState.TASK_OPEN)
        now = timezone.now()
        locked.state = MessageState.TASK_DONE if done else MessageState.TASK_SKIPPED
        locked.settled_at, locked.settled_by = now, actor_label(actor)[:200]
        locked.reason = note.strip()[:500]
        locked.save(update_fields=["state", "settled_at", "settled_by", "reason", "updated_at"])
        audit_record(
            actor=actor,
            action="outreach.task_done" if done else "outreach.task_skipped",
            entity=locked.campaign,
            after={"message": locked.pk, "step": locked.step.position, "kind": locked.kind},
            reason=locked.reason,
        )
        plan_next_steps(messages=[locked], after=now)
    return locked


def unknown_message_settle(
    *, message: OutboundMessage, sent: bool, actor: Actor, reason: str
) -> OutboundMessage:
    """An operator settles an `unknown` message: it was sent (the sequence goes on) or it was
    not (it is marked failed and never re-sent: at most once)."""
    if not reason.strip():
        raise DomainError("Say how you know: the reason is recorded in the audit trail.")
    with transaction.atomic():
        locked = _locked_in(message, MessageState.UNKNOWN)
        now = timezone.now()
        locked.state = MessageState.SENT if sent else MessageState.FAILED
        locked.sent_at = locked.sent_at or (now if sent else None)
        locked.settled_at, locked.settled_by = now, actor_label(actor)[:200]
        locked.reason = reason.strip()[:500]
        locked.save(
            update_fields=["state", "sent_at", "settled_at", "settled_by", "reason", "updated_at"]
        )
        audit_record(
            actor=actor,
            action="outreach.unknown_settled",
            entity=locked.campaign,
            after={"message": locked.pk, "settled_as": locked.state},
            reason=locked.reason,
        )
        if sent:
            narrative_sends_record(messages=[locked])
            lead_facts_add(sent=[locked])
            plan_next_steps(messages=[locked], after=now)
    return locked


def _locked_in(message: OutboundMessage, state: str) -> OutboundMessage:
    """The message, locked for the transaction; refused unless it is in `state`."""
    locked = (
        OutboundMessage.objects.select_for_update(of=("self",))
        .select_related("step", "enrollment", "campaign", "lead")
        .get(pk=message.pk)
    )
    if locked.state != state:
        shown = locked.get_state_display().lower()
        raise DomainError(f"This message is {shown}, not {MessageState(state).label.lower()}.")
    return locked


def sequences_stop(*, lead_ids: list[int], reason: str, code: str) -> int:
    """The leads' sequences stop and their pending messages and open tasks are blocked with
    the reason (a reply, a bounce, an unsubscribe); returns how many messages. Messages being
    handed over right now are not touched: the hand-over re-reads the lead and blocks them."""
    Enrollment.objects.filter(lead_id__in=lead_ids, state=EnrollmentState.ACTIVE).update(
        state=EnrollmentState.STOPPED, stop_reason=reason[:300]
    )
    return OutboundMessage.objects.filter(
        lead_id__in=lead_ids, state__in=[*DUE_STATES, MessageState.TASK_OPEN]
    ).update(state=MessageState.BLOCKED, reason_code=code, reason=reason[:500])


def leads_bounced(
    *, venture: Venture, lead_ids: list[int], addresses: list[str], detail: str, actor: Actor
) -> None:
    """A hard bounce (a mail server's 5xx for the recipient, or the ESP's report): the
    addresses go on the venture's suppression list, the leads are bounced, and their
    sequences stop with their pending messages."""
    from leads.suppression import suppression_add

    suppression_add(
        values=addresses, venture=venture, reason=f"hard bounce: {detail}"[:300], actor=actor,
        source="bounce", gate_sends=False,  # called while handing over, or in a feedback batch
    )  # fmt: skip
    Lead.objects.filter(pk__in=lead_ids).exclude(status=LeadStatus.ERASED).update(
        status=LeadStatus.BOUNCED, updated_at=timezone.now()
    )
    sequences_stop(lead_ids=lead_ids, reason=f"the address bounced: {detail}", code="bounced")
