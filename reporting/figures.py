"""Every figure of a campaign report, read from the database in a fixed number of queries
(`campaign_report`), whatever the campaign's size: the per-lead funnel and its attribution in
one grouped query, the messages from their tallies (`outreach.tally`), the events by step, by day and by narrative arm in one
each, and small reads of the campaign's settings.

The definitions are the per-lead outcomes CSV's (`reporting.exports`), so a report and its CSV
always agree:
- A lead's events are the feedback events matched to it (`FeedbackEvent.lead`); a lead was
  delivered, opened, clicked, replied, auto-replied, bounced or complained when it has at least
  one such event, and replied positively when one of its replies reads positive. The funnel
  reads these, and the emails sent to each lead, from the leads' kept facts
  (`outreach.facts`), which equal them (`manage.py report facts` checks).
- The messages by step, state and reason, and the emails sent by mailbox, narrative arm and
  day, are the messages' tallies, which equal the messages (the same command checks).
- Unsubscribed: the lead's status says so, or an `Unsubscribe` row names the lead.
- Kept out: suppressed or do-not-contact (status suppressed or consent DNC) and never sent an
  email; erased (status erased, not DNC) and never sent an email. Eligible: the rest, so a
  lead suppressed after its first email (a complaint) still counts as eligible and sent.
- Rates of the funnel and the attribution are per lead sent to (a lead with at least one email
  sent); step and narrative rates are per email sent, as narrative memory counts them.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, Q
from django.db.models.functions import Coalesce, TruncDate
from django.utils import timezone

from leads.models import ImportBatch, ImportIssue, Lead, Unsubscribe
from outreach.facts import FACT_BITS, FACT_FLAGS
from outreach.models import (
    AutoPause,
    Enrollment,
    FeedbackEvent,
    FeedbackKind,
    LeadFacts,
    Mailbox,
    MessageState,
    Sequence,
    SequenceStep,
    StepKind,
    arm_label,
)
from outreach.narrative import how_sure, probability_best, rate_interval
from outreach.tally import sent_by_day as tally_sent_by_day
from outreach.tally import tally
from reporting.exports import pg_settings
from templating.models import MessageTemplateVersion
from ventures.models import AuditEvent, Campaign, IcpSegment

# The lead funnel, in the report's order: (key, label).
FUNNEL = (
    ("imported", "Imported"),
    ("enrolled", "Enrolled in a sequence"),
    ("suppressed_dnc", "Kept out: suppressed or do-not-contact"),
    ("erased", "Kept out: erased on request"),
    ("eligible", "Eligible"),
    ("sent", "Sent at least one email"),
    ("delivered", "Delivered"),
    ("opened", "Opened (unreliable)"),
    ("clicked", "Clicked"),
    ("replied", "Replied"),
    ("positive", "Replied positively"),
    ("autoreplied", "Auto-replied"),
    ("bounced", "Bounced"),
    ("complained", "Complained (spam)"),
    ("unsubscribed", "Unsubscribed"),
)
# Attribution: the lead fields a funnel is broken down by, with their labels.
DIMENSIONS = (
    ("source_channel", "Source channel"),
    ("source_list", "Source list"),
    ("source_batch", "Import batch"),
    ("utm_campaign", "utm_campaign"),
    ("utm_content", "utm_content"),
    ("segment", "ICP segment"),
)
# An attribution table shows every stage of the funnel.
ATTRIBUTION_COLUMNS = tuple(key for key, _label in FUNNEL)
NOT_SET = "(not set)"


@dataclass
class Breakdown:
    """One row of an attribution table: the leads whose `dimension` is `value`."""

    value: str
    counts: dict[str, int]

    @property
    def reply_rate(self) -> float | None:
        return _rate(self.counts["replied"], self.counts["sent"])

    @property
    def positive_rate(self) -> float | None:
        return _rate(self.counts["positive"], self.counts["sent"])

    @property
    def bounce_rate(self) -> float | None:
        return _rate(self.counts["bounced"], self.counts["sent"])


@dataclass
class StepFigures:
    sequence: str
    position: int
    kind: str
    label: str
    scheduled: int = 0  # waiting: scheduled or deferred
    sent: int = 0  # emails sent, or tasks done
    skipped: int = 0
    blocked: int = 0
    failed: int = 0
    unknown: int = 0
    replied: int = 0
    positive: int = 0
    bounced: int = 0

    @property
    def reply_rate(self) -> float | None:
        return _rate(self.replied, self.sent) if self.kind == StepKind.EMAIL else None


@dataclass
class Arm:
    """A narrative angle and variant in one segment, as this campaign's emails did."""

    segment: str
    angle: str
    variant: str
    sends: int
    replies: int
    positive: int
    objections: int
    interval: tuple[float, float] = (0.0, 1.0)
    p_best: float = 0.0

    @property
    def label(self) -> str:
        return arm_label(self.angle, self.variant)

    @property
    def positive_rate(self) -> float | None:
        return _rate(self.positive, self.sends)

    @property
    def reply_rate(self) -> float | None:
        return _rate(self.replies, self.sends)


