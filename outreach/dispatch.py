"""The tick: claim due messages, check every guardrail, take cap slots, hand over, record.

A message moves through three short transactions, so that whatever the worker does (run
twice, stall, die at any line) nothing is sent twice and nothing is lost:

1. **Claim.** Due rows of running, unkilled campaigns, in due order, `FOR UPDATE SKIP LOCKED`
   on PostgreSQL (concurrent ticks take disjoint rows; SQLite has one writer), become
   `claimed` under this run's lease token. Every later write is conditional on the token:
   a worker whose lease lapsed writes nothing (fencing).
2. **Decide and admit.** The guardrails, in order: kill switches (global, venture, campaign),
   campaign running, send window in the lead's time zone (else the campaign's), DNC,
   suppression (email, domain, identity), unsubscribed, replied/bounced/complained, the
   sequence still active, the template renders with no guardrail hit (an email's variant
   chosen by the narrative memory, `outreach.narrative`, from figures read once per batch).
   A temporary failure defers (window: to its next opening); a permanent one blocks with its reason. Emails that
   pass take a slot of every daily cap (global, venture, campaign with its warm-up, mailbox
   with its warm-up, recipient domain) under the `SendLedger` rows' locks, and are paced
   (campaign: its window spread over its daily limit; mailbox: its gap plus jitter). Admitted
   messages become `sending` in the same transaction as their slots, so no number of workers
   exceeds a cap by one.
3. **Hand over and record.** One transaction per batch first takes the shared sending gates
   of its campaigns, ventures and mailboxes and the global one (fairly queued advisory locks
   that a kill switch, pause or auto-pause takes exclusively: it waits for this batch, and
   nothing is handed over after it commits) and share locks of its leads (which an
   unsubscribe or suppression updates), then re-reads the switches, statuses, mailboxes and
   the leads' consent, status and suppression; then hands each message to the backend and
   records the outcome (the sends counted in their narrative arms in the same transaction).
   A worker that dies here leaves `sending` rows: recovery makes them
   `unknown`, never re-sends them. `claimed` rows of a dead worker were never handed over and
   go back to the queue.
"""

from __future__ import annotations

import csv
import datetime as dt
import logging
import random
import secrets
import zoneinfo
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from leads.models import ConsentStatus, Lead, LeadStatus, SuppressionEntry, SuppressionKind
from outreach.context import lead_recipient
from outreach.enrollment import campaign_enrol, plan_next_steps, stable_pick
from outreach.facts import lead_facts_add
from outreach.headers import sender_domain
from outreach.models import (
    DUE_STATES,
    DispatchDecision,
    DispatchRun,
    Enrollment,
    EnrollmentState,
    Mailbox,
    MessageState,
    OutboundMessage,
    SendLedger,
    SequenceStep,
)
from outreach.narrative import NarrativeBoard, narrative_sends_record, variant_pool
from outreach.sending import (
    FAILED,
    RETRY,
    SENT,
    LiveBackend,
    ProofBackend,
    new_message_id,
    sender_of,
)
from outreach.services import leads_bounced
from outreach.tally import tally_fold
from templating.models import RenderPurpose
from templating.services import (
    render_log_row,
    render_logs_save,
    template_current_version,
    templates_record_use,
    version_render,
)
from ventures.db import sending_gates
from ventures.models import Campaign, CampaignStatus, IcpSegment, SendMode
from ventures.selectors import global_kill_reason
from ventures.sql import rows_insert, rows_update

logger = logging.getLogger(__name__)

BACKOFF_BASE = dt.timedelta(minutes=5)
MAILBOX_RETRY = dt.timedelta(hours=1)  # a paused mailbox's messages look again this often
ACTOR = "outbox"


def is_live(campaign: Campaign) -> bool:
    """Live takes two yeses: the site's AICMO_SEND_MODE and the campaign's mode."""
    return settings.AICMO_SEND_MODE == "live" and campaign.mode == SendMode.LIVE


def retry_delay(attempts: int) -> dt.timedelta:
    """Exponential backoff from five minutes, with up to 20% jitter."""
    base = BACKOFF_BASE * (2 ** max(attempts - 1, 0))
    return base + dt.timedelta(seconds=random.uniform(0, base.total_seconds() * 0.2))  # noqa: S311 - jitter


def _tz(name: str) -> dt.tzinfo | None:
    try:
        return zoneinfo.ZoneInfo(name) if name else None
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return None


@dataclass
class Decision:
    message: OutboundMessage
    outcome: str
    code: str = ""
    reason: str = ""
    due_at: dt.datetime | None = None


@dataclass
class RunState:
    run: DispatchRun
    token: str
    folder: Path
    counts: Counter = field(default_factory=Counter)
    decisions: list[tuple] = field(default_factory=list)
    saved: int = 0  # decisions already stored
    pending: list[tuple] = field(default_factory=list)  # of the transaction under way
    touched: set[int] = field(default_factory=set)  # campaigns that handed something over
    worked: set[int] = field(default_factory=set)  # campaigns whose messages it claimed


# --- 1. Claim ------------------------------------------------------------------------------------


def _lease() -> dt.timedelta:
    return dt.timedelta(seconds=settings.AICMO_TICK_LEASE_SECONDS)


