"""The campaign control plane: ventures, ICP segments, campaigns, kill switches and the audit trail."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone


def validate_timezone(value: str) -> None:
    if value in ("", None):
        return
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValidationError(
            "%(value)s is not an IANA time zone (e.g. Europe/Berlin).", params={"value": value}
        ) from None


validate_send_days = RegexValidator(
    r"^(?!.*(.).*\1)[1-7]{1,7}$",
    "Send days are ISO weekday digits 1 (Monday) to 7 (Sunday), each at most once, e.g. 12345.",
)

WEEKDAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
WEEKDAY_LABELS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def send_days_label(send_days: str) -> str:
    """ISO weekday digits as a person reads them: "12345" is "Mon-Fri" (with an en dash), "135" is "Mon, Wed,
    Fri", "1234567" is "Every day". Runs of three days or more are ranges."""
    days = sorted({int(d) for d in send_days if d in "1234567"})
    if not days:
        return "No send day"
    if len(days) == 7:
        return "Every day"
    runs: list[list[int]] = []
    for day in days:
        if runs and day == runs[-1][-1] + 1:
            runs[-1].append(day)
        else:
            runs.append([day])
    parts = []
    for run in runs:
        if len(run) >= 3:
            parts.append(f"{WEEKDAY_LABELS[run[0] - 1]}–{WEEKDAY_LABELS[run[-1] - 1]}")
        else:
            parts.extend(WEEKDAY_LABELS[d - 1] for d in run)
    return ", ".join(parts)


class Channel(models.TextChoices):
    EMAIL = "email", "Email"
    LINKEDIN = "linkedin", "LinkedIn"
    PHONE = "phone", "Phone"


class Venture(models.Model):
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=80, unique=True)
    offer_summary = models.TextField(blank=True)
    primary_cta = models.CharField("primary call to action", max_length=300, blank=True)
    default_channels = models.JSONField(default=list, blank=True)
    timezone = models.CharField(max_length=64, default="UTC", validators=[validate_timezone])
    owner_name = models.CharField(max_length=200, blank=True)
    owner_email = models.EmailField(blank=True)
    postal_address = models.TextField(
        blank=True, help_text="Physical postal address printed in every live email (CAN-SPAM)."
    )
    daily_send_limit = models.PositiveIntegerField(
        null=True, blank=True, help_text="Cap across all campaigns of the venture; empty = none."
    )
    kill_switch = models.BooleanField(default=False)
    kill_reason = models.CharField(max_length=500, blank=True)
    is_active = models.BooleanField(default=True)
    members = models.ManyToManyField(
        settings.AUTH_USER_MODEL,
        through="VentureMembership",
        related_name="ventures",
        blank=True,
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        unknown = set(self.default_channels or []) - set(Channel.values)
        if not isinstance(self.default_channels, list) or unknown:
            raise ValidationError(
                {"default_channels": f"Channels must be a list of: {', '.join(Channel.values)}."}
            )


class VentureMembership(models.Model):
    """Grants a user (Operator or Viewer) sight of one venture; Administrators see all."""

    venture = models.ForeignKey(Venture, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="venture_memberships"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["venture", "user"], name="uniq_venture_membership")
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.venture}"