@dataclass
class SegmentArms:
    segment: str
    arms: list[Arm]
    verdict: str


@dataclass
class Day:
    day: dt.date
    sent: int = 0
    replied: int = 0
    bounced: int = 0
    unsubscribed: int = 0


@dataclass
class Roi:
    positive: int
    value: Decimal
    valued_by_lead: int  # positive leads valued by their own estimate
    value_per_positive_reply: Decimal
    fixed_cost: Decimal
    cost_per_email: Decimal
    emails_sent: int
    cost: Decimal

    @property
    def multiple(self) -> Decimal | None:
        """Value over cost (None when nothing was spent)."""
        return (self.value / self.cost).quantize(Decimal("0.01")) if self.cost else None

    @property
    def cost_per_positive(self) -> Decimal | None:
        return (self.cost / self.positive).quantize(Decimal("0.01")) if self.positive else None


@dataclass
class Report:
    campaign: Campaign
    generated_at: dt.datetime
    summary: dict[str, Any]
    status_history: list[dict[str, Any]]
    sequences: list[dict[str, Any]]
    mailboxes: list[dict[str, Any]]
    funnel: dict[str, int]
    messages: dict[str, int]
    blocked_by_reason: list[tuple[str, int]]
    unsubscribe_reasons: list[tuple[str, int]]
    import_issues: dict[str, int]
    auto_pauses: list[dict[str, Any]]
    attribution: dict[str, list[Breakdown]]
    narratives: list[SegmentArms]
    objections: list[tuple[str, int]]
    steps: list[StepFigures]
    timeline: list[Day]
    roi: Roi
    finished_without_reply: int
    actions: list[Any] = field(default_factory=list)
    anomalies: list[Any] = field(default_factory=list)
    verdicts: dict[str, list[str]] = field(default_factory=dict)

    def rate(self, key: str) -> float | None:
        """A funnel stage per lead sent to."""
        return _rate(self.funnel[key], self.funnel["sent"])


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def campaign_report(campaign: Campaign, *, now: dt.datetime | None = None) -> Report:
    """Every figure of the campaign's report, as the database holds them now (one
    transaction: one view of it on SQLite; on PostgreSQL each query's own, unless the caller
    holds a snapshot, as the bundle does)."""

    now = now or timezone.now()
    with transaction.atomic(), pg_settings(REPORT_PG_SETTINGS):
        return _campaign_report(campaign, now)


# For the report's reads (one transaction): the leads' hash joins in memory, not spilled to
# disk at the default 4 MB; no JIT compiling. The leads' grouped query is the one large read
# left, and PostgreSQL runs it with two workers sharing its hash tables (Parallel Hash):
# 0.56-0.67 s against 0.86-0.96 s alone on 250,000 leads at load 5; the whole report 1.09 s
# against 1.19 s at load 3 (`bench/report.py --parallel 0,2`, 2 cores).
REPORT_PG_SETTINGS = {"work_mem": "64MB", "jit": "off", "max_parallel_workers_per_gather": "2"}