def messages_recover(*, now: dt.datetime | None = None) -> dict[str, int]:
    """Claims whose worker stopped: `claimed` ones go back to the queue (never handed over),
    `sending` ones become `unknown` (they may have been handed over: never re-sent)."""
    now = now or timezone.now()
    lapsed = Q(lease_until__lt=now)
    with transaction.atomic():
        # A claimed message holds no cap slot yet: slots are taken with the `sending` mark.
        back = OutboundMessage.objects.filter(lapsed, state=MessageState.CLAIMED).update(
            state=MessageState.SCHEDULED, lease_token="", lease_until=None
        )
        unknown = OutboundMessage.objects.filter(lapsed, state=MessageState.SENDING).update(
            state=MessageState.UNKNOWN,
            reason_code="worker_stopped",
            reason="The worker stopped while handing the message over: it may have been sent. "
            "It is never re-sent automatically; settle it by hand or by feedback.",
            lease_token="",
            lease_until=None,
        )
    return {"released": back, "unknown": unknown}


def _claim(state: RunState, *, limit: int, campaign_id: int | None) -> list[int]:
    now = timezone.now()
    with transaction.atomic():
        due = OutboundMessage.objects.filter(
            state__in=DUE_STATES,
            due_at__lte=now,
            campaign__status=CampaignStatus.RUNNING,
            campaign__kill_switch=False,
            campaign__venture__kill_switch=False,
        )
        if campaign_id is not None:
            due = due.filter(campaign_id=campaign_id)
        ids = list(
            due.order_by("due_at", "id")
            .select_for_update(skip_locked=True, of=("self",))
            .values_list("pk", flat=True)[:limit]
        )
        if ids:
            OutboundMessage.objects.filter(pk__any=ids).update(
                state=MessageState.CLAIMED,
                lease_token=state.token,
                lease_until=now + _lease(),
                run=state.run,
            )
    return ids


# --- 2. Decide and admit -------------------------------------------------------------------------


def _suppressed(messages: list[OutboundMessage]) -> dict[int, str]:
    """Lead id -> why it is on a suppression list (its venture's or the global one)."""
    if not messages:
        return {}
    leads = [m.lead for m in messages]
    emails = {lead.email_key for lead in leads if lead.email_key}
    domains = {m.recipient_domain for m in messages if m.recipient_domain}
    hashes = {lead.identity_hash for lead in leads if lead.identity_hash}
    ventures = {lead.venture_id for lead in leads}
    entries = SuppressionEntry.objects.filter(
        Q(venture_id__in=ventures) | Q(venture__isnull=True)
    ).filter(
        Q(kind=SuppressionKind.EMAIL, value__any=emails)
        | Q(kind=SuppressionKind.DOMAIN, value__any=domains)
        | Q(identity_hash__in=hashes)
    )
    by_email, by_domain, by_identity = {}, {}, {}
    for entry in entries.values("kind", "value", "identity_hash", "venture_id"):
        scope = entry["venture_id"]
        if entry["kind"] == SuppressionKind.DOMAIN:
            by_domain.setdefault(entry["value"], set()).add(scope)
        else:
            if entry["kind"] == SuppressionKind.EMAIL:
                by_email.setdefault(entry["value"], set()).add(scope)
            if entry["identity_hash"]:
                by_identity.setdefault(entry["identity_hash"], set()).add(scope)
    found = {}
    for m in messages:
        lead = m.lead
        for table, value, label in (
            (by_email, lead.email_key, "email address"),
            (by_domain, m.recipient_domain, "domain"),
            (by_identity, lead.identity_hash, "person (identity)"),
        ):
            scopes = table.get(value, set())
            if None in scopes or lead.venture_id in scopes:
                found[lead.pk] = f"suppressed: {label} on the suppression list"
                break
    return found


def _lead_block(
    lead: Lead, enrollment: Enrollment, suppressed: dict[int, str]
) -> tuple[str, str] | None:
    """Why the lead may not be contacted, in the guardrails' order, or None."""
    if lead.consent_status == ConsentStatus.DNC:
        return "dnc", "the lead is marked do-not-contact"
    if lead.pk in suppressed:
        return "suppressed", suppressed[lead.pk]
    if lead.status == LeadStatus.UNSUBSCRIBED:
        return "unsubscribed", "the lead unsubscribed"
    if lead.status != LeadStatus.ACTIVE:
        return lead.status, f"the lead is {lead.get_status_display().lower()}"
    if enrollment.state != EnrollmentState.ACTIVE:
        return "sequence_stopped", enrollment.stop_reason or "the lead's sequence is over"
    return None


