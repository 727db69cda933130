"""Feedback: events about sent messages, stored once, matched, and acted on.

Every way in (ESP webhooks through django-anymail's normalised events, `feedback import` of
event exports, the IMAP poll of mailboxes in `outreach.imap`, an operator recording a reply)
calls `feedback_record_many` (or `feedback_record` for one event), which in one transaction
stores each event unless its (source, event id) is stored already (a webhook retried ten
times counts once), matches it to its outbound message, and applies its effect. A batch costs
a fixed number of queries for the kinds that come in numbers (deliveries, opens, clicks, hard
bounces, complaints: one query per way of matching, one to lock the leads acted on, one set of
suppression writes per venture, one INSERT); unsubscribes, replies and `unknown` messages to
settle are applied one by one. If a concurrent delivery of the same events stored some of
them first, the batch is undone and stored one event at a time, so no effect counts twice:

- matched by the ESP's message id, else by our Message-IDs the event names (a reply's
  In-Reply-To or References, a bounce report's returned original), else, for a reply or an
  event read from a mailbox, by the address it names (the latest email sent to that lead,
  from that mailbox); unmatched events are kept and listed, never dropped;
- any event that proves a message left (delivered, bounced, opened, replied, ...) settles an
  `unknown` message as sent;
- a hard bounce, or a rejection for a bad or bounced address: the address is suppressed in the
  venture, the lead is bounced and its sequence stops (a soft bounce, `deferred`, only
  records); a spam complaint, or a rejection as
  spam: suppressed too, sequence stopped; an unsubscribe: the person is unsubscribed
  venture-wide (`leads.unsubscribes`);
- a reply: the lead is marked replied, its sequence stops and its pending messages are
  blocked (and, when the sequence says so, those of the other leads at the same company
  domain in the campaign), unless the sequence does not stop on replies; an auto-reply
  (Auto-Submitted, X-Autoreply, Precedence headers) is not a reply: it stops the sequence
  only if the sequence says so, and otherwise, when it names a return date, the lead's next
  step waits until the day after it (`outreach.autoreply`);
- opens are recorded as unreliable (privacy proxies open every mail); clicks are recorded.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import NamedTuple

from django.db import IntegrityError, transaction
from django.utils import timezone

from leads.models import Lead, LeadStatus, UnsubscribeSource
from leads.suppression import suppression_add
from outreach.facts import lead_facts_add
from outreach.health import health_check, health_check_soon
from outreach.models import (
    DUE_STATES,
    FeedbackEvent,
    FeedbackKind,
    MessageState,
    Objection,
    ObjectionRule,
    OutboundMessage,
    Sentiment,
)
from outreach.narrative import narrative_feedback_record
from outreach.services import leads_bounced, sequences_stop, unknown_message_settle
from ventures.sql import rows_insert

ACTOR = "feedback"
# Events that prove the message was handed over: an `unknown` one is settled as sent.
PROVES_SENT = frozenset(
    {
        FeedbackKind.QUEUED, FeedbackKind.SENT, FeedbackKind.DELIVERED, FeedbackKind.DEFERRED,
        FeedbackKind.BOUNCED, FeedbackKind.COMPLAINED, FeedbackKind.UNSUBSCRIBED,
        FeedbackKind.OPENED, FeedbackKind.CLICKED, FeedbackKind.AUTORESPONDED,
        FeedbackKind.REPLIED,
    }
)  # fmt: skip
# Events after which the campaign's health is checked (outreach.health).
ALARMS = frozenset({FeedbackKind.BOUNCED, FeedbackKind.COMPLAINED, FeedbackKind.REJECTED})
# anymail reject reasons that say the address itself is bad.
BAD_ADDRESS = frozenset({"invalid", "bounced", "timed_out"})
_MESSAGE_ID = re.compile(r"<[^<>\s]+>")
BULK = 1_000  # events per batch of an import


@dataclass
class Incoming:
    """One event as a way in reads it, before it is stored."""

    source: str
    kind: str
    event_id: str = ""
    occurred_at: dt.datetime | None = None
    recipient: str = ""
    esp_message_id: str = ""
    thread_ids: list[str] = field(default_factory=list)
    reason: str = ""
    reject_reason: str = ""
    url: str = ""
    subject: str = ""
    text: str = ""
    raw: object = None  # what the source sent, for the digest when it gives no id
    sentiment: str = ""
    notes: str = ""
    unsubscribe_source: str = UnsubscribeSource.ESP  # an unsubscribe reported by the ESP
    lead_id: int | None = None  # the lead the event names itself (an unsubscribe token)
    # The mailbox whose inbox the event was read from (IMAP): an event of any kind that names
    # none of our ids is matched by its address, to the latest email that mailbox sent there.
    mailbox_id: int | None = None


def event_digest(raw: object) -> str:
    """A stable id for an event that has none of its own: the SHA-256 of its content."""
    data = raw if isinstance(raw, bytes) else json.dumps(raw, sort_keys=True, default=str).encode()
    return "sha256:" + hashlib.sha256(data).hexdigest()


def thread_ids_of(*headers: str) -> list[str]:
    """The Message-IDs named in In-Reply-To / References header values, in order, once."""
    found: list[str] = []
    for value in headers:
        for mid in _MESSAGE_ID.findall(value or ""):
            if mid not in found:
                found.append(mid)
    return found


AUTO_PRECEDENCE = frozenset({"auto_reply", "bulk", "junk", "list"})
AUTO_SUBJECT = ("out of office", "automatic reply", "auto:", "autoreply", "abwesenheitsnotiz")


def is_auto_reply(message) -> bool:
    """An out-of-office or other robot reply, from its headers (RFC 3834 Auto-Submitted, the
    X-Autoreply family, Precedence) or, failing those, its subject. `message` is anything
    with an email message's `get(name)` that gives decoded text."""
    submitted = (message.get("Auto-Submitted") or "").strip().lower()
    if submitted and submitted != "no":
        return True
    if any(message.get(h) for h in ("X-Autoreply", "X-Autorespond", "X-Auto-Response-Suppress")):
        return True
    if (message.get("Precedence") or "").strip().lower() in AUTO_PRECEDENCE:
        return True
    return (message.get("Subject") or "").strip().lower().startswith(AUTO_SUBJECT)