def _campaign_report(campaign: Campaign, now: dt.datetime) -> Report:
    from reporting.intelligence import anomalies, next_best_actions, verdicts

    campaign = Campaign.objects.select_related("venture").get(pk=campaign.pk)
    segments = dict(
        IcpSegment.objects.filter(venture_id=campaign.venture_id).values_list("pk", "name")
    )
    groups = _lead_groups(campaign)
    funnel, extras = _sum_counts(groups)
    messages, blocked, steps = _messages(campaign)
    report = Report(
        campaign=campaign,
        generated_at=now,
        summary=_summary(campaign),
        status_history=_status_history(campaign),
        sequences=[],
        mailboxes=_mailboxes(campaign, messages.pop("sent_by_mailbox")),
        funnel=funnel,
        messages=messages,
        blocked_by_reason=blocked,
        unsubscribe_reasons=_unsubscribe_reasons(campaign, funnel["unsubscribed"]),
        import_issues=_import_issues(campaign),
        auto_pauses=_auto_pauses(campaign),
        attribution=_attribution(campaign, groups, segments),
        narratives=_narratives(campaign, segments, messages.pop("sends_by_arm")),
        objections=_objections(campaign),
        steps=steps,
        timeline=_timeline(campaign, messages.pop("sent_by_day")),
        roi=_roi(campaign, funnel["positive"], extras, messages["emails_sent"]),
        finished_without_reply=extras["finished_without_reply"],
    )
    report.sequences = _sequences(campaign, steps)
    report.actions = next_best_actions(report)
    report.anomalies = anomalies(report)
    report.verdicts = verdicts(report)
    return report


# --- The leads: funnel and attribution in one grouped query -------------------------------------

_GROUP_KEYS = (
    "source_channel",
    "source_list",
    "source_batch",
    "utm_campaign",
    "utm_content",
    "segment",
)
_SUM_KEYS = (
    "imported", "suppressed_dnc", "erased", "enrolled", "sent", "emails_sent",
    *(flag for flag, _kind in FACT_FLAGS), "positive", "unsubscribed",
    "finished_without_reply", "valued", "value",
)  # fmt: skip