class Renderer:
    """Renders messages of a batch (template versions read once per template); an email's
    variant is chosen by the narrative memory (`outreach.narrative`), whose figures the
    board read once for the batch."""

    def __init__(self, messages: list[OutboundMessage]) -> None:
        # Each step's pool once per batch: the batch's messages share their step objects.
        steps = {m.step_id: m.step for m in messages}
        self.pools = {pk: variant_pool(step) for pk, step in steps.items()}
        self.board = NarrativeBoard.load(messages, self.pools)
        self.versions: dict[int, object] = {}
        self.logs: list[tuple] = []  # render log rows, saved in one insert per batch

    def render(self, message: OutboundMessage) -> Decision | None:
        step = message.step
        pool = self.pools[step.pk]
        if not pool:
            return Decision(
                message, MessageState.BLOCKED, "no_template", "the step has no template"
            )
        lead, campaign = message.lead, message.campaign
        message.segment_id = lead.segment_id
        if step.is_manual:
            template = stable_pick(pool, seed=f"{lead.identity_hash or lead.pk}:{step.pk}")
            message.narrative_choice = {}
        else:
            template, message.narrative_choice = self.board.pick(message, pool)
        if template.pk not in self.versions:
            self.versions[template.pk] = template_current_version(template, actor=ACTOR)
        version = self.versions[template.pk]
        recipient = lead_recipient(lead=lead, campaign=campaign)
        result = version_render(
            version=version,
            recipient=recipient,
            venture=campaign.venture,
            # A manual step is not an email: the live email rules (unsubscribe link, postal
            # address) do not apply to a LinkedIn note or a call script.
            live=is_live(campaign) and not step.is_manual,
            log=False,
        )
        self.logs.append(render_log_row(version, recipient.ref, RenderPurpose.SEND, result))
        message.template, message.template_version = template, version
        message.unsubscribe_link = recipient.unsubscribe_url  # the headers' link too
        if not result.ok:
            codes = ", ".join(result.reason_codes()) or "render_error"
            text = "; ".join(r.message for r in result.blocking_reasons)[:400]
            return Decision(message, MessageState.BLOCKED, "template", f"{codes}: {text}"[:500])
        enrollment = message.enrollment
        follow_up = (
            not step.is_manual
            and step.position > 1
            and not step.new_thread
            and enrollment.thread_message_id
        )
        if follow_up:
            subject = enrollment.thread_subject
            message.subject = subject if subject.lower().startswith("re:") else f"Re: {subject}"
            message.in_reply_to = enrollment.thread_message_id
        else:
            message.subject = result.subject
        message.body_text, message.body_html = result.text, result.html
        return None


def _decide(state: RunState, messages: list[OutboundMessage], global_reason) -> list[Decision]:
    now = timezone.now()
    suppressed = _suppressed(messages)
    renderer = Renderer(messages)
    decisions: list[Decision] = []
    for m in messages:
        campaign, lead = m.campaign, m.lead
        halt = campaign.halt_reason(global_reason=global_reason)
        if halt:
            decisions.append(Decision(m, MessageState.DEFERRED, "halted", halt, m.due_at))
            continue
        if campaign.status != CampaignStatus.RUNNING:
            text = f"campaign is {campaign.get_status_display().lower()}"
            decisions.append(Decision(m, MessageState.DEFERRED, "not_running", text, m.due_at))
            continue
        if not m.step.is_manual:
            tz = _tz(lead.timezone) or campaign.tzinfo
            opening = campaign.next_window_opening(tz, now)
            if opening is None:
                decisions.append(
                    Decision(m, MessageState.BLOCKED, "no_send_days", "no send day is set")
                )
                continue
            if opening > now:
                text = f"outside the send window until {opening.astimezone(tz):%Y-%m-%d %H:%M %Z}"
                decisions.append(Decision(m, MessageState.DEFERRED, "window", text, opening))
                continue
        block = _lead_block(lead, m.enrollment, suppressed)
        if block is not None:
            decisions.append(Decision(m, MessageState.BLOCKED, *block))
            continue
        if m.mailbox is not None and not m.mailbox.is_active and not m.step.is_manual:
            decisions.append(Decision(m, MessageState.DEFERRED, "mailbox_paused",
                                      f"the mailbox {m.mailbox.from_email} is paused",
                                      now + MAILBOX_RETRY))  # fmt: skip
            continue
        if not m.step.is_manual and (problem := _sender_problem(m)):
            decisions.append(Decision(m, MessageState.BLOCKED, "sender", problem))
            continue
        rendered = renderer.render(m)
        if rendered is not None:
            decisions.append(rendered)
            continue
        outcome = MessageState.TASK_OPEN if m.step.is_manual else MessageState.SENDING
        decisions.append(Decision(m, outcome))
    render_logs_save(renderer.logs)
    return decisions


def _day(tz: dt.tzinfo, now: dt.datetime) -> dt.date:
    return now.astimezone(tz).date()


def _next_day_start(tz: dt.tzinfo, now: dt.datetime) -> dt.datetime:
    tomorrow = _day(tz, now) + dt.timedelta(days=1)
    return dt.datetime.combine(tomorrow, dt.time(0, 0), tzinfo=tz)


@dataclass(frozen=True)
class Cap:
    scope: str
    key: str
    day: dt.date
    limit: int
    tz: dt.tzinfo
    label: str

    @property
    def slot(self) -> tuple[str, str, dt.date]:
        return (self.scope, self.key, self.day)


def caps_of(message: OutboundMessage, now: dt.datetime) -> list[Cap]:
    """Every daily cap a message counts against, with today's limit after warm-up."""
    campaign, venture, box = message.campaign, message.campaign.venture, message.mailbox
    site_tz = zoneinfo.ZoneInfo(settings.TIME_ZONE)
    venture_tz = _tz(venture.timezone) or site_tz
    campaign_tz = campaign.tzinfo
    caps = [
        Cap("global", "all", _day(site_tz, now), settings.AICMO_GLOBAL_DAILY_LIMIT, site_tz,
            "global daily limit (AICMO_GLOBAL_DAILY_LIMIT)"),
        Cap("campaign", str(campaign.pk), _day(campaign_tz, now),
            campaign.effective_daily_limit(_day(campaign_tz, now)), campaign_tz,
            "campaign daily limit (with warm-up)"),
        Cap("domain", f"{venture.pk}:{message.recipient_domain}", _day(venture_tz, now),
            settings.AICMO_RECIPIENT_DOMAIN_DAILY_LIMIT, venture_tz,
            f"daily limit for the domain {message.recipient_domain}"),
    ]  # fmt: skip
    if venture.daily_send_limit is not None:  # empty: the venture sets no cap of its own
        caps.append(
            Cap("venture", str(venture.pk), _day(venture_tz, now), venture.daily_send_limit,
                venture_tz, f"venture {venture.slug} daily limit")
        )  # fmt: skip
    if box is not None:
        day = _day(venture_tz, now)
        caps.append(
            Cap("mailbox", str(box.pk), day, box.effective_daily_limit(day), venture_tz,
                f"mailbox {box.from_email} daily limit (with warm-up)")
        )  # fmt: skip
    return caps


