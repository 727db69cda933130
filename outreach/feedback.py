"""Feedback: events about sent messages, stored once, matched, and acted on.

Every way in (ESP webhooks through django-anymail's normalised events today) calls
`feedback_record`, which in one transaction stores the event unless its (source, event id) is
stored already (a webhook retried ten times counts once), matches it to its outbound message,
and applies its effect:

- matched by the ESP's message id, else by our Message-ID in the event's In-Reply-To or
  References (a reply), else by the address it names (the latest email sent to that lead);
  unmatched events are kept and listed, never dropped;
- any event that proves a message left (delivered, bounced, opened, replied, ...) settles an
  `unknown` message as sent;
- a hard bounce, or a rejection for a bad or bounced address: the address is suppressed in the
  venture, the lead is bounced and its sequence stops; a spam complaint, or a rejection as
  spam: suppressed too, sequence stopped; an unsubscribe: the person is unsubscribed
  venture-wide (`leads.unsubscribes`);
- a reply: the lead is marked replied, its sequence stops and its pending messages are
  blocked (and, when the sequence says so, those of the other leads at the same company
  domain in the campaign); an auto-reply (Auto-Submitted, X-Autoreply, Precedence headers) is
  recorded and stops nothing;
- opens are recorded as unreliable (privacy proxies open every mail); clicks are recorded.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from dataclasses import dataclass, field

from django.db import IntegrityError, transaction
from django.utils import timezone

from leads.models import Lead, LeadStatus, UnsubscribeSource
from outreach.health import health_check
from outreach.models import (
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


def feedback_record(incoming: Incoming, *, check_health: bool = True) -> tuple[FeedbackEvent, bool]:
    """Store the event once, match it and apply its effect; (event, created). A repeat of a
    stored event changes nothing and returns the stored one. A bounce or complaint then checks
    the campaign's health (auto-pause) once the event is committed: never inside the
    transaction that locked the lead, because a pause waits for the batches handing over, and
    those may wait for that lead."""
    event_id = (incoming.event_id or event_digest(incoming.raw))[:200]
    existing = FeedbackEvent.objects.filter(source=incoming.source, event_id=event_id).first()
    if existing is not None:
        return existing, False
    try:
        with transaction.atomic():
            event = FeedbackEvent(
                source=incoming.source[:40],
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
            _match(event, incoming)
            event.save(force_insert=True)  # a repeat delivered meanwhile fails here
            event.effect = _apply(event, incoming)[:500]
            event.save(update_fields=["effect"])
            narrative_feedback_record(events=[event])
            if check_health and event.message is not None and event.kind in ALARMS:
                transaction.on_commit(lambda: _check_health(event))
    except IntegrityError:
        # The same event, stored meanwhile by a concurrent delivery of it.
        return FeedbackEvent.objects.get(source=incoming.source, event_id=event_id), False
    return event, True


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


def _check_health(event: FeedbackEvent) -> None:
    pauses = health_check(event.message.campaign_id)
    if pauses:
        effect = "; ".join([event.effect, *(f"auto-paused {p}" for p in pauses)])[:500]
        FeedbackEvent.objects.filter(pk=event.pk).update(effect=effect)
        event.effect = effect


def _match(event: FeedbackEvent, incoming: Incoming) -> None:
    message = None
    if event.esp_message_id:
        # With or without angle brackets: ESPs (and anymail for some of them) differ.
        bare = event.esp_message_id.strip().strip("<>")
        ids = [bare, f"<{bare}>"]
        message = (
            OutboundMessage.objects.filter(esp_message_id__in=ids).order_by("-id").first()
            # Some ESPs name the message by the Message-ID we set.
            or OutboundMessage.objects.filter(message_id__in=ids).order_by("-id").first()
        )
        event.matched_by = "esp_message_id" if message else ""
    if message is None and event.thread_ids:
        message = (
            OutboundMessage.objects.filter(message_id__in=event.thread_ids).order_by("-id").first()
        )
        event.matched_by = "thread" if message else ""
    if message is None and event.recipient and event.kind == FeedbackKind.REPLIED:
        # A reply that quotes none of our ids: the latest email sent to that address.
        message = (
            OutboundMessage.objects.filter(
                lead__email_key=event.recipient.strip().lower(),
                state__in=[MessageState.SENT, MessageState.UNKNOWN],
            )
            .order_by("-sent_at", "-id")
            .first()
        )
        event.matched_by = "address" if message else ""
    if message is not None:
        event.message = message
        event.lead_id = message.lead_id
        event.venture_id = message.venture_id
    elif incoming.lead_id is not None:
        lead = Lead.objects.filter(pk=incoming.lead_id).only("venture_id").first()
        if lead is not None:
            event.lead_id, event.venture_id, event.matched_by = lead.pk, lead.venture_id, "lead"


def _apply(event: FeedbackEvent, incoming: Incoming) -> str:
    message = event.message
    if event.lead_id is None:
        return "unmatched: kept for the operator"
    kind, reject = event.kind, incoming.reject_reason
    unsubscribed = kind == FeedbackKind.UNSUBSCRIBED or (
        kind == FeedbackKind.REJECTED and reject == "unsubscribed"
    )
    if message is None and not unsubscribed:
        return "recorded: no message of the lead's to act on"
    done = []
    if message is not None and event.kind in PROVES_SENT and _settle_unknown(message, event):
        done.append("settled the unknown message as sent")
    lead = Lead.objects.select_for_update().get(pk=event.lead_id)
    if kind == FeedbackKind.BOUNCED or (kind == FeedbackKind.REJECTED and reject in BAD_ADDRESS):
        address = lead.email or message.recipient
        leads_bounced(
            venture=lead.venture, lead_ids=[lead.pk], addresses=[address],
            detail=f"{event.reason or kind} ({event.source})", actor=ACTOR,
        )  # fmt: skip
        done.append(f"suppressed {address} in the venture; the lead bounced")
    elif kind == FeedbackKind.COMPLAINED or (kind == FeedbackKind.REJECTED and reject == "spam"):
        done.append(_suppress(lead, message, "spam complaint", "complaint"))
        sequences_stop(
            lead_ids=[lead.pk], reason=f"a spam complaint ({event.source})", code="complained"
        )
    elif unsubscribed:
        from leads.unsubscribes import lead_unsubscribe

        if lead.status != LeadStatus.ERASED:
            lead_unsubscribe(lead=lead, source=incoming.unsubscribe_source, actor=ACTOR)
            done.append("unsubscribed the person in the venture")
    elif kind == FeedbackKind.REPLIED:
        done.append(_replied(lead, message, event))
    elif kind == FeedbackKind.OPENED:
        done.append("recorded (opens are unreliable)")
    return "; ".join(d for d in done if d) or "recorded"


def _settle_unknown(message: OutboundMessage, event: FeedbackEvent) -> bool:
    if message.state != MessageState.UNKNOWN:
        return False
    unknown_message_settle(
        message=message,
        sent=True,
        actor=ACTOR,
        reason=f"{event.get_kind_display()} reported by {event.source} (event {event.event_id})",
    )
    return True


def _suppress(lead: Lead, message: OutboundMessage, reason: str, source: str) -> str:
    from leads.suppression import suppression_add

    address = lead.email or message.recipient
    if not address:
        return ""
    suppression_add(
        values=[address], venture=lead.venture, reason=reason[:300], actor=ACTOR, source=source
    )
    return f"suppressed {address} in the venture"


def _replied(lead: Lead, message: OutboundMessage, event: FeedbackEvent) -> str:
    when = (event.occurred_at or event.received_at).date().isoformat()
    Lead.objects.filter(pk=lead.pk, status=LeadStatus.ACTIVE).update(
        status=LeadStatus.REPLIED, updated_at=timezone.now()
    )
    sequences_stop(lead_ids=[lead.pk], reason=f"the lead replied on {when}", code="replied")
    done = "the lead replied: its sequence stopped"
    sequence = message.enrollment.sequence
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
    file imported before is a repeat) in one transaction."""
    rows = feedback_rows_read(data, source=source)
    result = ImportResult(rows=len(rows))
    alarmed: set[int] = set()
    with transaction.atomic():
        for incoming in rows:
            event, created = feedback_record(incoming, check_health=False)
            if not created:
                result.repeated += 1
                continue
            result.stored += 1
            result.by_kind[event.kind] = result.by_kind.get(event.kind, 0) + 1
            result.unmatched += event.message_id is None
            if event.message is not None and event.kind in ALARMS:
                alarmed.add(event.message.campaign_id)
    for campaign_id in sorted(alarmed):  # once per campaign, after the import committed
        health_check(campaign_id)
    return result