def _lead_groups(campaign: Campaign) -> list[tuple[tuple, dict[str, Any]]]:
    """The leads of the campaign grouped by every attribution field at once, with the funnel
    counts of each group: one scan of the leads joined to their enrolments and their kept
    facts (`outreach.facts`: emails sent and the events' kinds as bits, one row per lead),
    instead of aggregating every message and event of the campaign at each report."""
    q = connection.ops.quote_name
    lead, facts = Lead._meta.db_table, LeadFacts._meta.db_table
    enrol, unsub = Enrollment._meta.db_table, Unsubscribe._meta.db_table

    def has(flag: str) -> str:
        return f"(COALESCE(a.event_flags, 0) & {FACT_BITS[flag]}) <> 0"

    sums = ", ".join(f"SUM(CASE WHEN {has(flag)} THEN 1 ELSE 0 END)" for flag, _kind in FACT_FLAGS)
    sql = f"""
        SELECT l.source_channel, l.source_list, l.source_batch_id, l.utm_campaign, l.utm_content,
               l.segment_id,
               COUNT(*),
               SUM(CASE WHEN (l.status = 'suppressed' OR l.consent_status = 'dnc')
                         AND COALESCE(a.emails_sent, 0) = 0 THEN 1 ELSE 0 END),
               SUM(CASE WHEN l.status = 'erased' AND l.consent_status <> 'dnc'
                         AND COALESCE(a.emails_sent, 0) = 0 THEN 1 ELSE 0 END),
               SUM(CASE WHEN en.lead_id IS NOT NULL THEN 1 ELSE 0 END),
               SUM(CASE WHEN a.emails_sent > 0 THEN 1 ELSE 0 END),
               COALESCE(SUM(a.emails_sent), 0),
               {sums},
               SUM(CASE WHEN {has("positive")} THEN 1 ELSE 0 END),
               SUM(CASE WHEN l.status = 'unsubscribed' OR u.lead_id IS NOT NULL THEN 1 ELSE 0 END),
               SUM(CASE WHEN en.state = 'finished' AND NOT {has("replied")} THEN 1 ELSE 0 END),
               SUM(CASE WHEN {has("positive")} AND l.value_estimate IS NOT NULL THEN 1 ELSE 0 END),
               SUM(CASE WHEN {has("positive")} THEN l.value_estimate END)
        FROM {q(lead)} l
        LEFT JOIN {q(enrol)} en ON en.lead_id = l.id
        LEFT JOIN {q(facts)} a ON a.lead_id = l.id
        LEFT JOIN (
            SELECT DISTINCT ul.id AS lead_id FROM {q(unsub)} us JOIN {q(lead)} ul ON ul.id = us.lead_id
            WHERE ul.campaign_id = %s
        ) u ON u.lead_id = l.id
        WHERE l.campaign_id = %s
        GROUP BY l.source_channel, l.source_list, l.source_batch_id, l.utm_campaign,
                 l.utm_content, l.segment_id
    """  # noqa: S608 (table names from the models; values are parameters)
    with connection.cursor() as cursor:
        cursor.execute(sql, [campaign.pk] * 2)
        rows = cursor.fetchall()
    groups = []
    for row in rows:
        key, values = row[: len(_GROUP_KEYS)], row[len(_GROUP_KEYS) :]
        counts = {
            name: int(value or 0) for name, value in zip(_SUM_KEYS[:-1], values[:-1], strict=True)
        }
        counts["value"] = Decimal(str(values[-1])) if values[-1] is not None else Decimal("0")
        groups.append((key, counts))
    return groups


def _sum_counts(groups: list[tuple[tuple, dict[str, Any]]]) -> tuple[dict[str, int], dict]:
    """The funnel (in FUNNEL's order) and the other totals of the groups."""
    total: dict[str, Any] = dict.fromkeys(_SUM_KEYS, 0)
    total["value"] = Decimal("0")
    for _key, counts in groups:
        for name, value in counts.items():
            total[name] += value
    total["eligible"] = total["imported"] - total["suppressed_dnc"] - total["erased"]
    funnel = {key: total[key] for key, _label in FUNNEL}
    extras = {key: total[key] for key in ("finished_without_reply", "value", "valued")}
    return funnel, extras


def _attribution(
    campaign: Campaign, groups: list[tuple[tuple, dict[str, Any]]], segments: dict[int, str]
) -> dict[str, list[Breakdown]]:
    batches = {
        pk: f"#{pk} {name or 'unnamed file'} ({created:%Y-%m-%d})"
        for pk, name, created in ImportBatch.objects.filter(campaign=campaign).values_list(
            "pk", "file_name", "created_at"
        )
    }
    tables: dict[str, list[Breakdown]] = {}
    for index, (dimension, _label) in enumerate(DIMENSIONS):
        merged: dict[str, dict[str, int]] = {}
        for key, counts in groups:
            raw = key[index]
            if dimension == "source_batch":
                value = batches.get(raw, f"#{raw}") if raw is not None else NOT_SET
            elif dimension == "segment":
                value = segments.get(raw, f"#{raw}") if raw is not None else "(no segment)"
            else:
                value = raw or NOT_SET
            row = merged.setdefault(value, dict.fromkeys(ATTRIBUTION_COLUMNS, 0))
            for column in ATTRIBUTION_COLUMNS:
                if column != "eligible":
                    row[column] += counts[column]
            row["eligible"] = row["imported"] - row["suppressed_dnc"] - row["erased"]
        tables[dimension] = sorted(
            (Breakdown(value, counts) for value, counts in merged.items()),
            key=lambda b: (
                -b.counts["positive"],
                -b.counts["replied"],
                -b.counts["imported"],
                b.value,
            ),
        )
    return tables