def mail_incoming(
    headers, *, source: str, event_id: str, occurred_at: dt.datetime | None, sender: str,
    subject: str, text: str, raw: object, mailbox_id: int | None = None,
) -> Incoming:  # fmt: skip
    """A mail someone sent us, read by an ESP's inbound webhook or from a mailbox over IMAP,
    as the event it is: an email to the List-Unsubscribe mailto (its signed token names the
    lead, whatever it replies to), an auto-reply (`is_auto_reply`), else a reply, matched by
    the Message-IDs in its In-Reply-To and References. `headers.get(name)` gives decoded
    header text."""
    common = {
        "source": source, "event_id": event_id, "occurred_at": occurred_at,
        "recipient": sender, "subject": subject, "raw": raw, "mailbox_id": mailbox_id,
    }  # fmt: skip
    unsubscriber = mailto_unsubscriber(subject)
    if unsubscriber is not None:
        # Matched to the latest email sent to the lead the token names.
        lead_id, latest = unsubscriber
        return Incoming(
            kind=FeedbackKind.UNSUBSCRIBED, thread_ids=[latest] if latest else [],
            unsubscribe_source="mailto", lead_id=lead_id, **common,
        )  # fmt: skip
    return Incoming(
        kind=FeedbackKind.AUTORESPONDED if is_auto_reply(headers) else FeedbackKind.REPLIED,
        thread_ids=thread_ids_of(headers.get("In-Reply-To") or "", headers.get("References") or ""),
        text=text,
        **common,
    )


def feedback_record(incoming: Incoming, *, check_health: bool = True) -> tuple[FeedbackEvent, bool]:
    """Store one event once, match it and apply its effect; (event, created). A repeat of a
    stored event changes nothing and returns the stored one."""
    return feedback_record_many([incoming], check_health=check_health)[0]


def feedback_record_many(
    incomings: list[Incoming], *, check_health: bool = True
) -> list[tuple[FeedbackEvent, bool]]:
    """Store each event once, match and apply them, in one transaction and a fixed number of
    queries for the common kinds (an ESP's batch of deliveries, opens and bounces); (event,
    created) for each, in order. A repeat (stored before, or earlier in the same batch)
    changes nothing. Bounces and complaints then check their campaigns' health (auto-pause)
    once per campaign, after the commit: never inside the transaction that locked the leads,
    because a pause waits for the batches handing over, and those may wait for these leads."""
    if not incomings:
        return []
    try:
        with transaction.atomic():
            results, alarms = _record_batch(incomings)
    except IntegrityError:
        # Some were stored meanwhile by a concurrent delivery of them: the transaction is
        # undone whole; one by one, each finds its stored twin or stores itself.
        if len(incomings) == 1:
            source, event_id = _key_of(incomings[0])
            return [(FeedbackEvent.objects.get(source=source, event_id=event_id), False)]
        return [
            pair
            for incoming in incomings
            for pair in feedback_record_many([incoming], check_health=check_health)
        ]
    if check_health and alarms:
        transaction.on_commit(lambda: _check_health(alarms))
    return results