def _slot_name(slot: tuple[str, str, dt.date]) -> str:
    return f"{slot[0]}|{slot[1]}|{slot[2].isoformat()}"


def _release_slots(names: Iterable[str]) -> None:
    """Give back cap slots (names as `_slot_name` makes them; one per message holding it)."""
    taken = Counter(names)
    rows_update(
        SendLedger,
        [(*name.split("|"), n) for name, n in sorted(taken.items())],
        keys=("scope", "key", "day"),
        fields=["count"],
        assign={"count": "CASE WHEN t.count > v.count THEN t.count - v.count ELSE 0 END"},
    )


def paced_allowance(campaign: Campaign, limit: int, now: dt.datetime):
    """How many of today's sends the campaign may have made by `now`, so that its daily limit
    spreads over its send window instead of going out in a burst at its start: one, plus the
    limit times the part of today's window (in the campaign's time zone) gone by. Also returns
    when the allowance next grows past a given count."""
    tz = campaign.tzinfo
    today = now.astimezone(tz).date()
    start = dt.datetime.combine(today, campaign.send_window_start, tzinfo=tz)
    end = dt.datetime.combine(today, campaign.send_window_end, tzinfo=tz)
    window = max((end - start).total_seconds(), 60.0)
    gone = min(max((now - start).total_seconds() / window, 0.0), 1.0)
    allowed = min(limit, int(limit * gone) + 1)

    def opens_at(count: int) -> dt.datetime:
        return max(now, start + dt.timedelta(seconds=window * count / max(limit, 1)))

    return allowed, opens_at


def _admit(state: RunState, decisions: list[Decision]) -> None:
    """Take cap slots for the emails that passed (in due order), under the ledger rows' locks,
    and make them `sending` in the same transaction; the rest are deferred with the cap or
    the pacing that held them."""
    now = timezone.now()
    sending = [d for d in decisions if d.outcome == MessageState.SENDING]
    if not sending:
        return
    # The caps of a message depend on its campaign, mailbox and recipient domain only.
    shared: dict[tuple, list[Cap]] = {}
    caps = {}
    for d in sending:
        m = d.message
        key = (m.campaign_id, m.mailbox_id, m.recipient_domain)
        if key not in shared:
            shared[key] = caps_of(m, now)
        caps[m.pk] = shared[key]
    slots = {cap.slot for message_caps in shared.values() for cap in message_caps}
    # In one order for every worker, so that two inserting the same new rows cannot deadlock.
    # (Rows, not model instances: after the first batches of a day they all exist already.)
    rows_insert(SendLedger, sorted(slots), fields=["scope", "key", "day"])
    keys_by_scope: dict[tuple, set[str]] = {}
    for s, k, d in slots:
        keys_by_scope.setdefault((s, d), set()).add(k)
    wanted = Q()
    for (s, d), keys in keys_by_scope.items():
        wanted |= Q(scope=s, day=d, key__any=sorted(keys))
    rows = {
        (row.scope, row.key, row.day): row
        for row in SendLedger.objects.filter(wanted)
        .order_by("scope", "key", "day")
        .select_for_update()
    }
    # The clock is read again under the locks: another worker may have held them meanwhile
    # and moved a mailbox's next slot past the time read before.
    now = timezone.now()
    for decision in sending:
        m = decision.message
        message_caps = caps[m.pk]
        full = next((c for c in message_caps if rows[c.slot].count >= c.limit), None)
        if full is not None:
            decision.outcome, decision.code = MessageState.DEFERRED, "cap"
            decision.reason = f"{full.label} of {full.limit} reached"
            decision.due_at = _next_day_start(full.tz, now)
            continue
        campaign_cap = next(c for c in message_caps if c.scope == "campaign")
        allowed, opens_at = paced_allowance(m.campaign, campaign_cap.limit, now)
        box_row = next((rows[c.slot] for c in message_caps if c.scope == "mailbox"), None)
        slot_at = box_row.next_at if box_row is not None and box_row.next_at else now
        if rows[campaign_cap.slot].count >= allowed or slot_at > now:
            later = max(slot_at, opens_at(rows[campaign_cap.slot].count))
            decision.outcome, decision.code = MessageState.DEFERRED, "pacing"
            decision.reason = f"paced across the send window: next slot at {later.astimezone(dt.UTC):%H:%M:%S} UTC"
            decision.due_at = later
            continue
        for cap in message_caps:
            rows[cap.slot].count += 1
        if box_row is not None:
            gap = m.mailbox.min_gap_seconds + random.uniform(0, m.mailbox.gap_jitter_seconds)  # noqa: S311 - jitter
            box_row.next_at = now + dt.timedelta(seconds=gap)
        m.reserved = [_slot_name(c.slot) for c in message_caps]
    rows_update(
        SendLedger,
        [(row.pk, row.count, row.next_at) for row in rows.values()],
        fields=["count", "next_at"],
    )