# --- Messages and steps -------------------------------------------------------------------------


_KIND_SHORT = {
    StepKind.EMAIL: "email",
    StepKind.LINKEDIN_CONNECT: "LinkedIn note",
    StepKind.LINKEDIN_MESSAGE: "LinkedIn message",
    StepKind.CALL: "call",
}
# Where each message state counts: (the campaign's total, the step's column). A message being
# claimed or handed over by a tick right now counts as in flight, and as waiting in its step.
_STATE_COUNTS = {
    MessageState.SENT: ("emails_sent", "sent"),
    MessageState.SCHEDULED: ("scheduled", "scheduled"),
    MessageState.DEFERRED: ("scheduled", "scheduled"),
    MessageState.BLOCKED: ("blocked", "blocked"),
    MessageState.FAILED: ("failed", "failed"),
    MessageState.UNKNOWN: ("unknown", "unknown"),
    MessageState.TASK_DONE: ("tasks_done", "sent"),
    MessageState.TASK_SKIPPED: ("tasks_skipped", "skipped"),
    MessageState.TASK_OPEN: ("tasks_open", "scheduled"),
}


def _messages(
    campaign: Campaign,
) -> tuple[dict[str, int], list[tuple[str, int]], list[StepFigures]]:
    """Message counts, blocked messages by reason, per-step figures, and the sends by day and by
    mailbox: the messages' tallies (`outreach.tally`) and one query of the replies and bounces."""
    steps = {
        s.pk: StepFigures(
            sequence=s.sequence.slug,
            position=s.position,
            kind=s.kind,
            label=f"{s.sequence.slug} #{s.position} {_KIND_SHORT.get(s.kind, s.kind)}",
        )
        for s in SequenceStep.objects.filter(sequence__campaign=campaign)
        .select_related("sequence")
        .order_by("sequence__slug", "position")
    }
    totals = dict.fromkeys(
        ("messages", "emails_sent", "scheduled", "blocked", "failed", "unknown",
         "tasks_done", "tasks_skipped", "tasks_open", "in_flight"), 0,
    )  # fmt: skip
    blocked: dict[str, int] = defaultdict(int)
    sent_by_mailbox: dict[int | None, int] = defaultdict(int)
    sends_by_arm: dict[tuple, int] = defaultdict(int)  # (segment, template version)
    # The messages' tally (`outreach.tally`, kept by triggers): the states, the reasons, the
    # mailboxes' sends and the narrative arms' sends, a few hundred rows whatever the size.
    for step_id, state, reason_code, mailbox_id, segment_id, version_id, n in tally(campaign.pk):
        total, column = _STATE_COUNTS.get(state, ("in_flight", "scheduled"))
        totals["messages"] += n
        totals[total] += n
        setattr(steps[step_id], column, getattr(steps[step_id], column) + n)
        if state == MessageState.BLOCKED:
            blocked[reason_code or "unspecified"] += n
        elif state == MessageState.SENT:
            sent_by_mailbox[mailbox_id] += n
            sends_by_arm[(segment_id, version_id)] += n
    sent_by_day = tally_sent_by_day(campaign.pk, campaign.tzinfo)
    # Replies and bounces by the step of the email they answer: few events, read by kind.
    events = (
        FeedbackEvent.objects.filter(
            kind__in=[FeedbackKind.REPLIED, FeedbackKind.BOUNCED], message__campaign=campaign
        )
        .order_by()
        .values_list("message__step_id")
        .annotate(
            replied=Count("message_id", filter=Q(kind=FeedbackKind.REPLIED), distinct=True),
            positive=Count(
                "message_id",
                filter=Q(kind=FeedbackKind.REPLIED, sentiment="positive"),
                distinct=True,
            ),
            bounced=Count("message_id", filter=Q(kind=FeedbackKind.BOUNCED), distinct=True),
        )
    )
    for step_id, replied, positive, bounced in events:
        step = steps[step_id]
        step.replied, step.positive, step.bounced = replied, positive, bounced
    totals["sent_by_day"], totals["sent_by_mailbox"] = dict(sent_by_day), dict(sent_by_mailbox)
    totals["sends_by_arm"] = dict(sends_by_arm)
    return totals, sorted(blocked.items(), key=lambda kv: (-kv[1], kv[0])), list(steps.values())


