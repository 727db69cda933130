"""Writes of the outbox beyond the tick: settling manual tasks and `unknown` messages,
pausing and resuming a mailbox, what feedback and the tick share (stopping sequences,
recording hard bounces), and erasing a person's emails."""

from __future__ import annotations

import csv
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from leads.models import Lead, LeadStatus
from outreach.enrollment import plan_next_steps
from outreach.facts import lead_facts_add
from outreach.models import (
    DUE_STATES,
    DispatchDecision,
    Enrollment,
    EnrollmentState,
    Mailbox,
    MessageState,
    OutboundMessage,
)
from outreach.narrative import narrative_sends_record
from outreach.selectors import mailbox_auto_pause
from ventures.db import sending_gates
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


MAILBOX_PAUSE = "mailbox.pause"
MAILBOX_RESUME = "mailbox.resume"


def mailbox_pause(*, mailbox: Mailbox, actor: Actor, reason: str = "") -> bool:
    """A person switches a mailbox off: its sends wait, in every campaign, after the batches
    handing over through it. False when it was already off. A person's pause is their choice:
    the console does not list it among the engine's (`selectors.mailboxes_auto_paused`)."""
    with transaction.atomic():
        sending_gates(mailbox_ids=[mailbox.pk], exclusive=True)
        if not Mailbox.objects.filter(pk=mailbox.pk, is_active=True).update(is_active=False):
            return False
        mailbox.is_active = False
        audit_record(actor=actor, action=MAILBOX_PAUSE, entity=mailbox,
                     before={"is_active": True}, after={"is_active": False},
                     reason=reason.strip()[:500])  # fmt: skip
    return True


def mailbox_resume(*, mailbox: Mailbox, actor: Actor, reason: str) -> bool:
    """A paused mailbox sends again: the operator's confirmed decision (the admin's "Resume
    sending", or `campaign load --confirm-raise --reason`), audited with their reason and,
    when the engine had paused it, that pause's reason, which this closes (only sends after
    the pause count towards the next one). False when it was already active."""
    with transaction.atomic():
        pause = mailbox_auto_pause(mailbox)
        if not Mailbox.objects.filter(pk=mailbox.pk, is_active=False).update(is_active=True):
            return False
        mailbox.is_active = True
        after = {"is_active": True}
        if pause is not None:
            after["auto_pause"] = {"campaign": pause.campaign.slug, "reason": pause.reason}
        audit_record(actor=actor, action=MAILBOX_RESUME, entity=mailbox,
                     before={"is_active": False}, after=after,
                     reason=reason.strip()[:500])  # fmt: skip
    return True


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


def erase_messages(sender=None, *, lead_ids: list[int], **kwargs) -> None:
    """leads.signals.lead_erased receiver: the erased people's emails lose what was written to
    them (address, subject, bodies, and the reason texts of the messages and the runs'
    decisions, which can quote the address: a bounce's). Once the erasure commits, their
    proof-mode .eml files are deleted and the runs' decisions.csv files lose those reasons. The rows stay, with their
    states, reason codes, times and ids, so every count and report still adds up."""
    messages = OutboundMessage.objects.filter(lead_id__in=lead_ids)
    # Every run that took a message up may have written its .eml (a run killed mid-batch
    # leaves its decisions unsaved but its claim on the message, and no artifact_dir).
    handled = set(messages.filter(run__isnull=False).values_list("run_id", "idempotency_key"))
    handled |= set(
        DispatchDecision.objects.filter(message__lead_id__in=lead_ids).values_list(
            "run_id", "message__idempotency_key"
        )
    )
    runs = Path(settings.AICMO_ARTIFACT_DIR) / "runs"
    messages.update(recipient="", subject="", body_text="", body_html="", reason="")
    DispatchDecision.objects.filter(message__lead_id__in=lead_ids).update(reason="")

    def unlink() -> None:
        for run_id, key in sorted(handled):
            for path in runs.glob(f"run-{run_id}-*/eml/{key}.eml"):
                path.unlink(missing_ok=True)
        for run_id in sorted({run_id for run_id, _key in handled}):
            for path in runs.glob(f"run-{run_id}-*/decisions.csv"):
                _decisions_blank(path, {str(pk) for pk in lead_ids})

    transaction.on_commit(unlink)


def _decisions_blank(path: Path, leads: set[str]) -> None:
    """A run's decisions.csv without the reason texts of these leads' rows (written anew
    beside it, then moved over it: a reader never sees half a file)."""
    with path.open(newline="", encoding="utf-8") as source:
        rows = list(csv.reader(source))
    if not any(row[1:2] and row[1] in leads and row[4:5] != [""] for row in rows[1:]):
        return
    for row in rows[1:]:
        if row[1:2] and row[1] in leads and len(row) > 4:
            row[4] = ""
    fresh = path.with_suffix(".csv.new")
    with fresh.open("w", newline="", encoding="utf-8") as out:
        csv.writer(out).writerows(rows)
    fresh.replace(path)