def _key_of(incoming: Incoming) -> tuple[str, str]:
    return incoming.source[:40], (incoming.event_id or event_digest(incoming.raw))[:200]


def _record_batch(incomings: list[Incoming]) -> tuple[list, dict[int, FeedbackEvent]]:
    keys = [_key_of(incoming) for incoming in incomings]
    stored: dict[tuple[str, str], FeedbackEvent] = {}
    by_source: dict[str, list[str]] = {}
    for source, event_id in keys:
        by_source.setdefault(source, []).append(event_id)
    for source, ids in by_source.items():
        for event in FeedbackEvent.objects.filter(source=source, event_id__in=ids):
            stored[(event.source, event.event_id)] = event
    results: list[tuple[FeedbackEvent, bool]] = []
    new: list[tuple[Incoming, FeedbackEvent]] = []
    for incoming, key in zip(incomings, keys, strict=True):
        if key in stored:
            results.append((stored[key], False))
            continue
        event = _event_of(incoming, *key)
        stored[key] = event  # a second copy later in the batch is a repeat
        new.append((incoming, event))
        results.append((event, True))
    _match_many(new)
    alarms = _apply_many(new)
    _insert([event for _, event in new])
    narrative_feedback_record(events=[event for _, event in new])
    lead_facts_add(events=[event for _, event in new])  # after the arms, as in the tick
    return results, alarms


# Every column of an event, as `_insert` writes it (foreign keys by id).
EVENT_COLUMNS = [
    f.name for f in FeedbackEvent._meta.concrete_fields if f is not FeedbackEvent._meta.auto_field
]


def _insert(events: list[FeedbackEvent]) -> None:
    """One statement for the batch (`ventures.sql.rows_insert`), each event given its id. A
    row that conflicts was stored meanwhile by a concurrent delivery of the same event: the
    batch's effects would then count twice, so the whole transaction is undone."""
    attnames = [FeedbackEvent._meta.get_field(name).attname for name in EVENT_COLUMNS]
    stored = rows_insert(
        FeedbackEvent,
        ([getattr(event, a) for a in attnames] for event in events),
        fields=EVENT_COLUMNS,
        returning=("id", "source", "event_id"),
    )
    if len(stored) != len(events):
        raise IntegrityError("some of these events were stored meanwhile")
    ids = {(source, event_id): pk for pk, source, event_id in stored}
    for event in events:
        event.pk = ids[(event.source, event.event_id)]
        event._state.adding = False


def _event_of(incoming: Incoming, source: str, event_id: str) -> FeedbackEvent:
    event = FeedbackEvent(
        source=source,
        event_id=event_id,
        kind=incoming.kind,
        occurred_at=incoming.occurred_at,
        recipient=incoming.recipient[:254],
        esp_message_id=incoming.esp_message_id[:300],
        thread_ids=incoming.thread_ids[:50],
        reason=incoming.reason[:500],
        url=incoming.url[:2000],
        subject=incoming.subject[:998],
        text=incoming.text,
        reliable=incoming.kind != FeedbackKind.OPENED,
        sentiment=incoming.sentiment,
        notes=incoming.notes,
    )
    if event.kind in (FeedbackKind.REPLIED, FeedbackKind.AUTORESPONDED):
        event.reply_text = reply_text_of(event.text)
        if event.kind == FeedbackKind.REPLIED:
            event.objection, event.sentiment = classify(event)
    return event


def mailto_unsubscriber(subject: str) -> tuple[int, str] | None:
    """The lead (id) an email to our unsubscribe address names by the signed token in its
    subject (the List-Unsubscribe mailto), with the Message-ID of the latest email sent to it;
    None when the subject carries no valid token (forged, garbled, or the preview's sample)."""
    from outreach.headers import unsubscribe_token_from_mailto
    from outreach.unsubscribe import unsubscribe_token_read

    token = unsubscribe_token_from_mailto(subject or "")
    pk = unsubscribe_token_read(token) if token else None
    if not isinstance(pk, int):
        return None
    lead = Lead.objects.filter(pk=pk).exclude(status=LeadStatus.ERASED).first()
    if lead is None:
        return None
    latest = (
        OutboundMessage.objects.filter(lead=lead).exclude(message_id="").order_by("-id").first()
    )
    return lead.pk, latest.message_id if latest else ""