# --- Narrative performance ----------------------------------------------------------------------


def _narratives(
    campaign: Campaign, segments: dict[int, str], sends_by_arm: dict[tuple, int]
) -> list[SegmentArms]:
    """Per segment, each narrative angle and variant this campaign's emails used: sends, replies,
    positive replies and objections (emails replied to), the 95% interval of the positive
    rate and the probability that the arm is the segment's best. Templates with neither an
    angle nor a variant label (a plain follow-up) are no narrative and are left out.

    The sends per (segment, template version) come from the messages' scan (`_messages`);
    here only the replies are read (few, by kind), and the versions' angles and labels."""
    versions = {
        pk: (angle, variant)
        for pk, angle, variant in MessageTemplateVersion.objects.filter(
            pk__in={version for _segment, version in sends_by_arm if version is not None}
        ).values_list("pk", "narrative_angle", "variant_label")
        if angle or variant
    }
    replies: dict[int, list] = {}  # message -> [segment, version, positive, objection]
    rows = FeedbackEvent.objects.filter(
        kind=FeedbackKind.REPLIED,
        message__campaign=campaign,
        message__state=MessageState.SENT,
        message__kind=StepKind.EMAIL,
    ).values_list(
        "message_id",
        "message__segment_id",
        "message__template_version_id",
        "sentiment",
        "objection",
    )
    for message_id, segment_id, version_id, sentiment, objection in rows:
        reply = replies.setdefault(message_id, [segment_id, version_id, False, False])
        reply[2] |= sentiment == "positive"
        reply[3] |= bool(objection)
    figures: dict[tuple, list[int]] = {
        (segment_id, versions[version_id]): [0, 0, 0, 0]
        for segment_id, version_id in sends_by_arm
        if version_id in versions
    }
    for (segment_id, version_id), n in sends_by_arm.items():
        if version_id in versions:
            figures[(segment_id, versions[version_id])][0] += n
    for segment_id, version_id, positive, objection in replies.values():
        if version_id in versions:
            row = figures[(segment_id, versions[version_id])]
            row[1] += 1
            row[2] += positive
            row[3] += objection
    by_segment: dict[str, list[Arm]] = defaultdict(list)
    for (segment_id, (angle, variant)), (sends, replied, positive, objections) in figures.items():
        name = segments.get(segment_id, f"#{segment_id}") if segment_id else "(no segment)"
        by_segment[name].append(Arm(name, angle, variant, sends, replied, positive, objections))
    out = []
    for name in sorted(by_segment):
        arms = sorted(by_segment[name], key=lambda a: (a.angle, a.variant))
        chances = probability_best([(a.sends, a.positive) for a in arms])
        for arm, chance in zip(arms, chances, strict=True):
            arm.interval = rate_interval(arm.positive, arm.sends)
            arm.p_best = chance
        best = max(arms, key=lambda a: a.p_best)
        positives = sum(a.positive for a in arms)
        verdict = (
            "one narrative only: nothing to compare"
            if len(arms) == 1
            else f"{best.label}: {how_sure(best.p_best, positives=positives)}"
        )
        out.append(SegmentArms(name, arms, verdict))
    return out


