"""Reads of the outbox that reports and commands share: where a campaign's leads are, what a
dispatch run held back and why, which narrative is winning in each segment, and which
mailboxes the engine has paused."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db.models import Count, Exists, Min, OuterRef, Q, QuerySet, Sum
from django.urls import reverse
from django.utils import timezone

from outreach.health import MAILBOX_AUTO_PAUSE
from outreach.models import (
    DUE_STATES,
    AutoPause,
    DispatchDecision,
    DispatchRun,
    Enrollment,
    FeedbackEvent,
    Mailbox,
    MessageState,
    NarrativeStat,
    OutboundMessage,
    RoutingRule,
    SendLedger,
    Sequence,
)
from outreach.narrative import how_sure, probability_best, rate_interval
from ventures.console import RAISE_CONFIRM_STATUSES, CapLevel, LimitRaise, RampFields, ramp_raises
from ventures.models import AuditEvent, Campaign, CampaignStatus, IcpSegment, Venture


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


def mailbox_caps(campaigns: list[Campaign], now: dt.datetime) -> dict[int, CapLevel]:
    """For the console's "effective today" (`ventures.console.register_cap_source`): a
    campaign with mailboxes sends at most what its active ones allow today (each after its
    warm-up, read on the venture's day as the tick does); one query for every campaign.

    A pool with no active mailbox holds its leads' sends (the tick defers a paused mailbox's
    messages): its level says so, naming each mailbox and why it is off (the engine's reason
    for an auto-pause), in at most three more queries for all of them. A lead enrolled
    meanwhile is given one of the paused mailboxes (`enrollment.Router`) and waits for it."""
    links = Mailbox.campaigns.through.objects.filter(
        campaign_id__in=[c.pk for c in campaigns]
    ).select_related("mailbox")
    boxes: dict[int, list[Mailbox]] = {}
    for link in links:
        boxes.setdefault(link.campaign_id, []).append(link.mailbox)
    idle = [pk for pk, pool in boxes.items() if not any(b.is_active for b in pool)]
    why = {p.mailbox.pk: p.pause.reason for p in mailboxes_auto_paused(idle)} if idle else {}
    levels = {}
    for campaign in campaigns:
        if campaign.pk not in boxes:
            continue  # no mailbox: it sends from its own sender, under the other caps only
        day = now.astimezone(venture_tz(campaign.venture)).date()
        active = [b for b in boxes[campaign.pk] if b.is_active]
        total = sum(b.effective_daily_limit(day) for b in active)
        paused = len(boxes[campaign.pk]) - len(active)
        detail = f"{len(active)} active mailbox{'es' if len(active) != 1 else ''} {total:,}"
        if paused:
            detail += f" ({paused} paused)"
        held = brief = ""
        if not active:
            held, brief = _pool_held(boxes[campaign.pk], why), POOL_HELD_BRIEF
            detail += "; a lead enrolled meanwhile waits for one of them"
        levels[campaign.pk] = CapLevel("mailboxes", total, detail, held, brief)
    return levels


def _pool_held(pool: list[Mailbox], why: dict[int, str]) -> str:
    """ "no mailbox can send: every mailbox of the pool is paused (a@x: auto-paused, ...)"."""
    each = "; ".join(
        f"{box}: auto-paused, {why[box.pk]}" if box.pk in why else f"{box}: paused"
        for box in sorted(pool, key=lambda b: b.pk)
    )
    return f"{POOL_HELD_BRIEF}: every mailbox of the pool is paused ({each})"


POOL_HELD_BRIEF = "no mailbox can send"


MAILBOX_RAMP = RampFields(
    limit=("daily_limit", "Daily limit"),
    start=("warmup_start_limit", "Warm-up: sends on the first day"),
    increase=("warmup_daily_increase", "Warm-up: more each day"),
    since=("warmup_started_on", "Warm-up: first day"),
)


def mailbox_limit_raises(
    before: Mailbox,
    after: Mailbox,
    *,
    joining: Iterable[Campaign] = (),
    pool_after: dict[int, list[Mailbox]] | None = None,
) -> tuple[list[Campaign], list[LimitRaise]]:
    """The running or paused campaigns the stored mailbox `before` sends for, or whose pool it
    is joining in the same save (`joining`), and each change to `after` that lets them send
    more, which the console and `campaign load` confirm as a campaign's own raise:

    - a higher daily limit or a loosened warm-up (`ventures.console.ramp_raises`);
    - a shorter minimum gap between two sends (the jitter only adds to it, so it never
      shortens the minimum);
    - re-activating it (a paused mailbox, perhaps paused by the engine for bouncing);
    - joining a campaign's pool that has mailboxes, when the pool's sends allowed today
      (its active mailboxes' effective daily limits) grow: by the joining mailbox's own, or,
      when the same change sets the whole pool (`pool_after[campaign.pk]`, the mailboxes as
      edited: `campaign load`), from the stored pool's to the new one's. A swap of one mailbox
      for another that allows as much is no raise. Joining an empty pool only adds a cap (the
      campaign sent from its own sender).

    Nothing raises for a mailbox no running or paused campaign sends from or joins; a new
    mailbox raises only by joining."""
    stored = (
        list(Campaign.objects.filter(mailboxes=before, status__in=RAISE_CONFIRM_STATUSES))
        if before.pk is not None
        else []
    )
    joined = [
        c for c in joining if c.status in RAISE_CONFIRM_STATUSES and c not in stored
    ]  # fmt: skip
    serving = sorted([*stored, *joined], key=lambda c: c.slug)
    if not serving:
        return [], []
    raises = [] if before.pk is None else _own_raises(before, after)
    day = timezone.now().astimezone(venture_tz(after.venture)).date()
    adds = after.effective_daily_limit(day) if after.is_active else 0
    for campaign in joined:
        pool = [b for b in campaign.mailboxes.all() if b.pk != before.pk]
        if not pool:
            continue
        today = _pool_allows(pool, day)
        whole = (pool_after or {}).get(campaign.pk)
        then = _pool_allows(whole, day) if whole is not None else today + adds
        if then > today:
            label = f"Sends allowed today from the mailboxes of {campaign.name}"
            raises.append(LimitRaise("campaigns", label, today, then))
    return serving, raises


def _pool_allows(pool: Iterable[Mailbox], day: dt.date) -> int:
    """The sends a pool's active mailboxes allow on `day`, each after its warm-up."""
    return sum(box.effective_daily_limit(day) for box in pool if box.is_active)


def _own_raises(before: Mailbox, after: Mailbox) -> list[LimitRaise]:
    raises = []
    if after.is_active and not before.is_active:
        raises.append(LimitRaise("is_active", "Sending", False, True))
    raises += ramp_raises(before, after, MAILBOX_RAMP)
    if after.min_gap_seconds < before.min_gap_seconds:
        label = "Minimum gap between sends (seconds)"
        raises.append(
            LimitRaise("min_gap_seconds", label, before.min_gap_seconds, after.min_gap_seconds)
        )
    return raises


def mailbox_auto_pause(mailbox: Mailbox) -> AutoPause | None:
    """The engine's pause this mailbox is still under (`mailboxes_auto_paused`), or None (it
    is active, or a person switched it off)."""
    campaign_ids = list(mailbox.campaigns.values_list("pk", flat=True))
    found = [p.pause for p in mailboxes_auto_paused(campaign_ids) if p.mailbox.pk == mailbox.pk]
    return found[0] if found else None


def campaigns_sent(
    campaigns: list[Campaign], *, days: int = 1, now: dt.datetime | None = None
) -> dict[int, int]:
    """Emails counted against each campaign's own daily cap over its last `days` days, today
    included, each in the campaign's time zone as the tick counts them (the `SendLedger`'s
    campaign rows: a slot given back by a refusal is not a send). `days=1` is "sent today";
    one query for the whole list."""
    now = now or timezone.now()
    keys_by_day: dict[dt.date, list[str]] = {}
    for campaign in campaigns:
        today = now.astimezone(campaign.tzinfo).date()
        for back in range(days):
            keys_by_day.setdefault(today - dt.timedelta(days=back), []).append(str(campaign.pk))
    if not keys_by_day:
        return {}
    wanted = Q()
    for day, keys in keys_by_day.items():
        wanted |= Q(day=day, key__in=keys)
    rows = (
        SendLedger.objects.filter(wanted, scope="campaign")
        .order_by()
        .values_list("key")
        .annotate(n=Sum("count"))
    )
    return {int(key): n for key, n in rows}


def venture_tz(venture: Venture) -> dt.tzinfo:
    """The day a venture's and its mailboxes' caps count in (as `dispatch.caps_of` reads it)."""
    try:
        return zoneinfo.ZoneInfo(venture.timezone or settings.TIME_ZONE)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return zoneinfo.ZoneInfo(settings.TIME_ZONE)


@dataclass(frozen=True)
class PausedMailbox:
    mailbox: Mailbox
    pause: AutoPause  # its latest: the campaign it tripped in, the reason with the figures


def mailboxes_auto_paused(campaign_ids: list[int]) -> list[PausedMailbox]:
    """The inactive mailboxes of these campaigns' pools that the engine paused, oldest pause
    first: those whose last switch-off in the audit trail is `mailbox.auto_pause` (bounce,
    complaint or error rate; `outreach.health`), each with its latest AutoPause. One switched
    off by a person since, or only ever by a person, is a choice and is left out. At most
    three queries (the audit trail's on `audit_entity_idx`), none when no mailbox is off."""
    boxes = {
        box.pk: box
        for box in Mailbox.objects.filter(campaigns__in=campaign_ids, is_active=False)
        .order_by()
        .distinct()
    }
    switched_off = (
        AuditEvent.objects.filter(
            entity_type=Mailbox._meta.label_lower, entity_id__in=[str(pk) for pk in boxes]
        )
        .filter(Q(action=MAILBOX_AUTO_PAUSE) | Q(after__is_active=False))
        .order_by("entity_id", "-created_at", "-id")
        .only("entity_id", "action")
    )
    last: dict[int, str] = {}
    for event in switched_off:
        last.setdefault(int(event.entity_id), event.action)
    paused = [pk for pk, action in last.items() if action == MAILBOX_AUTO_PAUSE]
    latest: dict[int, AutoPause] = {}
    pauses = AutoPause.objects.filter(mailbox_id__in=paused).select_related("campaign")
    for pause in pauses.order_by("mailbox_id", "-paused_at", "-id"):
        latest.setdefault(pause.mailbox_id, pause)
    found = [PausedMailbox(boxes[pk], pause) for pk, pause in latest.items()]
    return sorted(found, key=lambda p: (p.pause.paused_at, p.mailbox.pk))


def sequences_with_history(sequences: QuerySet[Sequence]) -> QuerySet[Sequence]:
    """Those of `sequences` with enrolled leads or messages: deleting one would take its leads'
    history with it. One probe of an index per sequence, however many messages."""
    enrolled = Enrollment.objects.filter(sequence_id=OuterRef("pk"))
    messages = OutboundMessage.objects.filter(step__sequence_id=OuterRef("pk"))
    return sequences.filter(Exists(enrolled) | Exists(messages)).select_related("campaign")


def mailboxes_with_history(mailboxes: QuerySet[Mailbox]) -> QuerySet[Mailbox]:
    """Those of `mailboxes` that leads were given or that sent or will send messages."""
    enrolled = Enrollment.objects.filter(mailbox_id=OuterRef("pk"))
    messages = OutboundMessage.objects.filter(mailbox_id=OuterRef("pk"))
    return mailboxes.filter(Exists(enrolled) | Exists(messages))


def campaign_delete_guard(campaign: Campaign) -> str | None:
    """For the console (`ventures.console.register_delete_guard`): a paused campaign with
    messages in its outbox keeps them; deleting it would take its sending history with it."""
    if campaign.status != CampaignStatus.PAUSED:
        return None
    if not OutboundMessage.objects.filter(campaign=campaign).exists():
        return None
    return (
        f"Campaign '{campaign.name}' is paused with messages in its outbox and cannot be "
        "deleted: stop it instead, which keeps its history for its report."
    )


def segment_delete_refusals(segments: QuerySet[IcpSegment]) -> list[str]:
    """For the console's guarded delete of ICP segments (`register_delete_refusals`): a
    segment stays while a running or paused campaign routes leads by it (its rules would go
    with it, and new leads would fall to the default sequence unannounced), or while sent or
    planned messages were composed for it (the narrative memory counts them under it). Two
    queries for the selection."""
    wanted = segments.order_by().values("pk")
    routing: dict[int, list[str]] = {}
    for segment_id, status, name in (
        RoutingRule.objects.filter(segment__in=wanted, campaign__status__in=RAISE_CONFIRM_STATUSES)
        .order_by("campaign__name")
        .values_list("segment_id", "campaign__status", "campaign__name")
        .distinct()
    ):
        routing.setdefault(segment_id, []).append(f"{CampaignStatus(status).label.lower()} "
                                                   f"campaign '{name}'")  # fmt: skip
    messages = dict(
        OutboundMessage.objects.filter(segment__in=wanted)
        .values("segment_id")
        .annotate(n=Count("id"))
        .order_by()
        .values_list("segment_id", "n")
    )
    names = dict(IcpSegment.objects.filter(pk__in=[*routing, *messages]).values_list("pk", "name"))
    refused = [
        f"ICP segment '{names[pk]}' routes the leads of {' and '.join(where)} and cannot be "
        "deleted: its routing rules would go with it and new leads would fall to the default "
        "sequence. Change or remove those rules first."
        for pk, where in routing.items()
    ]
    refused += [
        f"ICP segment '{names[pk]}' has {n:,} message{'s' if n != 1 else ''} composed for it and "
        "cannot be deleted: the narrative memory counts their replies under it."
        for pk, n in messages.items()
        if pk not in routing
    ]
    return refused


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


@dataclass
class ArmStanding:
    """One arm of a segment in the console: its figures, rate and chance of being best."""

    stat: NarrativeStat
    p_best: float
    winner: bool = False

    @property
    def label(self) -> str:
        return self.stat.arm_label

    @property
    def rate(self) -> float:
        return self.stat.positive_replies / self.stat.sends if self.stat.sends else 0.0

    @property
    def rate_text(self) -> str:
        return rate_text(self.stat.positive_replies, self.stat.sends)

    @property
    def p_best_text(self) -> str:
        """A percentage; Monte Carlo never rules a variant out for sure, so not "0%"."""
        if self.p_best > 0.995:
            return ">99%"
        return "<1%" if self.p_best < 0.005 else f"{self.p_best:.0%}"


def rate_text(positives: int, sends: int) -> str:
    """A positive-reply rate with its 95% interval, e.g. "4.1% (2.3 to 6.9%)" with a dash."""
    if not sends:
        return "no sends yet"
    low, high = rate_interval(positives, sends)
    return f"{positives / sends:.1%} ({low:.1%}–{high:.1%})"


@dataclass
class SegmentStanding:
    """The arms of one venture and ICP segment, best first, and how sure the leader is."""

    venture: Venture
    segment: IcpSegment | None
    arms: list[ArmStanding] = field(default_factory=list)

    @property
    def segment_name(self) -> str:
        return self.segment.name if self.segment is not None else "No segment"

    @property
    def positives(self) -> int:
        return sum(a.stat.positive_replies for a in self.arms)

    @property
    def sends(self) -> int:
        return sum(a.stat.sends for a in self.arms)

    @property
    def leader(self) -> ArmStanding | None:
        return self.arms[0] if self.arms and self.positives else None

    @property
    def verdict(self) -> str:
        """ "cost of reporting · A leads: clear winner (97% chance it is the best)"."""
        leader = self.leader
        if leader is None:
            return f"Too early to tell: no positive replies yet ({self.sends} sent)."
        words = how_sure(leader.p_best, positives=self.positives)
        return f"{leader.label} leads: {words} ({leader.p_best_text} chance it is the best)."


def narrative_standings(stats: QuerySet[NarrativeStat]) -> list[SegmentStanding]:
    """The arms of `stats` (whole segments: filter by venture or segment only) grouped by
    venture and ICP segment, each group best first by its chance of being the best
    (`outreach.narrative.probability_best`); the leader is marked once a positive reply is in."""
    groups: dict[tuple, SegmentStanding] = {}
    rows = stats.select_related("venture", "segment").order_by(
        "venture__name", "venture_id", "segment__priority", "segment__name", "segment_id",
        "narrative_angle", "variant_label",
    )  # fmt: skip
    for stat in rows:
        key = (stat.venture_id, stat.segment_id)
        if key not in groups:
            groups[key] = SegmentStanding(venture=stat.venture, segment=stat.segment)
        groups[key].arms.append(ArmStanding(stat=stat, p_best=0.0))
    for group in groups.values():
        chances = probability_best([(a.stat.sends, a.stat.positive_replies) for a in group.arms])
        for arm, chance in zip(group.arms, chances, strict=True):
            arm.p_best = chance
        group.arms.sort(key=lambda a: (-a.p_best, -a.rate, a.label))
        if group.leader is not None:
            group.leader.winner = True
    # Segments without one (None) last in their venture.
    return sorted(groups.values(), key=lambda g: (g.venture.name, g.venture.pk, g.segment is None))


def lead_outreach_timeline(lead, limit: int) -> list:
    """The lead's part of its timeline that the outbox knows (`leads.timeline`): its
    enrollment (sequence, why it was routed there, how it ended), each message (step, state,
    when, why) and each feedback event (kind, when, what it did). Three queries."""
    from leads.timeline import TimelineEntry

    entries = []
    enrollment = Enrollment.objects.filter(lead=lead).select_related("sequence", "mailbox").first()
    if enrollment is not None:
        via = f" from {enrollment.mailbox}" if enrollment.mailbox_id else ""
        entries.append(
            TimelineEntry(
                enrollment.created_at,
                "Enrolled",
                f"In sequence {enrollment.sequence}{via}: {enrollment.route_reason}.",
            )
        )
        if enrollment.finished_at:
            why = f": {enrollment.stop_reason}" if enrollment.stop_reason else ""
            entries.append(
                TimelineEntry(
                    enrollment.finished_at,
                    enrollment.get_state_display(),
                    f"Sequence {enrollment.sequence}{why}.",
                )
            )
    messages = (
        OutboundMessage.objects.filter(lead=lead)
        .select_related("step")
        .only("state", "kind", "due_at", "sent_at", "updated_at", "reason", "step__position")
        .order_by("-due_at", "-id")[:limit][::-1]
    )
    for message in messages:
        entries.append(_message_entry(message, TimelineEntry))
    events = FeedbackEvent.objects.filter(lead=lead).order_by("-received_at", "-id")[:limit][::-1]
    for event in events:
        what = f": {event.effect}" if event.effect else ""
        entries.append(
            TimelineEntry(
                event.occurred_at or event.received_at,
                event.get_kind_display(),
                f"Reported by {event.source}{what}.",
                reverse("admin:outreach_feedbackevent_change", args=[event.pk]),
            )
        )
    return entries


def _message_entry(message: OutboundMessage, entry):
    step = f"Step {message.step.position} ({message.get_kind_display().lower()})"
    if message.state == MessageState.SENT:
        at, text = message.sent_at, f"{step}: sent."
    elif message.state in DUE_STATES:
        at, text = message.due_at, f"{step}: {message.get_state_display().lower()} for then."
    else:
        at, text = message.updated_at, f"{step}: {message.get_state_display().lower()}."
    if message.reason:
        text = text[:-1] + f" ({message.reason})."
    url = reverse("admin:outreach_outboundmessage_change", args=[message.pk])
    return entry(at, f"Message {message.get_state_display().lower()}", text, url)