def _sender_problem(m: OutboundMessage) -> str:
    """Why the message has no usable From address (mailbox, campaign, venture owner), or ""."""
    try:
        sender_domain(sender_of(m)[1])
    except ValueError:
        return "no valid sender address: set the campaign's sender email or give it a mailbox"
    return ""


def _message_id_domain(m: OutboundMessage) -> str:
    return sender_domain(sender_of(m)[1])


# The columns a decision writes: what was (or would be) sent, and the claim's end.
CONTENT = [
    "template_id", "template_version_id", "subject", "body_text", "body_html", "in_reply_to",
    "segment_id", "narrative_choice",
]  # fmt: skip
STATE = ["state", "reason_code", "reason", "due_at", "lease_token", "lease_until", "updated_at"]
SENT_FIELDS = [
    "state", "sent_at", "esp_message_id", "reason_code", "reason", "lease_token", "lease_until",
    "updated_at",
]  # fmt: skip


def _settle_decisions(state: RunState, decisions: list[Decision]) -> list[OutboundMessage]:
    """Write every decision of the batch (fenced on the lease) in one transaction with the cap
    slots; returns the messages now `sending`. A fixed number of statements per batch."""
    now = timezone.now()
    state.pending = []
    with transaction.atomic():
        # Locked until commit: nobody else changes these rows while the decisions are written.
        held = set(
            OutboundMessage.objects.filter(
                pk__any=[d.message.pk for d in decisions],
                lease_token=state.token,
                state=MessageState.CLAIMED,
            )
            .select_for_update()
            .values_list("pk", flat=True)
        )
        decisions = [d for d in decisions if d.message.pk in held]
        _admit(state, decisions)
        sending, rendered, plain = [], [], []
        for d in decisions:
            m = d.message
            if d.outcome == MessageState.SENDING:
                m.message_id = new_message_id(m, _message_id_domain(m))
                m.attempts += 1
                sending.append(m)
                row = (d.outcome, d.code, d.reason[:500], m.due_at, state.token, now + _lease())
                sent = (m.reserved, m.message_id, m.attempts)
            else:
                due = (d.due_at or now) if d.outcome == MessageState.DEFERRED else m.due_at
                row = (d.outcome, d.code, d.reason[:500], due, "", None)
                sent = ([], m.message_id, m.attempts)
                _note(state, m, d.outcome, d.code, d.reason)
            if d.outcome in (MessageState.SENDING, MessageState.TASK_OPEN):
                content = (
                    m.template_id, m.template_version_id, m.subject, m.body_text, m.body_html,
                    m.in_reply_to, m.segment_id, m.narrative_choice,
                )  # fmt: skip
                rendered.append((m.pk, *row, now, *sent, *content))
            else:
                plain.append((m.pk, *row, now))
        rows_update(OutboundMessage, plain, fields=STATE)
        _stop_sequences([(d.message, d.code, d.reason) for d in decisions])
        rows_update(
            OutboundMessage,
            rendered,
            fields=[*STATE, "reserved", "message_id", "attempts", *CONTENT],
        )
    _keep_notes(state)
    return sending


def _note(state: RunState, m: OutboundMessage, outcome: str, code: str, reason: str) -> None:
    """A decision of the transaction under way: it counts once that transaction commits."""
    state.pending.append((m.pk, m.lead_id, outcome, code, reason))


def _keep_notes(state: RunState) -> None:
    """The transaction committed: its decisions are the run's."""
    for note in state.pending:
        state.counts[str(note[2])] += 1
    state.decisions += state.pending
    state.pending = []


# --- 3. Hand over and record ---------------------------------------------------------------------


def _lock_rules(
    campaign_ids: set[int], venture_ids: set[int], lead_ids: list[int], mailbox_ids: list[int]
) -> None:
    """What every kill switch, pause, auto-pause, unsubscribe and suppression must wait for:
    the shared sending gates of the batch's campaigns, ventures, mailboxes and the global one
    (`ventures.db.sending_gates`, fairly queued), and share locks of its leads, whose rows an
    unsubscribe or a suppression updates. Such a change waits for this transaction, and
    nothing is handed over after it commits. (SQLite has one writer: the run row's update
    below takes the database's write lock first.)"""
    if connection.vendor != "postgresql":
        return
    sending_gates(
        campaign_ids=campaign_ids,
        venture_ids=venture_ids,
        mailbox_ids=mailbox_ids,
        everything=True,
        exclusive=False,
    )
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT id FROM leads_lead WHERE id = ANY(%s) ORDER BY id FOR SHARE", [lead_ids]
        )


# What the hand-over reads of a lead after its re-check: the guardrails (`_lead_block`,
# `_suppressed`), the unsubscribe headers (the id), the next step's row (`plan_next_steps`)
# and the facts (`lead_facts_add`: the id). Read again in the hand-over's transaction; the
# rest of the lead (its profile, for the template) was read with the batch.
LEAD_REREAD = ("status", "consent_status", "email", "email_key", "identity_hash", "venture_id")
# And of an enrolment: the guardrails (`_lead_block`), the thread (`Outcomes._threads`) and
# the next step (`plan_next_steps`: its state and mailbox).
ENROLLMENT_REREAD = ("state", "stop_reason", "thread_message_id", "thread_subject", "mailbox_id")


