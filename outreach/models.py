"""The outbox and what feeds it: mailboxes, sequences and their steps, routing, enrolments, one
outbound message per (lead, step), the daily send ledger and the dispatch runs.

The database, not the worker, keeps the two promises: the unique (lead, step) pair and the
unique idempotency key make a second message to the same person for the same step
impossible, and every state change of a message is a conditional UPDATE on its lease token,
so a worker that lost its lease cannot record anything (`outreach.dispatch`).
"""

from __future__ import annotations

import datetime as dt

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from leads.models import Lead
from templating.models import MessageTemplate, MessageTemplateVersion
from ventures.models import Campaign, IcpSegment, Venture


def ramped_limit(
    *, limit: int, start: int | None, increase: int, since: dt.date | None, on: dt.date
) -> int:
    """A daily cap after its warm-up ramp: `start` on the first day, `increase` more each day
    after it, never above `limit`. No ramp (`start` None) or no first day yet: `limit`."""
    if start is None or since is None:
        return limit
    return min(limit, start + max((on - since).days, 0) * increase)


class Mailbox(models.Model):
    """A sending identity of a venture. A campaign sends from a pool of them; a lead keeps the
    mailbox it was given for its whole sequence.

    `connection_url` is a secret (it holds the SMTP password): the admin, logs, dumps and audit
    rows never show it. Empty means the site's EMAIL_URL (or its ESP). `imap_url` (the inbox
    `feedback poll` reads replies and bounces from, `outreach.imap`) is a secret the same way."""

    AUDIT_SECRET_FIELDS = ("connection_url", "imap_url")

    venture = models.ForeignKey(Venture, on_delete=models.PROTECT, related_name="mailboxes")
    campaigns = models.ManyToManyField(Campaign, related_name="mailboxes", blank=True)
    name = models.CharField(max_length=200)
    from_name = models.CharField(max_length=200, blank=True)
    from_email = models.EmailField()
    reply_to = models.EmailField(blank=True)
    connection_url = models.CharField(
        max_length=500,
        blank=True,
        help_text="smtp://user:password@host:587/?tls=True; empty = the site's EMAIL_URL.",
    )
    # Where a campaign file took `connection_url` from, so that `campaign dump` can name the
    # variable instead of the secret. Empty when it was set any other way.
    connection_url_env = models.CharField(
        "connection URL from environment variable",
        max_length=100,
        blank=True,
        help_text="Set by `campaign load` from `connection_url_env`; the value is read at load.",
    )
    imap_url = models.CharField(
        "IMAP URL",
        max_length=500,
        blank=True,
        help_text="imaps://user:password@imap.example.com:993/INBOX: the inbox `feedback poll` "
        "reads replies and bounces from; empty = not polled.",
    )
    # Like `connection_url_env`: the variable a campaign file named, so dumps never hold it.
    imap_url_env = models.CharField(
        "IMAP URL from environment variable",
        max_length=100,
        blank=True,
        help_text="Set by `campaign load` from `imap_url_env`; the value is read at load.",
    )
    daily_limit = models.PositiveIntegerField(default=50)
    warmup_start_limit = models.PositiveIntegerField(
        null=True, blank=True, help_text="Sends allowed on the first day; empty = no warm-up."
    )
    warmup_daily_increase = models.PositiveIntegerField(default=0)
    warmup_started_on = models.DateField(null=True, blank=True)
    min_gap_seconds = models.PositiveIntegerField(
        default=60, help_text="At least this long between two sends of this mailbox."
    )
    gap_jitter_seconds = models.PositiveIntegerField(
        default=30, help_text="Up to this much more, at random, so sends do not look scheduled."
    )
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["venture__name", "from_email"]
        constraints = [
            models.UniqueConstraint(
                fields=["venture", "from_email"], name="mailbox_once_per_venture"
            )
        ]

    def __str__(self) -> str:
        return f"{self.from_name} <{self.from_email}>" if self.from_name else self.from_email

    def effective_daily_limit(self, on: dt.date) -> int:
        return ramped_limit(
            limit=self.daily_limit,
            start=self.warmup_start_limit,
            increase=self.warmup_daily_increase,
            since=self.warmup_started_on,
            on=on,
        )