class IcpSegment(models.Model):
    """An ideal-customer segment of a venture, with rules that leads are matched against.

    Every non-empty rule must match; an empty rule matches anything. Lists are matched
    case-insensitively: industries and countries exactly, title keywords as substrings.
    """

    venture = models.ForeignKey(Venture, on_delete=models.CASCADE, related_name="segments")
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=80)
    firmographic_notes = models.TextField(blank=True)
    psychographic_notes = models.TextField(blank=True)
    industries = models.JSONField(default=list, blank=True)
    title_keywords = models.JSONField(default=list, blank=True)
    countries = models.JSONField(default=list, blank=True, help_text="ISO country codes or names.")
    company_size_min = models.PositiveIntegerField(null=True, blank=True)
    company_size_max = models.PositiveIntegerField(null=True, blank=True)
    priority = models.PositiveSmallIntegerField(
        default=100, help_text="Lower numbers are tried first when several segments match."
    )

    class Meta:
        verbose_name = "ICP segment"
        ordering = ["venture", "priority", "name"]
        constraints = [
            models.UniqueConstraint(fields=["venture", "slug"], name="uniq_segment_slug"),
            models.CheckConstraint(
                condition=Q(company_size_min__isnull=True)
                | Q(company_size_max__isnull=True)
                | Q(company_size_min__lte=models.F("company_size_max")),
                name="segment_size_range_ordered",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.venture.slug}/{self.name}"

    def clean(self) -> None:
        for field in ("industries", "title_keywords", "countries"):
            value = getattr(self, field)
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ValidationError({field: "Must be a list of strings."})
        if (
            self.company_size_min is not None
            and self.company_size_max is not None
            and self.company_size_min > self.company_size_max
        ):
            raise ValidationError({"company_size_max": "Must not be below the minimum size."})


class CampaignStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    RUNNING = "running", "Running"
    PAUSED = "paused", "Paused"
    STOPPED = "stopped", "Stopped"
    COMPLETED = "completed", "Completed"


class SendMode(models.TextChoices):
    PROOF = "proof", "Proof (write .eml files, send nothing)"
    LIVE = "live", "Live (send through the email backend)"


# action -> (states it may start from, resulting state). The only legal transitions.
CAMPAIGN_TRANSITIONS: dict[str, tuple[frozenset[str], str]] = {
    "start": (frozenset({CampaignStatus.DRAFT}), CampaignStatus.RUNNING),
    "pause": (frozenset({CampaignStatus.RUNNING}), CampaignStatus.PAUSED),
    "resume": (frozenset({CampaignStatus.PAUSED}), CampaignStatus.RUNNING),
    "stop": (
        frozenset({CampaignStatus.DRAFT, CampaignStatus.RUNNING, CampaignStatus.PAUSED}),
        CampaignStatus.STOPPED,
    ),
    "complete": (
        frozenset({CampaignStatus.RUNNING, CampaignStatus.PAUSED}),
        CampaignStatus.COMPLETED,
    ),
}


# Callables, not fixed times: Django's system check fields.W161 warns about a fixed time
# default whenever the clock is within 10 s of it (every day at 09:00:00 and 17:00:00 UTC),
# and the warning lands on the stderr of every management command run then.
def default_send_window_start() -> dt.time:
    return dt.time(9, 0)


def default_send_window_end() -> dt.time:
    return dt.time(17, 0)


class Campaign(models.Model):
    venture = models.ForeignKey(Venture, on_delete=models.PROTECT, related_name="campaigns")
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=80, unique=True)
    objective = models.TextField(blank=True)
    status = models.CharField(
        max_length=12, choices=CampaignStatus.choices, default=CampaignStatus.DRAFT
    )
    kill_switch = models.BooleanField(default=False)
    kill_reason = models.CharField(max_length=500, blank=True)
    mode = models.CharField(max_length=8, choices=SendMode.choices, default=SendMode.PROOF)
    # Signed into the public lead-capture link with the campaign's id. Empty until the first
    # rotation (the link is then the signed id alone, as it always was); a new key makes every
    # earlier link stop working (ventures.services.campaign_capture_link_rotate).
    capture_key = models.CharField(max_length=32, blank=True, editable=False)

    daily_send_limit = models.PositiveIntegerField(default=50)
    send_days = models.CharField(max_length=7, default="12345", validators=[validate_send_days])
    send_window_start = models.TimeField(default=default_send_window_start)
    send_window_end = models.TimeField(default=default_send_window_end)
    timezone = models.CharField(
        max_length=64,
        blank=True,
        validators=[validate_timezone],
        help_text="Used for leads without a time zone of their own; empty = the venture's.",
    )
    warmup_start_limit = models.PositiveIntegerField(
        null=True, blank=True, help_text="Sends allowed on the first day; empty = no warm-up."
    )
    warmup_daily_increase = models.PositiveIntegerField(default=0)

    sender_name = models.CharField(max_length=200, blank=True)
    sender_email = models.EmailField(blank=True)
    reply_to = models.EmailField(blank=True)
    value_per_positive_reply = models.DecimalField(
        max_digits=12,
        decimal_places=2,
        default=Decimal("0"),
        validators=[MinValueValidator(Decimal("0"))],
        help_text="Estimated value of one positive reply (a lead's own value estimate wins), "
        "for the report's ROI proxy.",
    )
    # What the campaign costs, for the report's ROI proxy: what was paid whatever the volume
    # (data, tools, the operator's time) and what each email sent costs (ESP, mailboxes).
    fixed_cost = models.DecimalField(
        max_digits=12,
        decimal_places=2,
        default=Decimal("0"),
        validators=[MinValueValidator(Decimal("0"))],
        help_text="What the campaign costs whatever its volume: data, tools, time.",
    )
    cost_per_email = models.DecimalField(
        max_digits=10,
        decimal_places=4,
        default=Decimal("0"),
        validators=[MinValueValidator(Decimal("0"))],
        help_text="What each email sent costs: ESP, mailboxes.",
    )

    reply_sla_hours = models.PositiveIntegerField(
        "reply SLA (hours)",
        default=24,
        help_text="A positive reply not marked handled within this many hours is flagged and "
        "escalated to the venture's owner by email, once; 0 = no SLA.",
    )

    started_at = models.DateTimeField(null=True, blank=True, editable=False)
    finished_at = models.DateTimeField(null=True, blank=True, editable=False)
    # When the outreach app last read the campaign's health (auto-pause): feedback checks it
    # at most every AICMO_AUTOPAUSE_CHECK_SECONDS, and the tick catches up before it sends.
    health_checked_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["venture__name", "name"]
        permissions = [
            ("operate_campaign", "Can start, pause, resume and stop campaigns"),
            ("kill_campaign", "Can toggle campaign and venture kill switches"),
            ("go_live", "Can switch a campaign to live mode"),
        ]
        indexes = [
            # The tick looks for running campaigns on every pass.
            models.Index(fields=["status"], name="campaign_status_idx"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=CampaignStatus.values), name="campaign_status_valid"
            ),
            models.CheckConstraint(
                condition=Q(mode__in=SendMode.values), name="campaign_mode_valid"
            ),
            # The target of the leads' (campaign, venture) foreign key on PostgreSQL
            # (leads migration 0004): a lead's venture is always its campaign's.
            models.UniqueConstraint(fields=["id", "venture"], name="campaign_id_venture_key"),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        if self.send_window_start >= self.send_window_end:
            raise ValidationError({"send_window_end": "The window must end after it starts."})

    @property
    def tzinfo(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.timezone or self.venture.timezone or "UTC")

    @property
    def send_weekdays(self) -> list[str]:
        return [WEEKDAY_NAMES[int(d) - 1] for d in sorted(self.send_days)]

    @property
    def send_days_label(self) -> str:
        return send_days_label(self.send_days)

    def accepts_leads(self) -> bool:
        """May leads be added (a file, the capture form, the API)? Until it is stopped or
        completed: a draft is filled before it starts, a paused campaign keeps collecting."""
        return self.status in (CampaignStatus.DRAFT, CampaignStatus.RUNNING, CampaignStatus.PAUSED)

    def allowed_actions(self) -> list[str]:
        return [a for a, (sources, _) in CAMPAIGN_TRANSITIONS.items() if self.status in sources]

    def halt_reason(self, *, global_reason: str | None) -> str | None:
        """Why a kill switch stops this campaign, or None: the one rule for every reader.

        `global_reason` is `ventures.selectors.global_kill_reason()` (the setting or the admin
        toggle). The caller reads it once for a whole page or batch and passes it in, so a
        list of campaigns costs no query per row; it wins over the venture and campaign
        switches, which are read from this row and its venture.
        """
        if global_reason:
            return global_reason
        if self.venture.kill_switch:
            return f"venture kill switch ({self.venture.slug})"
        if self.kill_switch:
            return "campaign kill switch"
        return None

    def is_in_send_window(self, at: dt.datetime, tz: dt.tzinfo | None = None) -> bool:
        """Is `at` inside the send days and hours, read in `tz` (the lead's) or the campaign's?"""
        local = at.astimezone(tz or self.tzinfo)
        if str(local.isoweekday()) not in self.send_days:
            return False
        return self.send_window_start <= local.time().replace(tzinfo=None) < self.send_window_end

    def next_window_opening(self, tz: dt.tzinfo, now: dt.datetime) -> dt.datetime | None:
        """`now` if it is inside the send window read in `tz`, else the window's next opening
        (None if the campaign has no send day at all). The tick defers by it; the console's
        state badge shows it."""
        local = now.astimezone(tz)
        for offset in range(8):
            day = local.date() + dt.timedelta(days=offset)
            if str(day.isoweekday()) not in self.send_days:
                continue
            start = dt.datetime.combine(day, self.send_window_start, tzinfo=tz)
            end = dt.datetime.combine(day, self.send_window_end, tzinfo=tz)
            if local < start:
                return start
            if local < end:
                return now
        return None

    def warmup_day(self, on: dt.date | None = None) -> int | None:
        """Which day of its warm-up ramp `on` is (1 = the first), None without a ramp."""
        if self.warmup_start_limit is None or self.started_at is None:
            return None
        on = on or timezone.localdate(timezone=self.tzinfo)
        return max((on - self.started_at.astimezone(self.tzinfo).date()).days, 0) + 1

    def effective_daily_limit(self, on: dt.date | None = None) -> int:
        """The campaign's cap for the day `on`, after the warm-up ramp."""
        if self.warmup_start_limit is None or self.started_at is None:
            return self.daily_send_limit
        on = on or timezone.localdate(timezone=self.tzinfo)
        days = max((on - self.started_at.astimezone(self.tzinfo).date()).days, 0)
        ramp = self.warmup_start_limit + days * self.warmup_daily_increase
        return min(self.daily_send_limit, ramp)