def _reread(objects: Iterable, model, fields: tuple[str, ...]) -> None:
    """The objects (rows of `model`, loaded with the batch) get the current values of
    `fields`, in one query: plain rows, not a model instance of every column for each."""
    by_pk: dict[int, list] = {}
    for obj in objects:
        by_pk.setdefault(obj.pk, []).append(obj)
    for pk, *values in model.objects.filter(pk__any=list(by_pk)).values_list("pk", *fields):
        for obj in by_pk[pk]:
            for name, value in zip(fields, values, strict=True):
                setattr(obj, name, value)


def _deliver(state: RunState, sending: list[OutboundMessage], backend) -> None:
    """Hand the batch over and record every outcome, in one transaction (see the module's
    docstring): the re-checks first, then each message to the backend, then the outcomes in
    a fixed number of statements."""
    if not sending:
        return
    state.pending = []
    with transaction.atomic():
        DispatchRun.objects.filter(pk=state.run.pk).update(counts=dict(state.counts))
        # Only what this run still holds, locked until the outcomes are recorded: a recovery
        # that finds the lease lapsed waits for this transaction instead of racing it.
        held = set(
            OutboundMessage.objects.filter(
                pk__any=[m.pk for m in sending], lease_token=state.token, state=MessageState.SENDING
            )
            .select_for_update()
            .values_list("pk", flat=True)
        )
        sending = [m for m in sending if m.pk in held]
        if not sending:
            return
        campaign_ids = {m.campaign_id for m in sending}
        mailbox_ids = sorted({m.mailbox_id for m in sending if m.mailbox_id})
        venture_ids = {m.campaign.venture_id for m in sending}
        _lock_rules(campaign_ids, venture_ids, sorted({m.lead_id for m in sending}), mailbox_ids)
        paused_boxes = set(
            Mailbox.objects.filter(pk__in=mailbox_ids, is_active=False).values_list("pk", flat=True)
        )
        global_reason = global_kill_reason()
        campaigns = {
            c.pk: c for c in Campaign.objects.filter(pk__in=campaign_ids).select_related("venture")
        }
        _reread((m.lead for m in sending), Lead, LEAD_REREAD)
        _reread((m.enrollment for m in sending), Enrollment, ENROLLMENT_REREAD)
        for m in sending:
            m.campaign = campaigns[m.campaign_id]
        suppressed = _suppressed(sending)
        outcomes = Outcomes(state)
        for m in sending:
            halt = m.campaign.halt_reason(global_reason=global_reason)
            if halt is None and m.campaign.status != CampaignStatus.RUNNING:
                halt = f"campaign is {m.campaign.get_status_display().lower()}"
            if halt is not None:
                outcomes.undo(m, MessageState.DEFERRED, "halted", halt)
                continue
            block = _lead_block(m.lead, m.enrollment, suppressed)
            if block is not None:
                outcomes.undo(m, MessageState.BLOCKED, *block)
                continue
            if m.mailbox_id in paused_boxes:
                outcomes.undo(m, MessageState.DEFERRED, "mailbox_paused",
                              "the mailbox was paused", timezone.now() + MAILBOX_RETRY)  # fmt: skip
                continue
            outcomes.add(m, backend.send(m))
            state.touched.add(m.campaign_id)
        outcomes.record()
    _keep_notes(state)