def _check_health(alarms: dict[int, FeedbackEvent]) -> None:
    """Each campaign's health once (at most every AICMO_AUTOPAUSE_CHECK_SECONDS); a pause is
    noted on the event that tripped it."""
    for campaign_id, pauses in health_check_soon(alarms).items():
        event = alarms[campaign_id]
        if pauses:
            effect = "; ".join([event.effect, *(f"auto-paused {p}" for p in pauses)])[:500]
            FeedbackEvent.objects.filter(pk=event.pk).update(effect=effect)
            event.effect = effect


class MessageRef(NamedTuple):
    """What matching and deciding need of a message; the whole row is read only for the
    events that act on it."""

    pk: int
    lead_id: int
    venture_id: int
    campaign_id: int
    state: str


# A message read whole for an event that acts on it leaves its bodies in the database.
_MESSAGE_DEFER = ("subject", "body_text", "body_html", "reserved")


def _latest_by(field: str, values: set[str]) -> dict[str, MessageRef]:
    """The newest message whose `field` is each value (one query)."""
    found: dict[str, MessageRef] = {}
    if values:
        # Said outright, `<> ''` lets PostgreSQL use the partial index on the ESP's id: it
        # cannot prove it from an IN list of more than 100 values (a seq scan of every row).
        rows = (
            OutboundMessage.objects.filter(**{f"{field}__in": values})
            .exclude(**{field: ""})
            .order_by("id")
            .values_list(field, "pk", "lead_id", "venture_id", "campaign_id", "state")
        )
        for value, *ref in rows:
            found[value] = MessageRef(*ref)  # a later id wins
    return found


def _matched(event: FeedbackEvent, ref: MessageRef, how: str) -> None:
    event._ref, event.message_id, event.matched_by = ref, ref.pk, how
    event.lead_id, event.venture_id = ref.lead_id, ref.venture_id


def _match_many(new: list[tuple[Incoming, FeedbackEvent]]) -> None:
    """Match each event to its message: the ESP's message id (with or without angle
    brackets: ESPs, and anymail for some of them, differ; some ESPs name the message by the
    Message-ID we set), else our Message-ID in its In-Reply-To/References, else (a reply that
    quotes none of our ids) the latest email sent to the replying address, else the lead the
    event names itself. One query per way, whatever the batch's size."""
    for _, event in new:
        event._ref = None
    forms = []  # (event, its ESP id bare and in angle brackets)
    for _, event in new:
        if event.esp_message_id:
            bare = event.esp_message_id.strip().strip("<>")
            forms.append((event, (bare, f"<{bare}>")))
    by_esp = _latest_by("esp_message_id", {form for _, pair in forms for form in pair})
    left = {f for _, pair in forms if not any(x in by_esp for x in pair) for f in pair}
    by_ours = _latest_by("message_id", left)
    for event, pair in forms:
        found = [m for table in (by_esp, by_ours) for m in (table.get(pair[0]), table.get(pair[1]))
                 if m is not None]  # fmt: skip
        if found:
            _matched(event, max(found, key=lambda m: m.pk), "esp_message_id")
    threads = [e for _, e in new if e._ref is None and e.thread_ids]
    by_thread = _latest_by("message_id", {mid for e in threads for mid in e.thread_ids})
    for event in threads:
        found = [by_thread[mid] for mid in event.thread_ids if mid in by_thread]
        if found:
            _matched(event, max(found, key=lambda m: m.pk), "thread")
    for incoming, event in new:
        by_address = event.kind == FeedbackKind.REPLIED or incoming.mailbox_id is not None
        if event._ref is None and event.recipient and by_address:
            # A reply (or a bounce read from a mailbox) that quotes none of our ids: the
            # latest email sent to that address (from that mailbox, when it came from one).
            sent = OutboundMessage.objects.filter(
                lead__email_key=event.recipient.strip().lower(),
                state__in=[MessageState.SENT, MessageState.UNKNOWN],
            )
            if incoming.mailbox_id is not None:
                sent = sent.filter(mailbox_id=incoming.mailbox_id)
            ref = (
                sent.order_by("-sent_at", "-id")
                .values_list("pk", "lead_id", "venture_id", "campaign_id", "state")
                .first()
            )
            if ref is not None:
                _matched(event, MessageRef(*ref), "address")
        if event._ref is None and incoming.lead_id is not None:
            lead = Lead.objects.filter(pk=incoming.lead_id).only("venture_id").first()
            if lead is not None:
                event.lead_id, event.venture_id, event.matched_by = lead.pk, lead.venture_id, "lead"


