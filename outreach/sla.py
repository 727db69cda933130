"""Reply handling SLA: a positive reply is someone waiting for an answer.

A campaign's `reply_sla_hours` (24 by default; 0 = none) is how long a positive reply
may wait, counted from when the engine learned of it (`received_at`: an export imported
today of last month's replies does not arrive overdue), until an operator marks it handled
(`reply_handled`, audited). Past that:

- the console flags it (`reply_sla_state`: the events list, the campaign's outbox panel);
- `replies_escalate` (run every minute by django-q2, and by `manage.py feedback escalate`)
  emails the venture's owner once per reply. "Once" is the database's: each reply is claimed
  by a conditional UPDATE of `escalated_at`, so two workers never both send; if the email
  cannot be sent the claim is released and the next pass tries again. With the site in proof
  mode (`AICMO_SEND_MODE=proof`) the email is written as an .eml file under
  `<artifact dir>/notifications/` instead, like every other email of proof mode.

A venture with no owner address still gets the flag; its escalation is recorded as going
nowhere, so the console says why nobody was emailed.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.core.mail import EmailMessage, get_connection
from django.db import transaction
from django.db.models import Count, Q, Value
from django.urls import reverse
from django.utils import timezone

from outreach.models import FeedbackEvent, FeedbackKind, Sentiment
from ventures.services import Actor, DomainError, actor_label, audit_record

logger = logging.getLogger(__name__)
ACTOR = "reply-sla"
NO_OWNER = "nobody: the venture has no owner email"


@dataclass(frozen=True)
class SlaState:
    """Where a reply stands against its campaign's SLA."""

    code: str  # "handled", "waiting", "overdue", or "" (no SLA applies)
    due_at: dt.datetime | None = None

    @property
    def overdue(self) -> bool:
        return self.code == "overdue"


def reply_sla_state(event: FeedbackEvent, *, now: dt.datetime | None = None) -> SlaState:
    """The reply's SLA state; "" for events no SLA applies to (not a positive reply, not
    matched to a campaign's message, or a campaign without an SLA)."""
    if event.kind != FeedbackKind.REPLIED or event.sentiment != Sentiment.POSITIVE:
        return SlaState("")
    if event.handled_at is not None:
        return SlaState("handled")
    hours = event.message.campaign.reply_sla_hours if event.message_id else 0
    if not hours:
        return SlaState("")
    due = event.received_at + dt.timedelta(hours=hours)
    return SlaState("overdue" if (now or timezone.now()) >= due else "waiting", due)


def waiting_replies():
    """Positive replies nobody has handled, matched to a message (the partial index
    `feedback_reply_waiting` holds exactly these)."""
    return FeedbackEvent.objects.filter(
        kind=FeedbackKind.REPLIED,
        sentiment=Sentiment.POSITIVE,
        handled_at__isnull=True,
        message__isnull=False,
    )


def replies_waiting_counts(
    campaigns: list, *, now: dt.datetime | None = None
) -> dict[int, tuple[int, int]]:
    """Per campaign id: its positive replies waiting for an answer, and how many of them are
    past its SLA (`reply_sla_state`'s rule, counted in the database: one query for the whole
    list, through the partial index `feedback_reply_waiting`)."""
    now = now or timezone.now()
    overdue = Q()
    for hours in {c.reply_sla_hours for c in campaigns if c.reply_sla_hours}:
        overdue |= Q(
            message__campaign__reply_sla_hours=hours,
            received_at__lte=now - dt.timedelta(hours=hours),
        )
    rows = (
        waiting_replies()
        .filter(message__campaign_id__in=[c.pk for c in campaigns])
        .order_by()
        .values_list("message__campaign_id")
        .annotate(n=Count("*"), late=Count("id", filter=overdue) if overdue else Value(0))
    )
    return {pk: (n, late) for pk, n, late in rows}