class Outcomes:
    """The outcomes of one batch's hand-over, recorded together (`record`)."""

    def __init__(self, state: RunState) -> None:
        self.state = state
        self.now = timezone.now()
        self.sent: list[tuple[OutboundMessage, str, str]] = []
        self.undone: list[tuple] = []  # (message, state, code, reason, due_at)
        self.unknown: list[tuple[OutboundMessage, str]] = []
        self.bounced: list[tuple[OutboundMessage, str]] = []

    def undo(self, m: OutboundMessage, outcome: str, code: str, reason: str, due_at=None) -> None:
        """Not handed over after all (or refused): its cap slots go back."""
        self.undone.append((m, outcome, code, reason[:500], due_at or m.due_at))

    def add(self, m: OutboundMessage, outcome) -> None:
        if outcome.result == SENT:
            self.sent.append((m, outcome.esp_message_id[:300], outcome.detail[:500]))
        elif outcome.result == RETRY and m.attempts < settings.AICMO_SEND_MAX_ATTEMPTS:
            self.undo(m, MessageState.DEFERRED, "transient", outcome.detail,
                      self.now + retry_delay(m.attempts))  # fmt: skip
        elif outcome.result in (RETRY, FAILED):
            code = "gave_up" if outcome.result == RETRY else "rejected"
            code = "hard_bounce" if outcome.bounce else code
            self.undo(m, MessageState.FAILED, code, outcome.detail)
            if outcome.bounce:
                self.bounced.append((m, outcome.detail))
        else:
            self.unknown.append((m, outcome.detail[:500]))

    def record(self) -> None:
        """Every outcome in a fixed number of statements, fenced on the lease (the rows are
        locked by this transaction, so the fence holds for all of them or none)."""
        state, now = self.state, timezone.now()
        fence, fence_params = "t.lease_token = %s AND t.state = %s", (state.token, "sending")
        done = set(
            rows_update(
                OutboundMessage,
                [
                    (m.pk, MessageState.SENT, now, esp, "", detail, "", None, now)
                    for m, esp, detail in self.sent
                ],
                fields=SENT_FIELDS,
                where=fence,
                params=fence_params,
                returning=True,
            )
        )
        sent = [m for m, _, _ in self.sent if m.pk in done]
        for m in sent:
            _note(state, m, MessageState.SENT, "", "")
        self._threads(sent)
        templates_record_use(uses=Counter(m.template_id for m in sent if m.template_id), at=now)
        plan_next_steps(messages=sent, after=now)
        back = rows_update(
            OutboundMessage,
            [
                (m.pk, outcome, code, reason, due, "", None, now, [])
                for m, outcome, code, reason, due in self.undone
            ],
            fields=[*STATE, "reserved"],
            where=fence,
            params=fence_params,
            returning=True,
        )
        back = set(back)
        undone = [u for u in self.undone if u[0].pk in back]
        _release_slots(name for u in undone for name in u[0].reserved)
        for m, outcome, code, reason, _ in undone:
            _note(state, m, outcome, code, reason)
        _stop_sequences([(m, code, reason) for m, _, code, reason, _ in undone])
        # It may have been sent: its slots stay taken, and it is never re-sent automatically.
        lost = set(
            rows_update(
                OutboundMessage,
                [
                    (m.pk, MessageState.UNKNOWN, "unknown", detail, m.due_at, "", None, now)
                    for m, detail in self.unknown
                ],
                fields=STATE,
                where=fence,
                params=fence_params,
                returning=True,
            )
        )
        for m, detail in self.unknown:
            if m.pk in lost:
                _note(state, m, MessageState.UNKNOWN, "unknown", detail)
        _hard_bounces([b for b in self.bounced if b[0].pk in back])
        # Last: concurrent batches counting into the same arms wait for each other's commit
        # from here on, so the shorter the rest of the transaction, the less they wait.
        narrative_sends_record(messages=sent)
        lead_facts_add(sent=sent)  # after the arms: every transaction locks arms, then leads

    @staticmethod
    def _threads(sent: list[OutboundMessage]) -> None:
        """The first email sent to a lead starts the thread its follow-ups reply in."""
        starts = [m for m in sent if not m.enrollment.thread_message_id and not m.in_reply_to]
        rows_update(
            Enrollment,
            [(m.enrollment_id, m.message_id, m.subject[:500]) for m in starts],
            fields=["thread_message_id", "thread_subject"],
            where="t.thread_message_id = ''",
        )
        for m in starts:
            m.enrollment.thread_message_id = m.message_id


def _hard_bounces(bounced: list[tuple[OutboundMessage, str]]) -> None:
    """Permanent refusals for the recipient, by venture and server answer."""
    by_reason: dict[tuple, list[OutboundMessage]] = {}
    for m, detail in bounced:
        by_reason.setdefault((m.campaign.venture, detail), []).append(m)
    for (venture, detail), messages in by_reason.items():
        leads_bounced(
            venture=venture,
            lead_ids=[m.lead_id for m in messages],
            addresses=[m.recipient for m in messages],
            detail=detail,
            actor=ACTOR,
        )


# Blocked for one of these, the lead can never get this sequence's next step: it stops.
STOPS_SEQUENCE = frozenset(
    {"dnc", "suppressed", "unsubscribed", "bounced", "replied", "erased", "sequence_stopped"}
)


def _stop_sequences(blocked: list[tuple[OutboundMessage, str, str]]) -> None:
    """The enrolments of leads blocked for good stop, with the reason (one statement)."""
    rows = {
        m.enrollment_id: (m.enrollment_id, EnrollmentState.STOPPED, reason[:300])
        for m, code, reason in blocked
        if code in STOPS_SEQUENCE
    }
    rows_update(
        Enrollment,
        rows.values(),
        fields=["state", "stop_reason"],
        where="t.state = %s",
        params=[EnrollmentState.ACTIVE],
    )


# --- The run -------------------------------------------------------------------------------------


def tick(
    *,
    worker: str = "tick",
    campaign: Campaign | None = None,
    batch_size: int | None = None,
    max_batches: int | None = None,
) -> DispatchRun:
    """One pass: enrol new leads, recover lapsed claims, then claim and settle due messages
    batch by batch until none is due. Returns the run, with its counts and artifacts."""
    run = DispatchRun.objects.create(
        worker=worker[:200], mode=settings.AICMO_SEND_MODE, campaign=campaign
    )
    token = secrets.token_hex(16)
    # The id alone could repeat (a database restored or recreated); the token cannot.
    folder = Path(settings.AICMO_ARTIFACT_DIR) / "runs" / f"run-{run.pk}-{token[:8]}"
    state = RunState(run=run, token=token, folder=folder)
    try:
        _enrol_running(campaign)
        state.counts.update({f"recovered_{k}": v for k, v in messages_recover().items() if v})
        _health_catch_up(state, campaign)
        batches = 0
        while max_batches is None or batches < max_batches:
            if not _batch(state, batch_size or settings.AICMO_TICK_BATCH, campaign):
                break
            batches += 1
        _health_checks(state)
        tally_fold(state.worked)  # the batches' tally deltas, one row per key again
    except Exception as exc:
        run.error = f"{type(exc).__name__}: {exc}"[:2000]
        if isinstance(exc, DatabaseError):
            # The connection may be gone (a restart, a dropped line): the run's record is
            # written over a new one. What the failed transaction held is recovered by the
            # next pass (claimed: back to the queue; being handed over: unknown).
            connection.close()
        try:
            _finish(state)
        except DatabaseError as again:
            logger.error("Dispatch run %s: its record could not be saved: %s", run.pk, again)
        raise
    _finish(state)
    return run


