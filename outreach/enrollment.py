"""Leads into sequences: routing, the mailbox a lead keeps, and planning each next step.

Enrolment is idempotent (one enrolment per lead, one message per (lead, step), both unique in
the database), so the tick runs it on every pass and leads imported into a running campaign
are enrolled on the next one. Routing tries the campaign's rules by priority, then its
default sequence; the reason is stored with the enrolment.
"""

from __future__ import annotations

import datetime as dt
import hashlib

from django.db import IntegrityError, transaction
from django.utils import timezone

from leads.models import Lead, LeadStatus
from outreach.models import (
    Enrollment,
    EnrollmentState,
    Mailbox,
    MessageState,
    OutboundMessage,
    RoutingRule,
    Sequence,
    SequenceStep,
)
from ventures.models import Campaign
from ventures.sql import rows_insert

ENROL_CHUNK = 1_000


def stable_pick(items: list, *, seed: str):
    """The same item for the same seed, spread evenly over many seeds."""
    digest = hashlib.sha256(seed.encode()).digest()
    return items[int.from_bytes(digest[:8], "big") % len(items)]


def step_due(*, after: dt.datetime, step: SequenceStep, campaign: Campaign) -> dt.datetime:
    """When `step` is due, counted from `after`: its delay, in the campaign's send days only
    when the step counts business days (each whole day skips the days without sends)."""
    if not step.business_days or not step.delay_days:
        return after + step.delay
    tz = campaign.tzinfo
    moment = after.astimezone(tz)
    days = step.delay_days
    while days:
        moment += dt.timedelta(days=1)
        if str(moment.isoweekday()) in campaign.send_days:
            days -= 1
    return moment + dt.timedelta(hours=step.delay_hours)


def message_key(lead_id: int, step_id: int) -> str:
    return f"l{lead_id}-s{step_id}"


def plan_step(*, enrollment: Enrollment, step: SequenceStep, after: dt.datetime) -> bool:
    """Create the message of `step` for the enrolled lead; False if it already exists."""
    row = _next_row(enrollment, enrollment.lead, enrollment.campaign, step, after)
    message = OutboundMessage(**dict(zip(NEXT_FIELDS, row, strict=True)))
    try:
        with transaction.atomic():
            message.save(force_insert=True)
    except IntegrityError:
        return False  # planned already (another worker, or a repeated call)
    return True


def plan_next_steps(*, messages: list[OutboundMessage], after: dt.datetime) -> int:
    """For each message just done (sent, or a task done or skipped): its step's next one is
    planned, or the enrolment finishes after the last step. Set-wise: one query for the
    sequences' steps, one insert, one update. Each message's `lead`, `enrollment` and
    `campaign` must be loaded (fresh: the enrolment's state decides). Returns how many next
    messages were planned (a message planned already is skipped by its unique key)."""
    if not messages:
        return 0
    following: dict[int, SequenceStep] = {}
    previous: dict[int, SequenceStep] = {}
    for step in SequenceStep.objects.filter(
        sequence_id__in={m.step.sequence_id for m in messages}
    ).order_by("sequence_id", "-position"):
        # Walking each sequence backwards: the step seen before is the next one.
        if step.sequence_id in previous:
            following[step.pk] = previous[step.sequence_id]
        previous[step.sequence_id] = step
    finished, planned = [], []
    for m in messages:
        step = following.get(m.step_id)
        if step is None:
            finished.append(m.enrollment_id)
        elif m.enrollment.state == EnrollmentState.ACTIVE:
            planned.append(_next_row(m.enrollment, m.lead, m.campaign, step, after))
    if finished:
        Enrollment.objects.filter(pk__in=finished, state=EnrollmentState.ACTIVE).update(
            state=EnrollmentState.FINISHED, finished_at=after
        )
    # A message planned already (another worker, a repeated call) is left as it is.
    return rows_insert(OutboundMessage, planned, fields=NEXT_FIELDS)


# The columns of a planned message; the others start at their defaults (scheduled, ...).
NEXT_FIELDS = [
    "idempotency_key", "enrollment_id", "lead_id", "campaign_id", "venture_id", "step_id",
    "mailbox_id", "kind", "due_at", "recipient", "recipient_domain",
]  # fmt: skip


def _next_row(
    enrollment: Enrollment, lead: Lead, campaign: Campaign, step: SequenceStep, after
) -> tuple:
    """The NEXT_FIELDS of the message of `step` for the enrolled lead."""
    return (
        message_key(lead.pk, step.pk),
        enrollment.pk,
        lead.pk,
        campaign.pk,
        lead.venture_id,
        step.pk,
        enrollment.mailbox_id,
        step.kind,
        step_due(after=after, step=step, campaign=campaign),
        lead.email,
        lead.email.rpartition("@")[2].lower(),
    )