def _objections(campaign: Campaign) -> list[tuple[str, int]]:
    rows = (
        FeedbackEvent.objects.filter(lead__campaign=campaign, kind=FeedbackKind.REPLIED)
        .exclude(objection="")
        .order_by()
        .values_list("objection")
        .annotate(n=Count("pk"))
    )
    labels = dict(FeedbackEvent._meta.get_field("objection").choices)
    return sorted(((labels.get(o, o), n) for o, n in rows), key=lambda kv: (-kv[1], kv[0]))


# --- Time line ------------------------------------------------------------------------------


def _timeline(campaign: Campaign, sent_by_day: dict[dt.date, int]) -> list[Day]:
    """Sends, replies, bounces and unsubscribes per day in the campaign's time zone, every day
    from the first to the last with any (days without are zeros, so a chart shows the gaps)."""
    tz = campaign.tzinfo
    days: dict[dt.date, Day] = {}
    for day, n in sent_by_day.items():
        days.setdefault(day, Day(day)).sent = n
    kinds = {FeedbackKind.REPLIED: "replied", FeedbackKind.BOUNCED: "bounced"}
    events = (
        FeedbackEvent.objects.filter(lead__campaign=campaign, kind__in=list(kinds))
        .annotate(day=TruncDate(Coalesce("occurred_at", "received_at"), tzinfo=tz))
        .order_by()
        .values_list("day", "kind")
        .annotate(n=Count("pk"))
    )
    for day, kind, n in events:
        setattr(days.setdefault(day, Day(day)), kinds[kind], n)
    # Unsubscribes by when the person asked (a page, a mail client, an ESP report or an
    # operator): each unsubscribed lead's rows, as the unsubscribe table counts them.
    unsubscribes = (
        Unsubscribe.objects.filter(lead__campaign=campaign)
        .annotate(day=TruncDate("created_at", tzinfo=tz))
        .order_by()
        .values_list("day")
        .annotate(n=Count("lead_id", distinct=True))
    )
    for day, n in unsubscribes:
        days.setdefault(day, Day(day)).unsubscribed = n
    if not days:
        return []
    first, last = min(days), max(days)
    return [
        days.get(first + dt.timedelta(d), Day(first + dt.timedelta(d)))
        for d in range((last - first).days + 1)
    ]


# --- The rest: settings, history, imports, ROI ----------------------------------------------------


def _summary(campaign: Campaign) -> dict[str, Any]:
    venture = campaign.venture
    return {
        "venture": venture.name,
        "venture_slug": venture.slug,
        "campaign": campaign.name,
        "slug": campaign.slug,
        "objective": campaign.objective,
        "mode": campaign.mode,
        "status": campaign.get_status_display(),
        "killed": campaign.kill_switch or venture.kill_switch,
        "created_at": campaign.created_at,
        "started_at": campaign.started_at,
        "finished_at": campaign.finished_at,
        "timezone": campaign.timezone,
        "send_days": campaign.send_days,
        "send_window": f"{campaign.send_window_start:%H:%M}-{campaign.send_window_end:%H:%M}",
        "daily_send_limit": campaign.daily_send_limit,
        "warmup": (
            f"from {campaign.warmup_start_limit} a day, +{campaign.warmup_daily_increase} a day"
            if campaign.warmup_start_limit is not None
            else "none"
        ),
        "venture_daily_limit": venture.daily_send_limit,
        "global_daily_limit": settings.AICMO_GLOBAL_DAILY_LIMIT,
        "reply_sla_hours": campaign.reply_sla_hours,
    }


def _status_history(campaign: Campaign) -> list[dict[str, Any]]:
    rows = (
        AuditEvent.objects.filter(
            entity_type=Campaign._meta.label_lower, entity_id=str(campaign.pk)
        )
        .filter(Q(action__startswith="campaign.") | Q(action="create"))
        .order_by("created_at", "pk")
    )
    return [
        {"at": e.created_at, "action": e.action.removeprefix("campaign."), "actor": e.actor,
         "reason": e.reason}
        for e in rows.only("created_at", "action", "actor", "reason")
    ]  # fmt: skip


