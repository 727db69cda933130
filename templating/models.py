"""Message templates, their immutable versions, and the log of every render.

A template is edited in place; every saved change that alters what it renders becomes a new
MessageTemplateVersion, and a sent message points at the exact version it was rendered from
(`templating.services.template_current_version`). Render logs refer to their recipient by a
plain `subject_ref` string, not a foreign key: templating does not know what a lead is.
"""

from __future__ import annotations

import hashlib
import json

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils import timezone

from templating.rendering import CHANNEL_RULES, required_variables, source_error
from ventures.models import Campaign, Venture


class TemplateChannel(models.TextChoices):
    """Channels a template can be written for. Email now; CHANNEL_RULES says what each needs."""

    EMAIL = "email", "Email"


CONTENT_FIELDS = (
    "channel",
    "subject",
    "body_text",
    "body_html",
    "narrative_angle",
    "variant_label",
)


def content_hash(values: dict[str, str]) -> str:
    payload = json.dumps({k: values[k] for k in CONTENT_FIELDS}, sort_keys=True)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class MessageTemplate(models.Model):
    venture = models.ForeignKey(Venture, on_delete=models.PROTECT, related_name="templates")
    campaign = models.ForeignKey(
        Campaign,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="templates",
        help_text="Empty = usable by every campaign of the venture.",
    )
    channel = models.CharField(
        max_length=16, choices=TemplateChannel.choices, default=TemplateChannel.EMAIL
    )
    name = models.CharField(max_length=200)
    slug = models.SlugField(
        max_length=80, help_text="Stable key for `campaign load`; unique within its scope."
    )
    subject = models.CharField(max_length=500, blank=True)
    body_text = models.TextField(
        "text body", blank=True, help_text="Plain text. Leave empty to derive it from the HTML."
    )
    body_html = models.TextField("HTML body", blank=True, help_text="Optional; autoescaped.")
    narrative_angle = models.CharField(
        max_length=200, blank=True, help_text="e.g. 'pain: manual reporting', 'social proof'."
    )
    variant_label = models.CharField(max_length=50, blank=True, help_text="e.g. A, B.")
    is_active = models.BooleanField("active", default=True)
    required_variables = models.JSONField(default=list, blank=True, editable=False)
    usage_count = models.PositiveIntegerField(default=0, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["venture", "campaign", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["venture", "slug"],
                condition=Q(campaign__isnull=True),
                name="uniq_template_slug_venture",
            ),
            models.UniqueConstraint(
                fields=["campaign", "slug"],
                condition=Q(campaign__isnull=False),
                name="uniq_template_slug_campaign",
            ),
            models.CheckConstraint(
                condition=Q(channel__in=TemplateChannel.values), name="template_channel_valid"
            ),
        ]
        indexes = [
            # Sending and the campaign check look up a campaign's active templates.
            models.Index(fields=["campaign", "is_active"], name="template_campaign_active_idx"),
        ]

    def __str__(self) -> str:
        scope = self.campaign.slug if self.campaign_id else f"{self.venture.slug} (venture-wide)"
        label = f" [{self.variant_label}]" if self.variant_label else ""
        return f"{self.name}{label} - {scope}"

    def save(self, *args, **kwargs):
        try:
            self.required_variables = required_variables(self.sources())
        except Exception:  # a source that does not parse requires nothing we can name
            self.required_variables = []
        if kwargs.get("update_fields") is not None:
            kwargs["update_fields"] = {*kwargs["update_fields"], "required_variables"}
        super().save(*args, **kwargs)

    def clean(self) -> None:
        from templating.hooks import context_schema

        errors: dict[str, str] = {}
        if self.campaign_id and self.venture_id and self.campaign.venture_id != self.venture_id:
            errors["campaign"] = "The campaign belongs to another venture."
        rules = CHANNEL_RULES.get(self.channel)
        if rules is not None:
            if rules.subject and not self.subject.strip():
                errors["subject"] = "An email needs a subject."
            if not rules.html and self.body_html:
                errors["body_html"] = f"{self.get_channel_display()} messages have no HTML body."
        if not self.body_text.strip() and not self.body_html.strip():
            errors["body_text"] = "Write a text body or an HTML body."
        schema = context_schema()
        for name, html in (("subject", False), ("body_text", False), ("body_html", True)):
            message = source_error(getattr(self, name), html=html, schema=schema)
            if message and name not in errors:
                errors[name] = message
        if errors:
            raise ValidationError(errors)

    def sources(self) -> list[str]:
        return [self.subject, self.body_text, self.body_html]

    def content(self) -> dict[str, str]:
        return {name: getattr(self, name) for name in CONTENT_FIELDS}

    def content_hash(self) -> str:
        return content_hash(self.content())


class VersionImmutableError(Exception):
    """Raised on any attempt to change or delete a template version."""


class VersionQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise VersionImmutableError("Template versions are immutable.")


class MessageTemplateVersion(models.Model):
    """What a template was at one point. Never changed once written; deleted only with its
    template (and outreach protects versions that messages point at)."""

    template = models.ForeignKey(MessageTemplate, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    channel = models.CharField(max_length=16, choices=TemplateChannel.choices)
    subject = models.CharField(max_length=500, blank=True)
    body_text = models.TextField(blank=True)
    body_html = models.TextField(blank=True)
    narrative_angle = models.CharField(max_length=200, blank=True)
    variant_label = models.CharField(max_length=50, blank=True)
    required_variables = models.JSONField(default=list, blank=True)
    content_hash = models.CharField(max_length=64)
    created_by = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    objects = VersionQuerySet.as_manager()

    class Meta:
        ordering = ["template", "-number"]
        constraints = [
            # Also the index for "latest version of a template".
            models.UniqueConstraint(fields=["template", "number"], name="uniq_template_version")
        ]

    def __str__(self) -> str:
        return f"{self.template.name} v{self.number}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise VersionImmutableError("Template versions are immutable.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise VersionImmutableError(
            "Template versions are deleted only together with their template."
        )

    def content(self) -> dict[str, str]:
        return {name: getattr(self, name) for name in CONTENT_FIELDS}


class RenderOutcome(models.TextChoices):
    OK = "ok", "Rendered"
    BLOCKED = "blocked", "Blocked by a guardrail"
    ERROR = "error", "Render failed"


class RenderPurpose(models.TextChoices):
    SEND = "send", "Send"
    PREVIEW = "preview", "Preview"
    CHECK = "check", "Campaign check"
    TEST = "test", "Test email"


class RenderLog(models.Model):
    """One render of a template version for one recipient. Holds no message text (personal
    data); purged after AICMO_RENDER_LOG_RETENTION_DAYS and when the recipient is erased."""

    template_version = models.ForeignKey(
        MessageTemplateVersion, on_delete=models.CASCADE, related_name="render_logs"
    )
    subject_ref = models.CharField(
        max_length=100, help_text="Who it was rendered for, e.g. lead:42 or sample."
    )
    purpose = models.CharField(max_length=8, choices=RenderPurpose.choices)
    outcome = models.CharField(max_length=8, choices=RenderOutcome.choices)
    reasons = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # Erasure deletes a recipient's rows; the admin looks a recipient up.
            models.Index(fields=["subject_ref"], name="renderlog_subject_idx"),
            # The retention purge deletes by age.
            models.Index(fields=["created_at"], name="renderlog_created_idx"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(outcome__in=RenderOutcome.values), name="renderlog_outcome_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.template_version} for {self.subject_ref}: {self.outcome}"