class Router:
    """Routes the leads of one campaign (its rules, default sequence and mailbox pool read
    once)."""

    def __init__(self, campaign: Campaign) -> None:
        self.campaign = campaign
        self.rules = list(
            RoutingRule.objects.filter(campaign=campaign)
            .select_related("sequence", "segment")
            .order_by("priority", "id")
        )
        self.default = Sequence.objects.filter(campaign=campaign, is_default=True).first()
        pool = list(Mailbox.objects.filter(campaigns=campaign).order_by("pk"))
        # One of the pool's active mailboxes; when every one is paused, one of the paused ones:
        # the lead's messages then wait ("mailbox_paused") until it is resumed. A lead of a
        # campaign with a pool never gets no mailbox, which would send from the campaign's own
        # address, outside every mailbox cap, while its mailboxes are paused for bouncing.
        self.mailboxes = [box for box in pool if box.is_active] or pool
        self.first_steps = {
            s.sequence_id: s
            for s in SequenceStep.objects.filter(sequence__campaign=campaign).order_by(
                "sequence_id", "-position"
            )
        }

    def route(self, lead: Lead) -> tuple[Sequence | None, str]:
        for rule in self.rules:
            if rule.matches(lead):
                return rule.sequence, f"matched {rule.describe()}"
        if self.default is not None:
            return self.default, "no rule matched: the default sequence"
        return None, "no rule matched and the campaign has no default sequence"

    def mailbox_for(self, lead: Lead) -> Mailbox | None:
        if not self.mailboxes:
            return None
        return stable_pick(self.mailboxes, seed=lead.identity_hash or str(lead.pk))


def campaign_enrol(*, campaign: Campaign, now: dt.datetime | None = None) -> int:
    """Enrol the campaign's active leads that have no enrolment yet; returns how many.
    Set-wise, a chunk of leads at a time: an import of 100,000 leads into a running campaign
    is enrolled by the next tick in a few seconds, not one lead at a time."""
    now = now or timezone.now()
    router = Router(campaign)
    if not router.first_steps:
        return 0
    pool_join(router)
    enrolled = 0
    pending = (
        Lead.objects.filter(campaign=campaign, status=LeadStatus.ACTIVE, enrollment__isnull=True)
        .order_by("pk")
        .only("pk", "email", "venture_id", "grade", "segment_id", "source_channel", "identity_hash")
    )
    while True:
        chunk = list(pending[:ENROL_CHUNK])
        if not chunk:
            return enrolled
        enrolled += _enrol(router, chunk, now)
        if len(chunk) < ENROL_CHUNK:
            return enrolled


def pool_join(router: Router) -> int:
    """Leads enrolled while their campaign had no mailbox pool take one of its mailboxes once it
    has one (the same stable pick as a new lead's), with their messages not yet claimed: those
    then count against a mailbox cap like everyone else's, so the daily limit the campaign page
    shows is the one enforced. A message already claimed or handed over keeps its sender.
    Returns how many enrolments joined. With none to join (the partial index holds only
    enrolments without a mailbox) it is one indexed query per tick."""
    if not router.mailboxes:
        return 0
    joined = 0
    pending = (
        Enrollment.objects.filter(campaign=router.campaign, mailbox__isnull=True)
        .order_by("lead_id")
        .values_list("pk", "lead_id", "lead__identity_hash")
    )
    while chunk := list(pending[:ENROL_CHUNK]):
        by_box: dict[int, list[int]] = {}
        for pk, lead_id, identity in chunk:
            box = stable_pick(router.mailboxes, seed=identity or str(lead_id))
            by_box.setdefault(box.pk, []).append(pk)
        with transaction.atomic():
            for box_id, enrollments in sorted(by_box.items()):
                # Messages first, then enrolments: the order the tick's writes take.
                OutboundMessage.objects.filter(
                    enrollment_id__in=enrollments,
                    mailbox__isnull=True,
                    state__in=[MessageState.SCHEDULED, MessageState.DEFERRED],
                ).update(mailbox_id=box_id)
                joined += Enrollment.objects.filter(
                    pk__in=enrollments, mailbox__isnull=True
                ).update(mailbox_id=box_id)
        if len(chunk) < ENROL_CHUNK:
            break
    return joined


def _enrol(router: Router, leads: list[Lead], now: dt.datetime) -> int:
    """Route the leads, store their enrolments and plan their first steps, in one transaction
    of three statements, in lead order. Another worker enrolling the same leads at once is
    harmless: the unique lead of an enrolment and of a (lead, step) message make the second
    writer skip them, whoever's rows won."""
    campaign = router.campaign
    routed, rows = {}, []
    for lead in leads:
        sequence, reason = router.route(lead)
        if sequence is None or sequence.pk not in router.first_steps:
            continue
        routed[lead.pk] = (lead, sequence)
        rows.append(
            Enrollment(
                lead=lead,
                campaign=campaign,
                sequence=sequence,
                mailbox=router.mailbox_for(lead),
                route_reason=reason[:300],
                created_at=now,
            )
        )
    if not routed:
        return 0
    with transaction.atomic():
        Enrollment.objects.bulk_create(rows, ignore_conflicts=True)
        # The rows as stored (ours, or another worker's that got there first).
        stored = (
            Enrollment.objects.filter(lead_id__in=list(routed))
            .only("pk", "lead_id", "sequence_id", "mailbox_id", "created_at")
            .order_by("lead_id")  # inserts in one order for every worker: no deadlock
        )
        mine, messages = 0, []
        for enrollment in stored:
            lead, sequence = routed[enrollment.lead_id]
            mine += enrollment.created_at == now and enrollment.sequence_id == sequence.pk
            step = router.first_steps[enrollment.sequence_id]
            messages.append(_next_row(enrollment, lead, campaign, step, now))
        rows_insert(OutboundMessage, messages, fields=NEXT_FIELDS)
    return mine