def _is_bounce(event: FeedbackEvent, incoming: Incoming) -> bool:
    return event.kind == FeedbackKind.BOUNCED or (
        event.kind == FeedbackKind.REJECTED and incoming.reject_reason in BAD_ADDRESS
    )


def _is_complaint(event: FeedbackEvent, incoming: Incoming) -> bool:
    return event.kind == FeedbackKind.COMPLAINED or (
        event.kind == FeedbackKind.REJECTED and incoming.reject_reason == "spam"
    )


def _apply_many(new: list[tuple[Incoming, FeedbackEvent]]) -> dict[int, FeedbackEvent]:
    """Each event's effect, set-wise where events come in numbers: deliveries, opens and
    clicks only record (unless they settle an `unknown` message); hard bounces and complaints
    suppress and stop per venture in one go; the rest (unsubscribes, replies, auto-replies,
    settling) one by one. The leads acted on are locked first, in one query, in id order.
    Returns, per campaign with a bounce or complaint, the last such event (for the health
    check)."""
    acting = [(i, e) for i, e in new if e.lead_id is not None and _acts(e, i)]
    whole = OutboundMessage.objects.defer(*_MESSAGE_DEFER).in_bulk(
        {e._ref.pk for _, e in acting if e._ref is not None}
    ) if acting else {}  # fmt: skip
    for _, event in acting:
        if event._ref is not None:
            event.message = whole[event._ref.pk]
    locked = {
        lead.pk: lead
        for lead in Lead.objects.select_for_update(of=("self",), no_key=True)
        .filter(pk__in={e.lead_id for _, e in acting})
        .select_related("venture")
        .order_by("pk")
    } if acting else {}  # fmt: skip
    bounces: dict[tuple[int, str], list[tuple[FeedbackEvent, Lead]]] = {}
    complaints: dict[int, list[tuple[FeedbackEvent, Lead]]] = {}
    alarms: dict[int, FeedbackEvent] = {}
    for incoming, event in new:
        if event.lead_id is None:
            event.effect = "unmatched: kept for the operator"
            continue
        if not _acts(event, incoming):
            event.effect = _recorded(event)
            continue
        lead = locked[event.lead_id]
        if event._ref is not None and event.kind in ALARMS:
            alarms[event._ref.campaign_id] = event
        if _is_bounce(event, incoming) or _is_complaint(event, incoming):
            settled = event.kind in PROVES_SENT and _settle_unknown(event.message, event)
            event.effect = "settled the unknown message as sent" if settled else ""
            if _is_bounce(event, incoming):
                detail = f"{event.reason or event.kind} ({event.source})"
                bounces.setdefault((lead.venture_id, detail), []).append((event, lead))
            else:
                complaints.setdefault(lead.venture_id, []).append((event, lead))
            continue
        event.effect = _apply(event, incoming, lead)[:500]
    for (_, detail), group in bounces.items():
        addresses = [lead.email or event.message.recipient for event, lead in group]
        leads_bounced(
            venture=group[0][1].venture, lead_ids=[lead.pk for _, lead in group],
            addresses=addresses, detail=detail, actor=ACTOR,
        )  # fmt: skip
        for (event, _), address in zip(group, addresses, strict=True):
            done = f"suppressed {address} in the venture; the lead bounced"
            event.effect = "; ".join(d for d in (event.effect, done) if d)[:500]
    for group in complaints.values():
        addresses = [lead.email or event.message.recipient for event, lead in group]
        suppression_add(
            values=[a for a in addresses if a], venture=group[0][1].venture,
            reason="spam complaint", actor=ACTOR, source="complaint", gate_sends=False,
        )  # fmt: skip
        by_source: dict[str, list[int]] = {}
        for event, lead in group:
            by_source.setdefault(event.source, []).append(lead.pk)
        for source, lead_ids in by_source.items():
            sequences_stop(
                lead_ids=lead_ids, reason=f"a spam complaint ({source})", code="complained"
            )
        for (event, _), address in zip(group, addresses, strict=True):
            done = f"suppressed {address} in the venture" if address else ""
            event.effect = "; ".join(d for d in (event.effect, done) if d)[:500] or "recorded"
    return alarms


def _acts(event: FeedbackEvent, incoming: Incoming) -> bool:
    """Whether the event does more than record itself."""
    if event.kind in (FeedbackKind.UNSUBSCRIBED, FeedbackKind.REPLIED, FeedbackKind.AUTORESPONDED):
        return True
    if event.kind == FeedbackKind.REJECTED and incoming.reject_reason == "unsubscribed":
        return True
    if event._ref is None:
        return False
    if event.kind in PROVES_SENT and event._ref.state == MessageState.UNKNOWN:
        return True
    return _is_bounce(event, incoming) or _is_complaint(event, incoming)