def reply_handled(*, event: FeedbackEvent, actor: Actor, note: str = "") -> bool:
    """An operator has dealt with the reply: its SLA clock stops (audited). False when it
    was handled already."""
    if event.kind != FeedbackKind.REPLIED:
        raise DomainError("Only a reply can be marked handled.")
    now = timezone.now()
    with transaction.atomic():
        changed = FeedbackEvent.objects.filter(pk=event.pk, handled_at__isnull=True).update(
            handled_at=now, handled_by=actor_label(actor)[:200]
        )
        if not changed:
            return False
        event.handled_at, event.handled_by = now, actor_label(actor)[:200]
        if event.message_id:
            audit_record(
                actor=actor,
                action="feedback.reply_handled",
                entity=event.message.campaign,
                after={"event": event.pk, "message": event.message_id, "lead": event.lead_id},
                reason=note.strip()[:500],
            )
    return True


def replies_escalate(*, now: dt.datetime | None = None) -> list[FeedbackEvent]:
    """Email the venture's owner about each positive reply past its SLA, once; returns the
    replies escalated in this pass."""
    now = now or timezone.now()
    candidates = (
        waiting_replies()
        .filter(escalated_at__isnull=True, message__campaign__reply_sla_hours__gt=0)
        .select_related("message__campaign__venture", "lead")
        .order_by("received_at", "id")
    )
    escalated = []
    for event in candidates:
        if not reply_sla_state(event, now=now).overdue:
            continue
        venture = event.message.campaign.venture
        to = venture.owner_email or NO_OWNER
        claimed = FeedbackEvent.objects.filter(pk=event.pk, escalated_at__isnull=True).update(
            escalated_at=now, escalated_to=to[:254]
        )
        if not claimed:
            continue  # another worker took it
        try:
            if venture.owner_email:
                _notify(event, now=now)
        except Exception as exc:  # the mail server: released, tried again next pass
            FeedbackEvent.objects.filter(pk=event.pk).update(escalated_at=None, escalated_to="")
            logger.warning("Reply SLA: could not email %s about event %s: %s", to, event.pk, exc)
            continue
        event.escalated_at, event.escalated_to = now, to
        audit_record(
            actor=ACTOR,
            action="feedback.reply_escalated",
            entity=event.message.campaign,
            after={"event": event.pk, "lead": event.lead_id, "to": to},
            reason=f"positive reply waiting past the {event.message.campaign.reply_sla_hours} h SLA",
        )
        escalated.append(event)
    return escalated


def _notify(event: FeedbackEvent, *, now: dt.datetime) -> None:
    campaign = event.message.campaign
    hours = int((now - event.received_at).total_seconds() // 3600)
    who = event.lead.email if event.lead_id else event.recipient
    link = settings.AICMO_SITE_URL.rstrip("/") + reverse(
        "admin:outreach_feedbackevent_change", args=[event.pk]
    )
    wrote = (event.reply_text or event.text).strip()[:2000]
    parts = [
        f"{who} replied positively to {campaign.name} {hours} hours ago, and nobody has marked "
        f"the reply handled (the campaign's SLA is {campaign.reply_sla_hours} hours).",
        f"What they wrote:\n\n{wrote}" if wrote else "",
        f"Noted with the reply:\n\n{event.notes.strip()[:2000]}" if event.notes.strip() else "",
        f"Answer them, then mark the reply handled:\n{link}",
        "You get this email once per reply.",
    ]
    email = EmailMessage(
        subject=f"[{campaign.name}] A positive reply from {who} is waiting ({hours} h)",
        body="\n\n".join(p for p in parts if p),
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[campaign.venture.owner_email],
    )
    if settings.AICMO_SEND_MODE == "proof":
        folder = Path(settings.AICMO_ARTIFACT_DIR) / "notifications"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"reply-sla-{event.pk}.eml").write_bytes(email.message().as_bytes())
        return
    email.connection = get_connection(fail_silently=False)
    email.send()
