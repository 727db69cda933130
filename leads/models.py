"""Leads: the people a campaign may contact, where they came from, and who must never be contacted.

Lead.status is the one lifecycle field later apps read and write:
- active: may be enrolled in sequences (subject to consent and the send-time guardrails).
- suppressed: matched the suppression list (email, @domain or identity) after import.
- unsubscribed / replied / bounced: set by outreach when feedback arrives; never sent to again.
- erased: GDPR erasure; every personal field is blank and only ids and counters remain.
Only `active` leads may be sent to; every other status is terminal for sending.
"""

from __future__ import annotations

import datetime as dt
import hashlib

from django.conf import settings
from django.db import models
from django.db.models import Func, Q
from django.db.models.lookups import Exact, In
from django.utils import timezone as djtz

from ventures.models import Campaign, IcpSegment, Venture


def identity_hash_of(*, email_key: str = "", phone: str = "", linkedin_url: str = "") -> str:
    """SHA-256 hex of the strongest identifier: the email dedup key, else the E.164 phone, else
    the normalised LinkedIn URL. Empty when there is none. Prefixes keep the three kinds apart."""
    if email_key:
        material = "email:" + email_key
    elif phone:
        material = "phone:" + phone
    elif linkedin_url:
        material = "linkedin:" + linkedin_url
    else:
        return ""
    return hashlib.sha256(material.encode("utf-8")).hexdigest()


# The identity index's expression on PostgreSQL, {} being the hash (a column or a value).
IDENTITY_KEY_SQL = "hashtextextended({}, 0)"


class IdentityKey(Func):
    """What the lead table's identity index holds: on PostgreSQL a 64-bit hash of the identity
    hash (`hashtextextended`, immutable and defined for every text, the empty one included).

    Indexing the 8-byte key instead of the 64-character hex text makes the lead table's indexes
    227 instead of 335 MB at a million leads and takes about 2.3 s of PostgreSQL CPU off every
    million leads copied in, the index being written at a random place per lead
    (`bench/lead_table.py`, variant text-identity). A key matches a few hashes at most; queries
    compare the hash itself too (IdentityHashField's lookups)."""

    output_field = models.BigIntegerField()

    def as_sql(self, compiler, connection, **extra):
        # Other databases index the hash itself.
        return compiler.compile(self.source_expressions[0])

    def as_postgresql(self, compiler, connection, **extra):
        template = IDENTITY_KEY_SQL.format("%(expressions)s")
        return super().as_sql(compiler, connection, template=template, **extra)


class IdentityHashField(models.CharField):
    """A lead's identity hash. Its `exact` and `in` lookups also compare the IdentityKey, so
    every query by identity (dedup, suppression, erasure, the data export) is served by the
    identity index without having to know how it is built."""


def _key_condition(lookup, compiler, connection, sql: str, params) -> tuple[str, tuple]:
    if connection.vendor != "postgresql":
        return sql, params
    lhs, lhs_params = compiler.compile(IdentityKey(lookup.lhs))
    if isinstance(lookup, In):
        if not isinstance(lookup.rhs, (list, tuple, set, frozenset)):
            return sql, params  # a subquery: the hash comparison alone
        values = [v for v in lookup.rhs if v is not None]
        keys = ", ".join([IDENTITY_KEY_SQL.format("%s")] * len(values))
        return f"({lhs} IN ({keys}) AND {sql})", (*lhs_params, *values, *params)
    rhs, rhs_params = lookup.process_rhs(compiler, connection)
    key = IDENTITY_KEY_SQL.format(rhs)
    return f"({lhs} = {key} AND {sql})", (*lhs_params, *rhs_params, *params)


@IdentityHashField.register_lookup
class IdentityExact(Exact):
    def as_sql(self, compiler, connection):
        sql, params = super().as_sql(compiler, connection)
        return _key_condition(self, compiler, connection, sql, params)


@IdentityHashField.register_lookup
class IdentityIn(In):
    def as_sql(self, compiler, connection):
        sql, params = super().as_sql(compiler, connection)
        return _key_condition(self, compiler, connection, sql, params)


class ConsentStatus(models.TextChoices):
    UNKNOWN = "unknown", "Unknown"
    CONSENTED = "consented", "Consented"
    DNC = "dnc", "Do not contact"


class LeadStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    SUPPRESSED = "suppressed", "Suppressed"
    UNSUBSCRIBED = "unsubscribed", "Unsubscribed"
    REPLIED = "replied", "Replied"
    BOUNCED = "bounced", "Bounced"
    ERASED = "erased", "Erased (GDPR)"


class Grade(models.TextChoices):
    A = "A", "A"
    B = "B", "B"
    C = "C", "C"
    D = "D", "D"


class SourceChannel(models.TextChoices):
    IMPORT = "import", "File import"
    FORM = "form", "Capture form"
    API = "api", "Bulk API"
    MANUAL = "manual", "Entered by hand"


DELIVERY_CHANNELS = (SourceChannel.FORM, SourceChannel.API)


def import_lease_period() -> dt.timedelta:
    """How long a background import's runner may go without reporting progress."""
    return dt.timedelta(seconds=settings.AICMO_IMPORT_LEASE_SECONDS)


class CrossCampaignPolicy(models.TextChoices):
    ALLOW = "allow", "Allow leads active in another campaign of the venture"
    SKIP_ACTIVE = "skip_active", "Skip leads active in another campaign of the venture"


class BatchState(models.TextChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"


class ImportBatchQuerySet(models.QuerySet):
    def resumable(self, now=None) -> ImportBatchQuerySet:
        """`ImportBatch.is_resumable` as a query: the batches whose runner stopped."""
        now = now or djtz.now()
        stopped = Q(state=BatchState.RUNNING, lease_until__lt=now) | Q(
            state=BatchState.PENDING, created_at__lt=now - import_lease_period()
        )
        return self.filter(stopped).exclude(channel__in=DELIVERY_CHANNELS)


class ImportBatch(models.Model):
    """One file import (or one form/API delivery) into a campaign, with its counters.

    `stored_path` holds the uploaded file while a background import waits or runs. The counters
    are written after every chunk so a progress bar can read them while the import runs.

    A running import holds a lease (`lease_token`, `lease_until`) that it extends after every
    committed chunk; only the holder writes. A lease that lapses means its worker stopped, and
    the import is resumed from `rows_done` by whoever claims it next (see docs/ARCHITECTURE.md,
    "Background imports survive their worker"). Between two time slices of a background import
    the token is empty: the batch waits for its queued continuation.
    """

    # Indexed by leadbatch_campaign_sha_idx below.
    campaign = models.ForeignKey(
        Campaign, on_delete=models.PROTECT, related_name="import_batches", db_index=False
    )
    channel = models.CharField(
        max_length=10, choices=SourceChannel.choices, default=SourceChannel.IMPORT
    )
    source = models.CharField(
        "source list name", max_length=200, blank=True, help_text="e.g. 'Apollo Q4 DACH'."
    )
    file_name = models.CharField(max_length=255, blank=True)
    file_sha256 = models.CharField(max_length=64, blank=True)
    file_size = models.PositiveBigIntegerField(default=0)
    stored_path = models.CharField(max_length=500, blank=True, editable=False)
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="lead_import_batches",
    )
    actor = models.CharField(max_length=200, blank=True, help_text="Who started it (audit label).")
    forced = models.BooleanField(default=False, help_text="Re-import of a file already imported.")
    mapping = models.JSONField(default=dict, blank=True, help_text="Column -> lead field used.")
    state = models.CharField(max_length=10, choices=BatchState.choices, default=BatchState.PENDING)
    error = models.TextField(blank=True, help_text="Why a failed import failed.")
    created_at = models.DateTimeField(default=djtz.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    rows_total = models.PositiveIntegerField(default=0)
    rows_done = models.PositiveIntegerField(default=0)
    created = models.PositiveIntegerField(default=0)
    updated = models.PositiveIntegerField(default=0)
    unchanged = models.PositiveIntegerField(
        default=0, help_text="Already in the campaign with nothing new to fill in."
    )
    duplicates_in_file = models.PositiveIntegerField(default=0)
    duplicates_in_campaign = models.PositiveIntegerField(default=0)
    active_elsewhere = models.PositiveIntegerField(
        default=0, help_text="Already active in another campaign of the venture."
    )
    skipped_active_elsewhere = models.PositiveIntegerField(
        default=0, help_text="Of those, skipped by the campaign's cross-campaign policy."
    )
    suppressed = models.PositiveIntegerField(default=0)
    invalid = models.PositiveIntegerField(default=0)

    lease_token = models.CharField(
        max_length=32, blank=True, editable=False, help_text="Who runs it now (empty: nobody)."
    )
    lease_until = models.DateTimeField(
        null=True,
        blank=True,
        help_text="The runner's claim lapses then unless it reports progress.",
    )
    heartbeat_at = models.DateTimeField(
        "last progress", null=True, blank=True, help_text="When a chunk was last committed."
    )
    slices = models.PositiveIntegerField(
        default=0, help_text="Runs (tasks or commands) that have worked on this import."
    )
    resumes = models.PositiveIntegerField(
        default=0, help_text="Times resumed after its worker stopped in the middle."
    )

    objects = ImportBatchQuerySet.as_manager()

    class Meta:
        verbose_name_plural = "import batches"
        ordering = ["-created_at", "-id"]
        indexes = [
            # Re-import refusal looks up the same file hash in the same campaign.
            models.Index(fields=["campaign", "file_sha256"], name="leadbatch_campaign_sha_idx"),
            # The background task and the admin look for pending/running batches.
            models.Index(fields=["state"], name="leadbatch_state_idx"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(state__in=BatchState.values), name="leadbatch_state_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"Import #{self.pk} {self.file_name or self.channel} into {self.campaign.name}"

    @property
    def progress_percent(self) -> int:
        if self.state == BatchState.DONE:
            return 100
        if not self.rows_total:
            return 0
        return min(100, self.rows_done * 100 // self.rows_total)

    def counts(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in COUNT_FIELDS}

    @property
    def is_delivery(self) -> bool:
        """A capture-form or API delivery: one transaction, recorded whole or not at all, so
        never interrupted and never resumed."""
        return self.channel in DELIVERY_CHANNELS

    def is_resumable(self, now=None) -> bool:
        """Its runner stopped: running with a lapsed lease, or still pending a lease period
        after it was created (its task was lost). `ImportBatch.objects.resumable()` is the
        same rule as a query."""
        if self.is_delivery:
            return False
        now = now or djtz.now()
        if self.state == BatchState.PENDING:
            return self.created_at < now - import_lease_period()
        return self.lease_lapsed(now)

    def lease_lapsed(self, now=None) -> bool:
        """Running, but its runner stopped reporting progress: it is waiting to be resumed."""
        return (
            self.state == BatchState.RUNNING
            and self.lease_until is not None
            and self.lease_until < (now or djtz.now())
        )

    @property
    def run_status(self) -> str:
        """The state in words for the operator, including interruptions and resumes."""
        if self.state != BatchState.RUNNING:
            return self.get_state_display()
        if self.lease_lapsed():
            text = "Interrupted: its worker stopped; waiting to be resumed"
        elif self.lease_until is not None and not self.lease_token:
            text = "Running (queued to continue with the next rows)"
        elif self.resumes:
            text = "Running (resumed after an interruption)"
        else:
            text = "Running"
        if self.resumes:
            text += f"; resumed {self.resumes} time{'s' if self.resumes != 1 else ''}"
        return text


COUNT_FIELDS = (
    "rows_total",
    "rows_done",
    "created",
    "updated",
    "unchanged",
    "duplicates_in_file",
    "duplicates_in_campaign",
    "active_elsewhere",
    "skipped_active_elsewhere",
    "suppressed",
    "invalid",
)


def import_counts_text(counts: dict[str, int]) -> str:
    """What an import did, in the words every way of showing it uses (the admin's message, the
    `leads import` and `leads resume` commands, the demo): `counts` as `ImportBatch.counts()`."""
    return (
        f"{counts['rows_total']} rows, {counts['created']} created, {counts['updated']} updated, "
        f"{counts['unchanged']} unchanged, {counts['duplicates_in_file']} duplicates in the "
        f"file, {counts['duplicates_in_campaign']} already in the campaign, "
        f"{counts['active_elsewhere']} active in another campaign "
        f"({counts['skipped_active_elsewhere']} skipped), {counts['suppressed']} suppressed, "
        f"{counts['invalid']} invalid."
    )


class RowIssueKind(models.TextChoices):
    INVALID = "invalid", "Invalid"
    DUPLICATE = "duplicate", "Duplicate in the file"
    SUPPRESSED = "suppressed", "Suppressed"
    SKIPPED = "skipped", "Skipped (active in another campaign)"


class ImportIssue(models.Model):
    """A row of an import that did not become a new lead, and why (`kind`): invalid, a
    duplicate in the file, suppressed, or skipped as active in another campaign. Never holds
    the row's personal data: the operator opens the file at `row_number` to see it."""

    batch = models.ForeignKey(ImportBatch, on_delete=models.CASCADE, related_name="issues")
    row_number = models.PositiveIntegerField(help_text="Line in the file; the header is row 1.")
    column = models.CharField(max_length=200, blank=True)
    kind = models.CharField(
        max_length=10, choices=RowIssueKind.choices, default=RowIssueKind.INVALID
    )
    reason = models.CharField(max_length=500)

    class Meta:
        ordering = ["batch", "row_number", "id"]
        indexes = [
            # The batch page and the CSV download list a batch's rows in file order.
            models.Index(fields=["batch", "row_number"], name="leadrowerr_batch_row_idx"),
        ]

    def __str__(self) -> str:
        return f"row {self.row_number}: {self.reason}"


# What an import knows about a person and their company, beyond the email: the fields an
# import writes and fills in, an export lists and a template sees (in this order).
PROFILE_FIELDS = (
    "first_name",
    "last_name",
    "title",
    "company",
    "company_domain",
    "website",
    "phone",
    "linkedin_url",
    "city",
    "state",
    "country",
    "timezone",
    "industry",
    "company_size",
)


class Lead(models.Model):
    """A person in one campaign. The same person in two campaigns is two rows with the same
    identity hash; `venture` is stored too so cross-campaign checks need no join."""

    # The audit trail cannot be changed, so it can never be erased: it names a lead by its
    # id and shows these fields' changes only as keyed fingerprints (`ventures.services
    # .snapshot`). The fields an erasure blanks (`leads.services.privacy.PERSONAL_FIELDS`).
    AUDIT_PERSONAL_FIELDS = (
        "email", "email_key", "identity_hash", "first_name", "last_name", "title", "company",
        "company_domain", "website", "phone", "linkedin_url", "city", "state", "country",
        "timezone", "industry", "company_size", "value_estimate", "custom_fields", "consent_at",
        "consent_source", "utm_source", "utm_medium", "utm_campaign", "utm_content",
        "score_explanation", "source_row",
    )  # fmt: skip

    # The campaign-first indexes below serve campaign filters, so no separate FK index.
    # On PostgreSQL, campaign, venture, segment and source_batch have no foreign key: triggers
    # check them once per statement (leads/0009), the pair (campaign, venture) against the
    # campaign's own. SQLite has Django's keys; on_delete is applied by Django on both.
    campaign = models.ForeignKey(
        Campaign, on_delete=models.PROTECT, related_name="leads", db_index=False
    )
    # Cross-campaign checks read it from the lead itself: no join.
    venture = models.ForeignKey(
        Venture, on_delete=models.PROTECT, related_name="leads", db_index=False
    )
    status = models.CharField(max_length=12, choices=LeadStatus.choices, default=LeadStatus.ACTIVE)

    email = models.CharField(max_length=254, blank=True, help_text="As validated (domain lower).")
    email_key = models.CharField(
        max_length=254, blank=True, editable=False, help_text="Lower-cased email: the dedup key."
    )
    identity_hash = IdentityHashField(max_length=64, blank=True, editable=False)
    first_name = models.CharField(max_length=150, blank=True)
    last_name = models.CharField(max_length=150, blank=True)
    title = models.CharField(max_length=300, blank=True)
    company = models.CharField(max_length=300, blank=True)
    company_domain = models.CharField(max_length=253, blank=True)
    website = models.CharField(max_length=500, blank=True)
    phone = models.CharField(max_length=40, blank=True, help_text="E.164 when parseable.")
    linkedin_url = models.CharField(max_length=500, blank=True)
    city = models.CharField(max_length=150, blank=True)
    state = models.CharField(max_length=150, blank=True)
    country = models.CharField(max_length=150, blank=True)
    timezone = models.CharField(max_length=64, blank=True)
    industry = models.CharField(max_length=200, blank=True)
    company_size = models.PositiveIntegerField(null=True, blank=True, help_text="Employees.")
    # Indexed by lead_segment_idx below. Checked by a trigger on PostgreSQL (see campaign).
    segment = models.ForeignKey(
        IcpSegment,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="leads",
        db_index=False,
    )

    consent_status = models.CharField(
        max_length=10, choices=ConsentStatus.choices, default=ConsentStatus.UNKNOWN
    )
    consent_at = models.DateTimeField(null=True, blank=True)
    consent_source = models.CharField(max_length=200, blank=True)
    value_estimate = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    custom_fields = models.JSONField(default=dict, blank=True)

    source_channel = models.CharField(
        max_length=10, choices=SourceChannel.choices, default=SourceChannel.IMPORT
    )
    source_list = models.CharField(max_length=200, blank=True)
    # Checked by a trigger on PostgreSQL (see campaign).
    source_batch = models.ForeignKey(
        ImportBatch, on_delete=models.SET_NULL, null=True, blank=True, related_name="leads"
    )
    source_row = models.PositiveIntegerField(null=True, blank=True)
    # The last import that touched the lead: a second row for the same person in that import is
    # a duplicate within the file. No FK constraint or index: only the importer reads it, by id.
    last_batch = models.ForeignKey(
        ImportBatch,
        on_delete=models.DO_NOTHING,
        null=True,
        blank=True,
        db_index=False,
        db_constraint=False,
        related_name="+",
        editable=False,
    )
    utm_source = models.CharField(max_length=200, blank=True)
    utm_medium = models.CharField(max_length=200, blank=True)
    utm_campaign = models.CharField(max_length=200, blank=True)
    utm_content = models.CharField(max_length=200, blank=True)
    first_touch_at = models.DateTimeField(null=True, blank=True)
    last_touch_at = models.DateTimeField(null=True, blank=True)

    fit_score = models.PositiveSmallIntegerField(default=0)
    grade = models.CharField(max_length=1, choices=Grade.choices, default=Grade.D)
    score_explanation = models.TextField(blank=True)

    created_at = models.DateTimeField(default=djtz.now)
    updated_at = models.DateTimeField(default=djtz.now)

    class Meta:
        ordering = ["-id"]
        constraints = [
            # One lead per person per campaign; the importer's ON CONFLICT targets this index.
            # The key comes first, with varchar_pattern_ops on PostgreSQL, so the same index
            # also serves the admin's email-prefix search (LIKE 'prefix%'), erasure by address
            # and the importer's lookups by key: one index fewer to keep up to date on every
            # imported row. Campaign filters use the campaign-first indexes below.
            models.UniqueConstraint(
                fields=["email_key", "campaign"],
                condition=~Q(email_key=""),
                name="uniq_lead_campaign_email_key",
                opclasses=["varchar_pattern_ops", "int8_ops"],
            ),
            models.CheckConstraint(
                condition=Q(status__in=LeadStatus.values), name="lead_status_valid"
            ),
            models.CheckConstraint(
                condition=Q(consent_status__in=ConsentStatus.values), name="lead_consent_valid"
            ),
            models.CheckConstraint(condition=Q(grade__in=Grade.values), name="lead_grade_valid"),
        ]
        indexes = [
            # Cross-campaign dedup, suppression and erasure find a person's rows by identity
            # (in every venture: erasure; the others filter by venture on the few rows found).
            models.Index(IdentityKey("identity_hash"), name="lead_identity_key_idx"),
            # Admin filters: consent within a campaign, newest first (a backward scan). The id
            # ascends like the ids being inserted, so a new lead lands at the end of its group
            # and a full page splits where the new key is: a descending id would put every new
            # lead first in its group and leave each split page half empty (the index was 70
            # MB instead of about 30 at a million leads, and cost 1.3 s more per million rows).
            models.Index(
                fields=["campaign", "consent_status", "id"], name="lead_campaign_consent_idx"
            ),
            # Admin filter by ICP segment (and segment moves), newest first. Leads with no
            # segment (most, where a venture has few segments) are left out: that filter is a
            # backward scan of the primary key, and an import of unmatched leads pays nothing.
            models.Index(
                fields=["segment", "id"],
                condition=Q(segment__isnull=False),
                name="lead_segment_idx",
            ),
            # Admin filter by source channel and list name.
            models.Index(fields=["source_channel", "source_list"], name="lead_source_idx"),
            # Routing and reports pick a campaign's active leads by grade.
            models.Index(fields=["campaign", "status", "grade"], name="lead_campaign_status_idx"),
        ]

    def __str__(self) -> str:
        if self.status == LeadStatus.ERASED:
            return f"Erased lead #{self.pk}"
        return self.email or f"Lead #{self.pk}"

    def audit_label(self) -> str:
        """How the audit trail names the lead: never by its address (see above)."""
        return f"Lead #{self.pk}"

    @property
    def full_name(self) -> str:
        return " ".join(p for p in (self.first_name, self.last_name) if p)


class CampaignLeadPolicy(models.Model):
    """Per-campaign import policy (kept on the leads side: ventures does not know about leads).
    A campaign without a row uses the defaults below."""

    campaign = models.OneToOneField(Campaign, on_delete=models.CASCADE, related_name="lead_policy")
    cross_campaign = models.CharField(
        max_length=12,
        choices=CrossCampaignPolicy.choices,
        default=CrossCampaignPolicy.SKIP_ACTIVE,
        help_text="What to do with a person already active in another campaign of the venture.",
    )

    class Meta:
        verbose_name_plural = "campaign lead policies"

    def __str__(self) -> str:
        return f"{self.campaign}: {self.get_cross_campaign_display()}"


class SuppressionKind(models.TextChoices):
    EMAIL = "email", "Email address"
    DOMAIN = "domain", "Whole domain"
    IDENTITY = "identity", "Identity hash (erased person)"


class SuppressionEntry(models.Model):
    """Someone who must never be imported as active or contacted.

    EMAIL entries keep the lower-cased address in `value` and its identity hash; IDENTITY
    entries (left by erasure) keep only the hash; DOMAIN entries keep the domain in `value`.
    No venture = global.
    """

    kind = models.CharField(max_length=10, choices=SuppressionKind.choices)
    value = models.CharField(max_length=254, help_text="Email, domain, or the identity hash.")
    identity_hash = models.CharField(max_length=64, blank=True)
    venture = models.ForeignKey(
        Venture,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="suppressions",
        help_text="Empty = applies to every venture.",
    )
    reason = models.CharField(max_length=300, blank=True)
    source = models.CharField(max_length=200, blank=True, help_text="e.g. cli, admin, erasure.")
    created_at = models.DateTimeField(default=djtz.now)

    class Meta:
        verbose_name_plural = "suppression entries"
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["kind", "value"],
                condition=Q(venture__isnull=True),
                name="uniq_suppression_global",
            ),
            models.UniqueConstraint(
                fields=["kind", "value", "venture"],
                condition=Q(venture__isnull=False),
                name="uniq_suppression_venture",
            ),
            models.CheckConstraint(
                condition=Q(kind__in=SuppressionKind.values), name="suppression_kind_valid"
            ),
        ]
        indexes = [
            # The importer checks each chunk's identity hashes against the list.
            models.Index(fields=["identity_hash"], name="suppression_identity_idx"),
            # ... and each chunk's domains (kind=domain, value=domain). The unique constraints
            # start with (kind, value) too, but they are partial (global / per venture), so a
            # lookup for both scopes at once cannot use them.
            models.Index(fields=["kind", "value"], name="suppression_kind_value_idx"),
            # The suppression list's search, value LIKE 'prefix%' (a pattern operator class:
            # PostgreSQL's btree serves LIKE with it only; elsewhere a plain index).
            models.Index(
                fields=["value"],
                name="suppression_value_like_idx",
                opclasses=["varchar_pattern_ops"],
            ),
        ]

    def __str__(self) -> str:
        if self.kind == SuppressionKind.IDENTITY:
            return f"identity {self.value[:12]}…"
        return self.value


class ScoringField(models.TextChoices):
    SEGMENT = "segment", "Matches an ICP segment"
    TITLE = "title", "Title contains"
    INDUSTRY = "industry", "Industry is"
    COUNTRY = "country", "Country is"
    COMPANY_SIZE = "company_size", "Company size between"
    CUSTOM = "custom", "Custom column is filled in"


class ScoringRule(models.Model):
    """One editable signal of a venture's fit score. A lead's score is the sum of the points of
    the rules it matches, capped at 100; grades: A >= 75, B >= 50, C >= 25, else D."""

    venture = models.ForeignKey(Venture, on_delete=models.CASCADE, related_name="scoring_rules")
    label = models.CharField(
        max_length=100, help_text="Shown in the explanation, e.g. 'senior title'."
    )
    field = models.CharField(max_length=14, choices=ScoringField.choices)
    values = models.JSONField(
        default=list,
        blank=True,
        help_text="Title keywords, industries or countries (case-insensitive); custom: column names.",
    )
    size_min = models.PositiveIntegerField(null=True, blank=True)
    size_max = models.PositiveIntegerField(null=True, blank=True)
    points = models.SmallIntegerField(default=10)
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["venture", "-points", "label"]
        constraints = [
            models.CheckConstraint(
                condition=Q(field__in=ScoringField.values), name="scoring_field_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.label} ({self.points:+d})"


class UnsubscribeSource(models.TextChoices):
    LINK = "link", "Unsubscribe page"
    ONE_CLICK = "one-click", "One-click (mail client, RFC 8058)"
    MAILTO = "mailto", "Unsubscribe email"
    ADMIN = "admin", "Operator, in the admin"
    CLI = "cli", "Operator, on the command line"
    ESP = "esp", "Reported by the email provider"


class UnsubscribeReason(models.TextChoices):
    TOO_MANY = "too_many", "Too many emails"
    NOT_RELEVANT = "not_relevant", "Not relevant to me"
    NEVER_SIGNED_UP = "never_signed_up", "I never signed up"
    OTHER = "other", "Other"


class Unsubscribe(models.Model):
    """A person asked to hear nothing more from a venture: when, how (`source`), from which
    campaign's message, and the reason they gave, if any. One row per person (identity hash)
    per venture, written by `leads.unsubscribes.lead_unsubscribe`; the leads themselves carry
    status UNSUBSCRIBED and a venture suppression entry stops a re-import.

    Holds no address: the person is their identity hash (as in the suppression list and the
    audit trail). `comment` is the visitor's own words; erasure blanks it."""

    # Indexed by the unique constraint below (venture first).
    venture = models.ForeignKey(
        Venture, on_delete=models.PROTECT, related_name="unsubscribes", db_index=False
    )
    # The campaign of the message they answered; its index serves the per-campaign counts.
    campaign = models.ForeignKey(Campaign, on_delete=models.PROTECT, related_name="unsubscribes")
    lead = models.ForeignKey(
        Lead, on_delete=models.SET_NULL, null=True, blank=True, related_name="unsubscribes"
    )
    identity_hash = models.CharField(max_length=64, blank=True, editable=False)
    source = models.CharField(max_length=12, choices=UnsubscribeSource.choices)
    reason = models.CharField(max_length=16, choices=UnsubscribeReason.choices, blank=True)
    comment = models.CharField(max_length=500, blank=True, help_text="In the person's words.")
    created_at = models.DateTimeField(default=djtz.now)
    reason_at = models.DateTimeField("reason given at", null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            # A person unsubscribes from a venture once: repeated clicks find this row.
            models.UniqueConstraint(
                fields=["venture", "identity_hash"],
                condition=~Q(identity_hash=""),
                name="uniq_unsubscribe_venture_person",
            ),
            models.CheckConstraint(
                condition=Q(source__in=UnsubscribeSource.values), name="unsubscribe_source_valid"
            ),
            models.CheckConstraint(
                condition=Q(reason__in=[*UnsubscribeReason.values, ""]),
                name="unsubscribe_reason_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"Unsubscribe #{self.pk}"