def _recorded(event: FeedbackEvent) -> str:
    if event.message_id is None:
        return "recorded: no message of the lead's to act on"
    return "recorded (opens are unreliable)" if event.kind == FeedbackKind.OPENED else "recorded"


def _apply(event: FeedbackEvent, incoming: Incoming, lead: Lead) -> str:
    """The effect of one event that is not a bounce or a complaint (those go set-wise), on
    its lead (locked)."""
    message, kind = event.message, event.kind
    unsubscribed = kind == FeedbackKind.UNSUBSCRIBED or (
        kind == FeedbackKind.REJECTED and incoming.reject_reason == "unsubscribed"
    )
    if message is None and not unsubscribed:
        return "recorded: no message of the lead's to act on"
    done = []
    if message is not None and event.kind in PROVES_SENT and _settle_unknown(message, event):
        done.append("settled the unknown message as sent")
    if unsubscribed:
        from leads.unsubscribes import lead_unsubscribe

        if lead.status != LeadStatus.ERASED:
            lead_unsubscribe(lead=lead, source=incoming.unsubscribe_source, actor=ACTOR)
            done.append("unsubscribed the person in the venture")
    elif kind == FeedbackKind.REPLIED:
        done.append(_replied(lead, message, event))
    elif kind == FeedbackKind.AUTORESPONDED:
        done.append(_auto_replied(lead, message, event))
    elif kind == FeedbackKind.OPENED:
        done.append("recorded (opens are unreliable)")
    return "; ".join(d for d in done if d) or "recorded"


def _settle_unknown(message: OutboundMessage, event: FeedbackEvent) -> bool:
    if message.state != MessageState.UNKNOWN:
        return False
    from ventures.services import DomainError

    try:
        unknown_message_settle(
            message=message,
            sent=True,
            actor=ACTOR,
            reason=f"{event.get_kind_display()} reported by {event.source} "
            f"(event {event.event_id})",
        )
    except DomainError:  # settled meanwhile (an operator, or another event of the batch)
        return False
    message.state = MessageState.SENT
    return True


def _replied(lead: Lead, message: OutboundMessage, event: FeedbackEvent) -> str:
    when = (event.occurred_at or event.received_at).date().isoformat()
    sequence = message.enrollment.sequence
    if not sequence.stop_on_reply:
        return "the lead replied; its sequence goes on (it does not stop on replies)"
    Lead.objects.filter(pk=lead.pk, status=LeadStatus.ACTIVE).update(
        status=LeadStatus.REPLIED, updated_at=timezone.now()
    )
    sequences_stop(lead_ids=[lead.pk], reason=f"the lead replied on {when}", code="replied")
    done = "the lead replied: its sequence stopped"
    if sequence.stop_on_company_reply and lead.company_domain:
        colleagues = list(
            Lead.objects.filter(campaign_id=lead.campaign_id, company_domain=lead.company_domain)
            .exclude(pk=lead.pk)
            .values_list("pk", flat=True)
        )
        if colleagues:
            sequences_stop(
                lead_ids=colleagues,
                reason=f"someone at {lead.company_domain} replied on {when}",
                code="company_replied",
            )
            done += f", and those of {len(colleagues)} colleagues at {lead.company_domain}"
    return done


def _auto_replied(lead: Lead, message: OutboundMessage, event: FeedbackEvent) -> str:
    """An out-of-office: the sequence stops if it says so; else, when the reply names a
    return date, the lead's next step waits until the day after it (`outreach.autoreply`)."""
    from outreach.autoreply import resume_at, return_date_of

    received = event.occurred_at or event.received_at
    if message.enrollment.sequence.stop_on_auto_reply:
        sequences_stop(
            lead_ids=[lead.pk],
            reason=f"an auto-reply on {received.date().isoformat()}",
            code="auto_replied",
        )
        return "an auto-reply: the sequence stopped (it stops on auto-replies)"
    back = return_date_of(event.reply_text or event.text, after=received)
    if back is None:
        return "an auto-reply: recorded; the sequence goes on"
    resume = resume_at(back, timezone_name=lead.timezone or str(message.campaign.tzinfo))
    moved = OutboundMessage.objects.filter(
        lead_id=lead.pk, state__in=DUE_STATES, due_at__lt=resume
    ).update(due_at=resume, updated_at=timezone.now())
    later = f"the next step waits until {resume.date().isoformat()}" if moved else (
        "no pending step was due before then"
    )  # fmt: skip
    return f"an auto-reply: away until {back.isoformat()}; {later}"