class SystemControl(models.Model):
    """The single row behind the global kill switch toggle in the admin (pk is always 1)."""

    kill_switch = models.BooleanField(default=False)
    kill_reason = models.CharField(max_length=500, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "global kill switch"
        verbose_name_plural = "global kill switch"
        constraints = [models.CheckConstraint(condition=Q(pk=1), name="system_control_singleton")]

    def __str__(self) -> str:
        return "Global kill switch: " + ("ON" if self.kill_switch else "off")

    @classmethod
    def load(cls) -> SystemControl:
        obj, _ = cls.objects.get_or_create(pk=1)
        return obj


class WorkerHeartbeat(models.Model):
    """Last sign of life of each django-q2 cluster (written by a scheduled task)."""

    name = models.CharField(max_length=200, unique=True)
    last_seen = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.name} @ {self.last_seen:%Y-%m-%d %H:%M:%S}"


class AuditImmutableError(Exception):
    """Raised on any attempt to change or delete an audit event."""


class AuditEventQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise AuditImmutableError("Audit events are append-only.")

    def delete(self):
        raise AuditImmutableError("Audit events are append-only.")

    def for_entity(self, obj: models.Model) -> AuditEventQuerySet:
        return self.filter(entity_type=obj._meta.label_lower, entity_id=str(obj.pk))