def _health_checks(state: RunState) -> None:
    """Auto-pause what this run's sends show to be unhealthy (`outreach.health`)."""
    from outreach.health import health_check

    _paused(state, [p for pk in sorted(state.touched) for p in health_check(pk)])


def _health_catch_up(state: RunState, campaign: Campaign | None) -> None:
    """Before sending: the figures of campaigns with bounces or complaints not yet read."""
    from outreach.health import health_catch_up

    _paused(state, health_catch_up(campaign=campaign))


def _paused(state: RunState, pauses: list) -> None:
    for pause in pauses:
        state.counts["auto_paused"] += 1
        logger.warning("Auto-paused: %s", pause)


def _enrol_running(campaign: Campaign | None) -> None:
    running = Campaign.objects.filter(status=CampaignStatus.RUNNING).select_related("venture")
    if campaign is not None:
        running = running.filter(pk=campaign.pk)
    for each in running:
        campaign_enrol(campaign=each)


def _batch(state: RunState, size: int, campaign: Campaign | None) -> bool:
    global_reason = global_kill_reason()
    if global_reason:
        return False
    ids = _claim(state, limit=size, campaign_id=campaign.pk if campaign else None)
    if not ids:
        return False
    messages = _load(state, ids)
    decisions = _decide(state, messages, global_reason)
    sending = _settle_decisions(state, decisions)
    live = [m for m in sending if is_live(m.campaign)]
    proof = [m for m in sending if not is_live(m.campaign)]
    with ProofBackend(state.folder / "eml") as backend:
        _deliver(state, proof, backend)
    with LiveBackend() as backend:
        _deliver(state, live, backend)
    _save_decisions(state)
    return True


def _load(state: RunState, ids: list[int]) -> list[OutboundMessage]:
    """The claimed messages with their leads and enrolments; the few campaigns, ventures,
    steps (with their templates), mailboxes and segments of a batch are read once and shared
    by its messages, not joined into every row."""
    messages = list(
        OutboundMessage.objects.filter(pk__any=ids, lease_token=state.token)
        .select_related("lead", "enrollment")
        .order_by("due_at", "id")
    )
    campaigns = Campaign.objects.select_related("venture").in_bulk(
        {m.campaign_id for m in messages}
    )
    steps = SequenceStep.objects.prefetch_related("templates").in_bulk(
        {m.step_id for m in messages}
    )
    mailboxes = Mailbox.objects.in_bulk({m.mailbox_id for m in messages if m.mailbox_id})
    segments = IcpSegment.objects.in_bulk(
        {m.lead.segment_id for m in messages if m.lead.segment_id}
    )
    state.worked.update(campaigns)
    for m in messages:
        m.campaign, m.step = campaigns[m.campaign_id], steps[m.step_id]
        m.mailbox = mailboxes.get(m.mailbox_id) if m.mailbox_id else None
        if m.lead.segment_id:
            m.lead.segment = segments[m.lead.segment_id]
    return messages


def _save_decisions(state: RunState) -> None:
    """The run's decisions not stored yet, in one statement (their time: now)."""
    run = state.run.pk
    rows_insert(
        DispatchDecision,
        [(run, pk, lead, o, c, r[:500]) for pk, lead, o, c, r in state.decisions[state.saved :]],
        fields=["run_id", "message_id", "lead_id", "outcome", "reason_code", "reason"],
    )
    state.saved = len(state.decisions)


def _finish(state: RunState) -> None:
    run = state.run
    run.counts = dict(state.counts)
    run.finished_at = timezone.now()
    run.artifact_dir = str(state.folder)
    write_run_artifacts(run, state.decisions)  # first: files need no database
    _save_decisions(state)
    run.save(update_fields=["counts", "finished_at", "artifact_dir", "error"])


def write_run_artifacts(run: DispatchRun, decisions: list[tuple]) -> None:
    """decisions.csv, summary.md and proof.sql in the run's folder."""
    folder = Path(run.artifact_dir)
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "decisions.csv").open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["message", "lead", "outcome", "reason_code", "reason"])
        writer.writerows(decisions)
    counts = run.counts
    lines = [
        f"# Dispatch run {run.pk}",
        "",
        f"- worker: {run.worker}",
        f"- mode: {run.mode}",
        f"- started: {run.started_at:%Y-%m-%d %H:%M:%S %Z}",
        f"- finished: {timezone.now():%Y-%m-%d %H:%M:%S %Z}",
        "",
        "| outcome | messages |",
        "|---|---|",
        *(f"| {k} | {v} |" for k, v in sorted(counts.items())),
    ]
    if run.error:
        lines += ["", f"Stopped by an error: {run.error}"]
    (folder / "summary.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    table = DispatchDecision._meta.db_table
    (folder / "proof.sql").write_text(
        f"-- The counts of dispatch run {run.pk}, from the database.\n"
        f"SELECT outcome, COUNT(*) AS messages FROM {table} WHERE run_id = {run.pk} "
        "GROUP BY outcome ORDER BY outcome;\n",
        encoding="utf-8",
    )