def _sequences(campaign: Campaign, steps: list[StepFigures]) -> list[dict[str, Any]]:
    enrolled = dict(
        Enrollment.objects.filter(campaign=campaign)
        .order_by()
        .values_list("sequence_id")
        .annotate(n=Count("pk"))
    )
    by_slug: dict[str, list[StepFigures]] = defaultdict(list)
    for step in steps:
        by_slug[step.sequence].append(step)
    return [
        {"slug": s.slug, "name": s.name, "default": s.is_default, "enrolled": enrolled.get(s.pk, 0),
         "steps": by_slug.get(s.slug, [])}
        for s in Sequence.objects.filter(campaign=campaign).order_by("slug")
    ]  # fmt: skip


def _mailboxes(campaign: Campaign, sent: dict[int | None, int]) -> list[dict[str, Any]]:
    return [
        {"name": m.name, "from": m.from_email, "daily_limit": m.daily_limit, "active": m.is_active,
         "sent": sent.get(m.pk, 0)}
        for m in Mailbox.objects.filter(campaigns=campaign).order_by("name")
    ]  # fmt: skip


def _unsubscribe_reasons(campaign: Campaign, unsubscribed: int) -> list[tuple[str, int]]:
    """The reasons the campaign's unsubscribed leads gave (each lead's latest), with those who
    gave none; the counts add up to the funnel's unsubscribed."""
    latest: dict[int, str] = {}
    rows = (
        Unsubscribe.objects.filter(lead__campaign=campaign)
        .order_by("lead_id", "created_at", "pk")
        .values_list("lead_id", "reason")
    )
    for lead_id, reason in rows:
        latest[lead_id] = reason
    labels = dict(Unsubscribe._meta.get_field("reason").choices)
    counts: dict[str, int] = defaultdict(int)
    for reason in latest.values():
        if reason:
            counts[str(labels.get(reason, reason))] += 1
    given = sum(counts.values())
    if unsubscribed - given:
        counts["no reason given"] += unsubscribed - given
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))


def _import_issues(campaign: Campaign) -> dict[str, int]:
    """The rows of the campaign's imports that did not become leads, by why."""
    labels = dict(ImportIssue._meta.get_field("kind").choices)
    rows = (
        ImportIssue.objects.filter(batch__campaign=campaign)
        .order_by()
        .values_list("kind")
        .annotate(n=Count("pk"))
    )
    return {str(labels.get(kind, kind)): n for kind, n in sorted(rows)}


def _auto_pauses(campaign: Campaign) -> list[dict[str, Any]]:
    return [
        {"at": p.paused_at, "what": f"mailbox {p.mailbox.from_email}" if p.mailbox_id else "campaign",
         "reason": p.reason}
        for p in AutoPause.objects.filter(campaign=campaign).select_related("mailbox").order_by("paused_at")
    ]  # fmt: skip


def _roi(campaign: Campaign, positive: int, extras: dict[str, Any], emails_sent: int) -> Roi:
    """Positive replies at their value (a lead's own estimate, else the campaign's value per
    positive reply) against the fixed cost and the cost of the emails sent."""
    valued, per_reply = extras["valued"], campaign.value_per_positive_reply
    value = (extras["value"] + (positive - valued) * per_reply).quantize(Decimal("0.01"))
    cost = (campaign.fixed_cost + campaign.cost_per_email * emails_sent).quantize(Decimal("0.01"))
    return Roi(
        positive=positive,
        value=value,
        valued_by_lead=valued,
        value_per_positive_reply=per_reply,
        fixed_cost=campaign.fixed_cost,
        cost_per_email=campaign.cost_per_email,
        emails_sent=emails_sent,
        cost=cost,
    )