class MailboxPoll(models.Model):
    """Where the IMAP poll of a mailbox's inbox stands (`outreach.imap`): the folder's
    UIDVALIDITY and the highest UID read, so each poll reads only new mail, and how the last
    poll went. Kept apart from the mailbox so that a poll never writes the row an operator or
    a campaign file edits (a form saved meanwhile would put an old UID back)."""

    mailbox = models.OneToOneField(
        Mailbox, on_delete=models.CASCADE, primary_key=True, related_name="poll"
    )
    # A fingerprint of the server, user and folder polled: another one starts from the top.
    folder_key = models.CharField(max_length=64, blank=True)
    uidvalidity = models.BigIntegerField(null=True, blank=True)
    last_uid = models.BigIntegerField(default=0)
    polled_at = models.DateTimeField(null=True, blank=True)
    succeeded_at = models.DateTimeField(null=True, blank=True)
    error = models.CharField(max_length=500, blank=True)
    # What the last poll found: {"mails": 3, "replied": 1, ...}.
    counts = models.JSONField(default=dict, blank=True)

    def __str__(self) -> str:
        return f"IMAP poll of {self.mailbox}"


class Sequence(models.Model):
    """Ordered steps a lead of the campaign goes through, and what stops them."""

    campaign = models.ForeignKey(Campaign, on_delete=models.PROTECT, related_name="sequences")
    slug = models.SlugField(max_length=80)
    name = models.CharField(max_length=200)
    is_default = models.BooleanField(
        default=False, help_text="Leads no routing rule matches go here."
    )
    # A hard bounce, an unsubscribe and a complaint always stop it: the address is suppressed.
    stop_on_reply = models.BooleanField(
        default=True, help_text="Off: a reply is recorded and the lead goes on to the next step."
    )
    stop_on_auto_reply = models.BooleanField(
        default=False,
        help_text="Off: an out-of-office with a return date moves the next step after it.",
    )
    stop_on_company_reply = models.BooleanField(
        default=False, help_text="A reply from anyone at the lead's company domain stops it too."
    )

    class Meta:
        ordering = ["campaign", "-is_default", "slug"]
        constraints = [
            models.UniqueConstraint(fields=["campaign", "slug"], name="sequence_slug_per_campaign"),
            models.UniqueConstraint(
                fields=["campaign"],
                condition=Q(is_default=True),
                name="sequence_one_default_per_campaign",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class StepKind(models.TextChoices):
    EMAIL = "email", "Automatic email"
    LINKEDIN_CONNECT = "linkedin_connect", "Manual task: LinkedIn connection note"
    LINKEDIN_MESSAGE = "linkedin_message", "Manual task: LinkedIn message"
    CALL = "call", "Manual task: call"


class SequenceStep(models.Model):
    """One step: wait `delay` after the previous step (after enrolment for the first), then
    send an email from the variant pool, or open a manual task for an operator."""

    sequence = models.ForeignKey(Sequence, on_delete=models.CASCADE, related_name="steps")
    position = models.PositiveSmallIntegerField(validators=[MinValueValidator(1)])
    kind = models.CharField(max_length=20, choices=StepKind.choices, default=StepKind.EMAIL)
    delay_days = models.PositiveSmallIntegerField(default=0)
    delay_hours = models.PositiveSmallIntegerField(default=0, validators=[MaxValueValidator(23)])
    business_days = models.BooleanField(
        default=False, help_text="Count only the campaign's send days in the delay."
    )
    templates = models.ManyToManyField(
        MessageTemplate, related_name="sequence_steps", help_text="The variant pool."
    )
    new_thread = models.BooleanField(
        default=False,
        help_text="Send as a new email; by default a follow-up replies in the first email's "
        "thread (Re: subject, In-Reply-To, References).",
    )

    class Meta:
        ordering = ["sequence", "position"]
        constraints = [
            models.UniqueConstraint(fields=["sequence", "position"], name="step_position_once")
        ]

    def __str__(self) -> str:
        return f"{self.sequence} #{self.position} ({self.get_kind_display()})"

    @property
    def is_manual(self) -> bool:
        return self.kind != StepKind.EMAIL

    @property
    def delay(self) -> dt.timedelta:
        return dt.timedelta(days=self.delay_days, hours=self.delay_hours)


class RoutingRule(models.Model):
    """Leads matching every non-empty condition go to `sequence`; rules are tried by priority
    (lowest first), then the campaign's default sequence."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="routing_rules")
    priority = models.PositiveSmallIntegerField(default=100)
    sequence = models.ForeignKey(Sequence, on_delete=models.CASCADE, related_name="rules")
    grades = models.JSONField(default=list, blank=True, help_text='e.g. ["A", "B"]')
    segment = models.ForeignKey(IcpSegment, null=True, blank=True, on_delete=models.CASCADE)
    source_channels = models.JSONField(default=list, blank=True, help_text='e.g. ["api"]')

    class Meta:
        ordering = ["campaign", "priority", "id"]

    def __str__(self) -> str:
        return f"{self.describe()} -> {self.sequence}"

    def describe(self) -> str:
        parts = []
        if self.grades:
            parts.append("grade " + "/".join(self.grades))
        if self.segment_id:
            parts.append(f"segment {self.segment}")
        if self.source_channels:
            parts.append("source " + "/".join(self.source_channels))
        return f"rule #{self.pk} ({', '.join(parts) or 'every lead'})"

    def matches(self, lead: Lead) -> bool:
        if self.grades and lead.grade not in self.grades:
            return False
        if self.segment_id and lead.segment_id != self.segment_id:
            return False
        return not self.source_channels or lead.source_channel in self.source_channels


class EnrollmentState(models.TextChoices):
    ACTIVE = "active", "Active"
    FINISHED = "finished", "Finished the sequence"
    STOPPED = "stopped", "Stopped"


class Enrollment(models.Model):
    """A lead in a sequence, with why it was routed there and the mailbox it keeps."""

    lead = models.OneToOneField(Lead, on_delete=models.CASCADE, related_name="enrollment")
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="enrollments")
    sequence = models.ForeignKey(Sequence, on_delete=models.PROTECT, related_name="enrollments")
    mailbox = models.ForeignKey(Mailbox, null=True, blank=True, on_delete=models.PROTECT)
    route_reason = models.CharField(max_length=300)
    state = models.CharField(
        max_length=10, choices=EnrollmentState.choices, default=EnrollmentState.ACTIVE
    )
    stop_reason = models.CharField(max_length=300, blank=True)
    # The first email's Message-ID and subject: follow-ups reply in its thread.
    thread_message_id = models.CharField(max_length=300, blank=True)
    thread_subject = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["campaign", "state"], name="enrollment_campaign_state"),
            # The enrolments without a mailbox, which join the pool once it exists
            # (`enrollment.pool_join`): none, in a campaign with a pool, after the next tick.
            models.Index(
                fields=["campaign"],
                condition=models.Q(mailbox__isnull=True),
                name="enrollment_unpooled",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.lead} in {self.sequence}"


class MessageState(models.TextChoices):
    SCHEDULED = "scheduled", "Scheduled"
    CLAIMED = "claimed", "Claimed"
    SENDING = "sending", "Being handed over"
    SENT = "sent", "Sent"
    BLOCKED = "blocked", "Blocked"
    DEFERRED = "deferred", "Deferred"
    FAILED = "failed", "Failed"
    UNKNOWN = "unknown", "Unknown (to settle)"
    TASK_OPEN = "task_open", "Task open"
    TASK_DONE = "task_done", "Task done"
    TASK_SKIPPED = "task_skipped", "Task skipped"


# Due for the tick: waiting for their time, first or again.
DUE_STATES = (MessageState.SCHEDULED, MessageState.DEFERRED)
# The step is over for the lead: the next one may be planned.
DONE_STATES = (MessageState.SENT, MessageState.TASK_DONE, MessageState.TASK_SKIPPED)


class OutboundMessage(models.Model):
    """One step for one lead: an email or a manual task, from planned to settled."""

    # Unique through Meta's constraint (a unique=True field would add a second, LIKE index).
    idempotency_key = models.CharField(max_length=64, editable=False)
    enrollment = models.ForeignKey(Enrollment, on_delete=models.CASCADE, related_name="messages")
    # No index of their own: (lead, step)'s unique index and (campaign, state)'s serve them.
    lead = models.ForeignKey(
        Lead, on_delete=models.CASCADE, related_name="outbound_messages", db_index=False
    )
    campaign = models.ForeignKey(
        Campaign, on_delete=models.CASCADE, related_name="messages", db_index=False
    )
    venture_id = models.BigIntegerField()
    step = models.ForeignKey(SequenceStep, on_delete=models.PROTECT, related_name="messages")
    mailbox = models.ForeignKey(Mailbox, null=True, blank=True, on_delete=models.PROTECT)
    kind = models.CharField(max_length=20, choices=StepKind.choices)
    state = models.CharField(
        max_length=12, choices=MessageState.choices, default=MessageState.SCHEDULED
    )
    due_at = models.DateTimeField()
    attempts = models.PositiveSmallIntegerField(default=0)
    reason_code = models.CharField(max_length=40, blank=True)
    reason = models.CharField(max_length=500, blank=True)
    # What was (or, in proof mode, would have been) sent.
    template = models.ForeignKey(MessageTemplate, null=True, blank=True, on_delete=models.PROTECT)
    template_version = models.ForeignKey(
        MessageTemplateVersion, null=True, blank=True, on_delete=models.PROTECT
    )
    recipient = models.CharField(max_length=254, blank=True)
    recipient_domain = models.CharField(max_length=253, blank=True)
    subject = models.CharField(max_length=998, blank=True)
    body_text = models.TextField(blank=True)
    body_html = models.TextField(blank=True)
    message_id = models.CharField(max_length=300, blank=True)  # indexed in Meta, without LIKE
    esp_message_id = models.CharField(max_length=300, blank=True)
    in_reply_to = models.CharField(max_length=300, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    settled_at = models.DateTimeField(null=True, blank=True)
    settled_by = models.CharField(max_length=200, blank=True)
    # The claim: only the holder of `lease_token` may change the row while `lease_until` holds.
    run = models.ForeignKey("DispatchRun", null=True, blank=True, on_delete=models.SET_NULL)
    lease_token = models.CharField(max_length=32, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    # The cap slots this message holds ("scope:key:day" names), released if it is not sent.
    reserved = models.JSONField(default=list, blank=True)
    # Narrative memory (`outreach.narrative`): the lead's ICP segment when the email was
    # composed, where its figures count whatever segment the lead moves to later, and which
    # variant of the step's pool was chosen and why (method, seed, posterior means, draws).
    # No index: only deleting a segment looks messages up by it.
    segment = models.ForeignKey(
        IcpSegment,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_index=False,
    )
    narrative_choice = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["due_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["lead", "step"], name="outbound_once_per_lead_step"),
            models.UniqueConstraint(fields=["idempotency_key"], name="outbound_idempotency_once"),
            models.CheckConstraint(
                condition=Q(state__in=MessageState.values), name="outbound_state_valid"
            ),
        ]
        indexes = [
            # The tick's claim: due rows in due order, and nothing else.
            models.Index(
                fields=["due_at", "id"],
                condition=Q(state__in=DUE_STATES),
                name="outbound_due_idx",
            ),
            # Lapsed claims to recover.
            models.Index(
                fields=["lease_until"],
                condition=Q(state__in=[MessageState.CLAIMED, MessageState.SENDING]),
                name="outbound_lease_idx",
            ),
            models.Index(fields=["campaign", "state"], name="outbound_campaign_state_idx"),
            # The dashboard's "due now" of each campaign: one short range of this index per
            # campaign (its due rows up to now), read only as far as the count it shows.
            models.Index(
                fields=["campaign", "due_at"],
                condition=Q(state__in=DUE_STATES),
                name="outbound_campaign_due_idx",
            ),
            # Replies name the message by our Message-ID (In-Reply-To, References).
            models.Index(fields=["message_id"], name="outbound_message_id_idx"),
            # Feedback from an ESP names the message by the ESP's id.
            models.Index(
                fields=["esp_message_id"],
                condition=~Q(esp_message_id=""),
                name="outbound_esp_id_idx",
            ),
            # The message list's "sent" date filter (today, past 7 days...): a range of it.
            models.Index(
                fields=["sent_at"], condition=Q(sent_at__isnull=False), name="outbound_sent_at_idx"
            ),
            # The message list's reason filter offers the codes present: read from this.
            models.Index(
                fields=["reason_code"], condition=~Q(reason_code=""), name="outbound_reason_idx"
            ),
            # The search on the recipient's address: lower(recipient) LIKE 'prefix%', created
            # per database in migration 0013_lists_search_indexes (not described here).
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} #{self.step.position} to {self.recipient or self.lead}"


class SendLedger(models.Model):
    """Sends counted against one daily cap: the global one, a venture's, a campaign's, a
    mailbox's or a recipient domain's, for one day. A slot is taken under the row's lock in the
    same transaction that admits the message, so no number of workers exceeds a cap.
    `next_at` paces the scope (campaign and mailbox): the earliest time of its next send."""

    scope = models.CharField(max_length=10)
    key = models.CharField(max_length=253)
    day = models.DateField()
    count = models.PositiveIntegerField(default=0)
    next_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["scope", "key", "day"], name="ledger_slot_once")
        ]

    def __str__(self) -> str:
        return f"{self.scope} {self.key} on {self.day}: {self.count}"


class DispatchRun(models.Model):
    """One tick: who ran it, when, and what it decided, with its artifacts."""

    worker = models.CharField(max_length=200)
    mode = models.CharField(max_length=8)
    campaign = models.ForeignKey(Campaign, null=True, blank=True, on_delete=models.SET_NULL)
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    counts = models.JSONField(default=dict, blank=True)
    artifact_dir = models.CharField(max_length=500, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]
        # The run list's order, newest first (a run a minute is half a million a year).
        indexes = [models.Index(fields=["-started_at", "-id"], name="dispatchrun_started_idx")]

    def __str__(self) -> str:
        return f"run #{self.pk} by {self.worker}"


class DispatchDecision(models.Model):
    """What a run decided about one message: the run's own record, kept when a later run takes
    the message up again, so a run's counts can always be reproduced from the database."""

    run = models.ForeignKey(DispatchRun, on_delete=models.CASCADE, related_name="decisions")
    message = models.ForeignKey(OutboundMessage, on_delete=models.CASCADE, related_name="decisions")
    lead_id = models.BigIntegerField()
    outcome = models.CharField(max_length=12, choices=MessageState.choices)
    reason_code = models.CharField(max_length=40, blank=True)
    reason = models.CharField(max_length=500, blank=True)
    decided_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["run", "id"]
        indexes = [models.Index(fields=["run", "outcome"], name="decision_run_outcome_idx")]

    def __str__(self) -> str:
        return f"run #{self.run_id}: message #{self.message_id} {self.outcome}"


class ManualTaskManager(models.Manager):
    def get_queryset(self):
        manual = [k for k in StepKind.values if k != StepKind.EMAIL]
        return super().get_queryset().filter(kind__in=manual)


class ManualTask(OutboundMessage):
    """The operator's task queue: the manual steps (LinkedIn notes and messages, calls)."""

    objects = ManualTaskManager()

    class Meta:
        proxy = True
        verbose_name = "manual task"


class FeedbackKind(models.TextChoices):
    """What a feedback event says (django-anymail's normalised event types, plus replies)."""

    QUEUED = "queued", "Queued by the ESP"
    SENT = "sent", "Sent by the ESP"
    DELIVERED = "delivered", "Delivered"
    DEFERRED = "deferred", "Deferred (soft bounce)"
    BOUNCED = "bounced", "Bounced (hard)"
    REJECTED = "rejected", "Rejected by the ESP"
    FAILED = "failed", "Failed at the ESP"
    COMPLAINED = "complained", "Spam complaint"
    UNSUBSCRIBED = "unsubscribed", "Unsubscribed"
    SUBSCRIBED = "subscribed", "Subscribed again"
    OPENED = "opened", "Opened (unreliable)"
    CLICKED = "clicked", "Clicked"
    AUTORESPONDED = "autoresponded", "Auto-reply"
    REPLIED = "replied", "Replied"
    UNKNOWN = "unknown", "Unknown"


class Sentiment(models.TextChoices):
    """How a reply reads (an operator's judgement today)."""

    POSITIVE = "positive", "Positive"
    NEUTRAL = "neutral", "Neutral"
    NEGATIVE = "negative", "Negative"
    OBJECTION = "objection", "Objection"


class Objection(models.TextChoices):
    PRICE = "price", "Price"
    TIMING = "timing", "Timing"
    NOT_RIGHT_PERSON = "not_right_person", "Not the right person"
    HAS_SOLUTION = "has_solution", "Already have a solution"
    NOT_INTERESTED = "not_interested", "Not interested"
    OTHER = "other", "Other"


class ObjectionRule(models.Model):
    """A pattern that files a reply under an objection. Rules are tried by priority (lowest
    first); the first whose pattern is found in the reply's new text wins."""

    category = models.CharField(max_length=20, choices=Objection.choices)
    pattern = models.CharField(
        max_length=500,
        help_text="A regular expression, matched case-insensitively anywhere in the reply's "
        r"new text; e.g. \b(too expensive|budget)\b.",
    )
    priority = models.PositiveSmallIntegerField(default=100)
    is_active = models.BooleanField(default=True)
    note = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["priority", "id"]

    def __str__(self) -> str:
        return f"{self.get_category_display()}: {self.pattern}"

    def clean(self) -> None:
        import re

        from django.core.exceptions import ValidationError

        try:
            re.compile(self.pattern)
        except re.error as exc:
            raise ValidationError({"pattern": f"Not a valid regular expression: {exc}."}) from None


class FeedbackEvent(models.Model):
    """One event about a sent message, stored once per (source, event id) however often it is
    delivered, matched to its message when it can be, and kept (listed) when it cannot."""

    source = models.CharField(max_length=40, help_text="The ESP, or imap, import, manual.")
    event_id = models.CharField(max_length=200, help_text="The source's own id, else a digest.")
    kind = models.CharField(max_length=20, choices=FeedbackKind.choices)
    occurred_at = models.DateTimeField(null=True, blank=True)
    received_at = models.DateTimeField(default=timezone.now)
    recipient = models.CharField(max_length=254, blank=True)
    esp_message_id = models.CharField(max_length=300, blank=True)
    # Our Message-IDs the event names: its In-Reply-To and References (a reply), or the
    # returned original's Message-ID (a bounce report read over IMAP).
    thread_ids = models.JSONField(default=list, blank=True)
    reason = models.CharField(max_length=500, blank=True)
    url = models.CharField(max_length=2000, blank=True)
    subject = models.CharField(max_length=998, blank=True)
    text = models.TextField(blank=True)
    # A reply's new part: its text without the quoted thread and the signature.
    reply_text = models.TextField(blank=True)
    objection = models.CharField(max_length=20, choices=Objection.choices, blank=True)
    # Opens: privacy proxies and scanners open every mail, so an open proves nothing.
    reliable = models.BooleanField(default=True)
    sentiment = models.CharField(max_length=10, choices=Sentiment.choices, blank=True)
    notes = models.TextField(blank=True)
    message = models.ForeignKey(
        OutboundMessage, null=True, blank=True, on_delete=models.SET_NULL, related_name="feedback"
    )
    lead = models.ForeignKey(Lead, null=True, blank=True, on_delete=models.SET_NULL)
    venture_id = models.BigIntegerField(null=True, blank=True)
    matched_by = models.CharField(max_length=20, blank=True)
    effect = models.CharField(max_length=500, blank=True)
    # A reply an operator has dealt with (answered, booked the call): the SLA clock stops.
    handled_at = models.DateTimeField(null=True, blank=True)
    handled_by = models.CharField(max_length=200, blank=True)
    # A positive reply left past its campaign's SLA: escalated once, to this address.
    escalated_at = models.DateTimeField(null=True, blank=True)
    escalated_to = models.CharField(max_length=254, blank=True)

    class Meta:
        ordering = ["-received_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["source", "event_id"], name="feedback_once")]
        indexes = [
            models.Index(fields=["kind", "received_at"], name="feedback_kind_idx"),
            # Positive replies nobody has handled yet: the SLA check and the console read them.
            models.Index(
                fields=["received_at"],
                condition=Q(sentiment="positive", handled_at__isnull=True),
                name="feedback_reply_waiting",
            ),
            models.Index(
                fields=["received_at"], condition=Q(message__isnull=True), name="feedback_unmatched"
            ),
            # The event list's search, lower(recipient) LIKE 'prefix%': migration
            # 0013_lists_search_indexes creates it per database (not described here).
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} from {self.source} ({self.recipient or 'no recipient'})"


class LeadFacts(models.Model):
    """What the outbox and the feedback have recorded of one lead: the emails sent to it and
    the kinds of events seen (bits, `outreach.facts.FACT_BITS`). Kept as they are recorded,
    in the transactions that record them, so that a report reads one row per lead instead of
    aggregating every message and event of a campaign; rebuildable, and checked, from those
    rows (`outreach.facts`). A lead with neither has no row."""

    lead = models.OneToOneField(
        Lead, primary_key=True, on_delete=models.CASCADE, related_name="facts"
    )
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="+")
    emails_sent = models.PositiveIntegerField(default=0)
    event_flags = models.PositiveIntegerField(default=0)

    class Meta:
        verbose_name_plural = "lead facts"

    def __str__(self) -> str:
        return f"{self.emails_sent} sent, flags {self.event_flags:#x}"


class MessageTally(models.Model):
    """A count of one campaign's messages by step and state (a blocked message's reason; a sent
    email's mailbox, ICP segment and template version): what the report and the campaign page
    read instead of grouping every message. Written only by database triggers on the messages
    table, as signed deltas (+1 for a row's new key, -1 for its old one) appended by every
    INSERT, UPDATE and DELETE, so no write path can miss it and no two writers wait for each
    other; `outreach.tally` sums them, folds them together after each tick, and checks and
    rebuilds them. Plain ids, not foreign keys: a delta must never block or be blocked by the
    rows it names, nor outlive a deleted campaign's cascade in a way that fails it."""

    campaign_id = models.BigIntegerField()
    step_id = models.BigIntegerField()
    state = models.CharField(max_length=12)
    reason_code = models.CharField(max_length=40, blank=True)
    mailbox_id = models.BigIntegerField(null=True)
    segment_id = models.BigIntegerField(null=True)
    template_version_id = models.BigIntegerField(null=True)
    n = models.IntegerField()

    class Meta:
        indexes = [models.Index(fields=["campaign_id"], name="tally_campaign_idx")]

    def __str__(self) -> str:
        return f"campaign #{self.campaign_id} step #{self.step_id} {self.state}: {self.n:+d}"


class SentQuarter(models.Model):
    """A count of one campaign's sent messages by the quarter hour (UTC) of their `sent_at`,
    kept by the same triggers as `MessageTally`: sends per day in any time zone (every zone's
    offset is a whole number of quarter hours), without reading the messages."""

    campaign_id = models.BigIntegerField()
    quarter = models.DateTimeField()
    n = models.IntegerField()

    class Meta:
        indexes = [models.Index(fields=["campaign_id", "quarter"], name="sentquarter_idx")]

    def __str__(self) -> str:
        return f"campaign #{self.campaign_id} {self.quarter:%Y-%m-%d %H:%M}: {self.n:+d}"


class NarrativeStat(models.Model):
    """The narrative memory of one arm: what emails of one narrative angle and variant did in
    one venture and ICP segment (none: leads in no segment). Counted per message, each once
    (a second delivery report or reply changes nothing; a reply read again moves it between
    positive and objection), updated by atomic increments as sends and feedback are recorded,
    and rebuildable from the messages and events (`outreach.narrative`)."""

    venture = models.ForeignKey(Venture, on_delete=models.CASCADE, related_name="narrative_stats")
    segment = models.ForeignKey(
        IcpSegment,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="narrative_stats",
    )
    narrative_angle = models.CharField(max_length=200, blank=True)
    variant_label = models.CharField(max_length=50, blank=True)
    sends = models.PositiveIntegerField(default=0)
    deliveries = models.PositiveIntegerField(default=0)
    replies = models.PositiveIntegerField(default=0)
    positive_replies = models.PositiveIntegerField(default=0)
    objections = models.PositiveIntegerField(default=0)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = "narrative"
        ordering = ["venture_id", "segment_id", "narrative_angle", "variant_label"]
        constraints = [
            # Two partial constraints because NULLs are distinct in a unique index: without the
            # second, "no segment" could hold the same arm twice.
            models.UniqueConstraint(
                fields=["venture", "segment", "narrative_angle", "variant_label"],
                condition=Q(segment__isnull=False),
                name="narrative_arm_once",
            ),
            models.UniqueConstraint(
                fields=["venture", "narrative_angle", "variant_label"],
                condition=Q(segment__isnull=True),
                name="narrative_arm_once_unsegmented",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.narrative_angle or 'no angle'} [{self.variant_label or '-'}]"

    @property
    def arm_label(self) -> str:
        return arm_label(self.narrative_angle, self.variant_label)


def arm_label(angle: str, variant: str) -> str:
    """How the console names an arm: "cost of reporting · A"."""
    return " · ".join(part for part in (angle, variant) if part) or "(no angle or variant)"


class AutoPause(models.Model):
    """A campaign (or one of its mailboxes) paused by the engine itself, with the figures that
    tripped it. Resuming is the operator's audited decision; only sends after the pause count
    towards the next one."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="auto_pauses")
    mailbox = models.ForeignKey(
        Mailbox, null=True, blank=True, on_delete=models.CASCADE, related_name="auto_pauses"
    )
    reason = models.CharField(max_length=500)
    figures = models.JSONField(default=dict)
    paused_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-paused_at", "-id"]
        indexes = [models.Index(fields=["campaign", "paused_at"], name="autopause_campaign_idx")]

    def __str__(self) -> str:
        what = f"mailbox {self.mailbox}" if self.mailbox_id else "campaign"
        return f"{what} paused on {self.paused_at:%Y-%m-%d %H:%M}: {self.reason}"