class AuditEvent(models.Model):
    """One operator-visible change. Append-only: the ORM refuses updates and deletes, and a
    database trigger (SQLite and PostgreSQL) refuses them for raw SQL too.

    There are deliberately no foreign keys: an audit row outlives what it describes.
    """

    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    actor = models.CharField(max_length=200)
    action = models.CharField(max_length=64)
    entity_type = models.CharField(max_length=100)
    entity_id = models.CharField(max_length=64)
    entity_repr = models.CharField(max_length=300, blank=True)
    venture_id = models.BigIntegerField(null=True, blank=True)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    reason = models.TextField(blank=True)

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # The campaign page lists its own trail newest first.
            models.Index(
                fields=["entity_type", "entity_id", "-created_at"], name="audit_entity_idx"
            ),
            # Scoped audit lists filter by venture.
            models.Index(fields=["venture_id", "-created_at"], name="audit_venture_idx"),
            # The audit log's search by an entity's id (its prefix searches have expression
            # indexes of their own: migration 0013_audit_search_indexes).
            models.Index(fields=["entity_id"], name="audit_entity_id_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.actor} {self.action} {self.entity_repr}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise AuditImmutableError("Audit events are append-only.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AuditImmutableError("Audit events are append-only.")


class VentureApiToken(models.Model):
    """A revocable credential for a venture's JSON bulk lead API.

    Only a SHA-256 of the token is stored; the plaintext is shown once, at creation.
    """

    venture = models.ForeignKey(Venture, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=200, help_text="What uses it, e.g. 'website form'.")
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    prefix = models.CharField(max_length=12, editable=False, help_text="To recognise it in lists.")
    created_by = models.CharField(max_length=200, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        verbose_name = "venture API token"
        ordering = ["venture", "-created_at"]

    def __str__(self) -> str:
        state = "revoked" if self.revoked_at else "active"
        return f"{self.name} ({self.prefix}…, {state})"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None