def reply_record(
    *, message: OutboundMessage, sentiment: str, actor, notes: str = ""
) -> FeedbackEvent:
    """An operator records a reply to `message` (read in their mailbox, say) with how it
    reads: stored and applied like any reply (the lead replied, its sequence stops), and
    audited."""
    import uuid

    from ventures.services import DomainError, actor_label, audit_record

    if sentiment not in Sentiment.values:
        raise DomainError(f"Unknown sentiment {sentiment!r}.")
    if not message.message_id or message.state not in (MessageState.SENT, MessageState.UNKNOWN):
        raise DomainError("Only an email that was sent can have a reply.")
    event, _ = feedback_record(
        Incoming(
            source="manual",
            kind=FeedbackKind.REPLIED,
            event_id=f"manual:{message.pk}:{uuid.uuid4().hex}",
            occurred_at=timezone.now(),
            recipient=message.recipient,
            thread_ids=[message.message_id],
            sentiment=sentiment,
            notes=notes.strip(),
        )
    )
    audit_record(
        actor=actor,
        action="feedback.reply_recorded",
        entity=message.campaign,
        after={"message": message.pk, "sentiment": sentiment, "by": actor_label(actor)},
        reason=notes.strip()[:500],
    )
    return event


REPLY_LANGUAGES = ["en", "de", "fr", "es", "it", "nl", "sv", "da", "pl"]


def reply_text_of(text: str) -> str:
    """The new part of a reply: without the quoted thread ("On ... wrote:", "> ...") and the
    signature (mail-parser-reply, in the languages our leads write in)."""
    if not text.strip():
        return ""
    from mailparser_reply import EmailReplyParser

    try:
        return (EmailReplyParser(languages=REPLY_LANGUAGES).parse_reply(text) or "").strip()
    except Exception:
        return text.strip()


def classify(event: FeedbackEvent) -> tuple[str, str]:
    """(objection, sentiment) of a reply: the first active ObjectionRule (by priority) found in
    its new text; a match is an objection ("not interested" a negative reply). A reply an
    operator called negative or an objection that no rule matches is "other"."""
    import re

    text = event.reply_text or event.text or event.notes
    for rule in ObjectionRule.objects.filter(is_active=True).order_by("priority", "id"):
        try:
            found = re.search(rule.pattern, text, flags=re.IGNORECASE)
        except re.error:
            continue  # a rule saved around the form's check: skipped, never fatal
        if found:
            sentiment = event.sentiment or (
                Sentiment.NEGATIVE if rule.category == Objection.NOT_INTERESTED
                else Sentiment.OBJECTION
            )  # fmt: skip
            return rule.category, sentiment
    if event.sentiment in (Sentiment.NEGATIVE, Sentiment.OBJECTION):
        return Objection.OTHER, event.sentiment
    return "", event.sentiment


def erase_feedback(sender=None, *, lead_ids: list[int], **kwargs) -> None:
    """leads.signals.lead_erased receiver: what the erased people wrote and their addresses
    go from their feedback events; the events stay, so the counts still add up."""
    FeedbackEvent.objects.filter(lead_id__in=lead_ids).update(
        recipient="", subject="", text="", reply_text="", notes="", url="", thread_ids=[]
    )


# --- Event exports (`manage.py feedback import FILE`) ---------------------------------------------

# An export's words for each kind (ESP consoles and mailbox tools name them differently).
KIND_WORDS = {
    FeedbackKind.BOUNCED: {"bounce", "bounced", "hard_bounce", "hardbounce", "hard bounce",
                           "permanent_fail", "failed_permanent"},
    FeedbackKind.DEFERRED: {"deferred", "soft_bounce", "softbounce", "soft bounce", "transient",
                            "delayed"},
    FeedbackKind.COMPLAINED: {"complaint", "complained", "spam", "spamcomplaint", "spam complaint",
                              "abuse"},
    FeedbackKind.UNSUBSCRIBED: {"unsubscribe", "unsubscribed", "optout", "opt-out", "opt_out"},
    FeedbackKind.DELIVERED: {"delivered", "delivery"},
    FeedbackKind.OPENED: {"open", "opened"},
    FeedbackKind.CLICKED: {"click", "clicked"},
    FeedbackKind.REPLIED: {"reply", "replied", "response"},
    FeedbackKind.AUTORESPONDED: {"autoreply", "auto_reply", "auto-reply", "autoresponded",
                                 "out_of_office", "ooo"},
    FeedbackKind.REJECTED: {"rejected", "dropped", "blocked"},
}  # fmt: skip
WORD_KIND = {word: kind for kind, words in KIND_WORDS.items() for word in words}
# Column names, lower-cased, for each field.
COLUMNS = {
    "kind": ("event", "type", "event_type", "kind", "recordtype", "record_type", "status"),
    "recipient": ("email", "recipient", "to", "address", "rcpt_to", "from"),
    "esp_message_id": ("message_id", "messageid", "esp_message_id", "transmission_id"),
    "event_id": ("event_id", "id", "eventid"),
    "occurred_at": ("timestamp", "date", "time", "occurred_at", "bouncedat", "receivedat",
                    "deliveredat", "created_at"),
    "reason": ("reason", "description", "details", "error", "diagnostic"),
    "url": ("url", "link", "originallink"),
    "in_reply_to": ("in_reply_to", "in-reply-to"),
}  # fmt: skip
IMPORT_MAX_PROBLEMS = 20


class FeedbackFileError(Exception):
    """The file cannot be imported; `problems` lists what to fix (line: problem)."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems[:3]))
        self.problems = problems


def feedback_rows_read(data: bytes, *, source: str) -> list[Incoming]:
    """Every row of a CSV event export as an Incoming, or FeedbackFileError naming each bad
    row (the whole file is checked before anything is stored)."""
    import csv
    import io

    from django.utils.dateparse import parse_datetime

    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise FeedbackFileError(["the file is not UTF-8 text (save it as CSV UTF-8)"]) from None
    try:
        dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    reader = csv.DictReader(io.StringIO(text), dialect=dialect)
    header = {(name or "").strip().lower(): name for name in reader.fieldnames or []}
    found = {
        field: next((header[c] for c in names if c in header), None)
        for field, names in COLUMNS.items()
    }
    if found["kind"] is None or (found["recipient"] is None and found["esp_message_id"] is None):
        raise FeedbackFileError([
            "line 1: needs an event column (event, type, ...) and an email or message id "
            f"column; found: {', '.join(reader.fieldnames or []) or 'no header'}"
        ])  # fmt: skip
    rows, problems = [], []
    for number, row in enumerate(reader, start=2):
        values = {f: (row.get(col) or "").strip() for f, col in found.items() if col}
        word = values["kind"].lower()
        kind = WORD_KIND.get(word)
        if kind is None:
            problems.append(f"line {number}: unknown event {values['kind']!r}")
            continue
        occurred = None
        if values.get("occurred_at"):
            occurred = parse_datetime(values["occurred_at"].replace("Z", "+00:00"))
            if occurred is None:
                problems.append(f"line {number}: {values['occurred_at']!r} is not a date and time")
                continue
            if timezone.is_naive(occurred):
                occurred = timezone.make_aware(occurred, dt.UTC)
        rows.append(
            Incoming(
                source=source,
                kind=kind,
                event_id=values.get("event_id", ""),
                occurred_at=occurred,
                recipient=values.get("recipient", ""),
                esp_message_id=values.get("esp_message_id", ""),
                thread_ids=thread_ids_of(values.get("in_reply_to", "")),
                reason=values.get("reason", ""),
                reject_reason="bounced" if word in ("dropped", "blocked") else "",
                url=values.get("url", ""),
                raw=sorted(row.items(), key=lambda kv: str(kv[0])),
            )
        )
        if len(problems) >= IMPORT_MAX_PROBLEMS:
            break
    if problems:
        raise FeedbackFileError(problems)
    return rows


@dataclass
class ImportResult:
    rows: int = 0
    stored: int = 0
    repeated: int = 0
    unmatched: int = 0
    by_kind: dict = field(default_factory=dict)


def feedback_import(data: bytes, *, source: str = "import") -> ImportResult:
    """Import an event export: checked whole first, then every row stored (once: a row of a
    file imported before is a repeat) in one transaction, a thousand rows at a time."""
    rows = feedback_rows_read(data, source=source)
    result = ImportResult(rows=len(rows))
    alarmed: set[int] = set()
    with transaction.atomic():
        pairs = [
            pair
            for start in range(0, len(rows), BULK)
            for pair in feedback_record_many(rows[start : start + BULK], check_health=False)
        ]
        for event, created in pairs:
            if not created:
                result.repeated += 1
                continue
            result.stored += 1
            result.by_kind[event.kind] = result.by_kind.get(event.kind, 0) + 1
            result.unmatched += event.message_id is None
            if event._ref is not None and event.kind in ALARMS:
                alarmed.add(event._ref.campaign_id)
    for campaign_id in sorted(alarmed):  # once per campaign, after the import committed
        health_check(campaign_id)
    return result
