"""Writes and renders of templates. The admin, `campaign load`, outreach and tasks call these."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.mail import EmailMultiAlternatives, get_connection
from django.db import transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone
from django.utils.html import escape

from templating.email_backend import BackendInfo, email_backend_info
from templating.guardrails import REASON_DESCRIPTIONS, Compliance, Reason
from templating.hooks import Recipient, recipient_source
from templating.models import (
    MessageTemplate,
    MessageTemplateVersion,
    RenderLog,
    RenderOutcome,
    RenderPurpose,
)
from templating.rendering import RenderResult, render_message
from ventures.models import AuditEvent, Campaign, CampaignStatus, SendMode, Venture
from ventures.services import Actor, DomainError, actor_label, audit_changes, audit_record, snapshot
from ventures.sql import rows_insert, rows_update

DEFAULT_RENDER_LOG_RETENTION_DAYS = 90
CAMPAIGN_CHECK_SAMPLE = 500  # recipients per campaign check, the first ones in id order
# After a save, the template is checked on each running campaign's first leads (not counted),
# so that the save stays quick however big the campaigns are (docs/BENCHMARKS.md).
SAVE_CHECK_SAMPLE = 200
SAVE_CHECK_CAMPAIGNS = 5
TEST_EMAIL_LIMIT = 5  # test emails per operator ...
TEST_EMAIL_WINDOW = dt.timedelta(minutes=10)  # ... in this window


# --- Saving and versioning ------------------------------------------------------------------
def template_save(*, template: MessageTemplate, actor: Actor, reason: str = "") -> MessageTemplate:
    """Validate, save and audit a template; a change of content adds a new version.

    Raises ValidationError (field -> message, with the line of a syntax error).
    """
    template.full_clean()
    with transaction.atomic():
        before = None
        if template.pk is not None:
            stored = (
                MessageTemplate.objects.order_by()
                .select_for_update(of=("self",))
                .filter(pk=template.pk)
                .first()
            )
            before = snapshot(stored) if stored is not None else None
        template.save()
        audit_changes(
            actor=actor,
            entity=template,
            before=before,
            action="template.create" if before is None else "template.update",
            reason=reason,
        )
        template_current_version(template, actor=actor)
    return template


def template_current_version(
    template: MessageTemplate, *, actor: Actor = "system"
) -> MessageTemplateVersion:
    """The version a message rendered now must point at: the latest one, or a new one when
    the template's content no longer matches it (e.g. it was saved outside template_save)."""
    with transaction.atomic():
        locked = (
            MessageTemplate.objects.order_by().select_for_update(of=("self",)).get(pk=template.pk)
        )
        latest = locked.versions.order_by("-number").first()
        if latest is not None and latest.content_hash == locked.content_hash():
            return latest
        return MessageTemplateVersion.objects.create(
            template=locked,
            number=(latest.number if latest else 0) + 1,
            required_variables=locked.required_variables,
            content_hash=locked.content_hash(),
            created_by=actor_label(actor),
            **locked.content(),
        )


def template_record_use(*, template: MessageTemplate, at: dt.datetime | None = None) -> None:
    """Count one sent message."""
    templates_record_use(uses={template.pk: 1}, at=at or timezone.now())


def templates_record_use(*, uses: Mapping[int, int], at: dt.datetime) -> None:
    """Count sent messages per template (template id -> how many), in one statement: the
    outbox calls this once for each batch it hands over."""
    rows_update(
        MessageTemplate,
        [(pk, n, at) for pk, n in sorted(uses.items())],
        fields=["usage_count", "last_used_at"],
        assign={"usage_count": "t.usage_count + v.usage_count"},
    )


def templates_for_campaign(campaign: Campaign) -> QuerySet[MessageTemplate]:
    """Active templates a campaign may use: its own and its venture's venture-wide ones."""
    return (
        MessageTemplate.objects.filter(venture_id=campaign.venture_id, is_active=True)
        .filter(Q(campaign=campaign) | Q(campaign__isnull=True))
        .select_related("venture", "campaign")
        .order_by(F("campaign_id").asc(nulls_last=True), "name", "pk")
    )


# --- Rendering ------------------------------------------------------------------------------
def compliance_for(*, venture: Venture, recipient: Recipient) -> Compliance:
    return Compliance(
        unsubscribe_url=recipient.unsubscribe_url, postal_address=venture.postal_address
    )


def is_live(campaign: Campaign | None) -> bool:
    """Compliance items block when the campaign sends live email."""
    return campaign is not None and campaign.mode == SendMode.LIVE


def version_render(
    *,
    version: MessageTemplateVersion,
    recipient: Recipient,
    venture: Venture,
    live: bool,
    purpose: str = RenderPurpose.SEND,
    log: bool = True,
) -> RenderResult:
    """Render one version for one recipient, run the guardrails and (by default) log it."""
    result = render_message(
        subject=version.subject,
        body_text=version.body_text,
        body_html=version.body_html,
        context=recipient.context,
        seed=recipient.seed,
        channel=version.channel,
        compliance=compliance_for(venture=venture, recipient=recipient),
        live=live,
    )
    if log:
        render_log(version, recipient.ref, purpose, result).save()
    return result


def render_log(
    version: MessageTemplateVersion, ref: str, purpose: str, result: RenderResult
) -> RenderLog:
    """The (unsaved) log row of one render: callers that render many save them in bulk."""
    return RenderLog(**_log_fields(version, ref, purpose, result))


# The columns of `render_log_row`, in its order.
RENDER_LOG_FIELDS = (
    "template_version_id", "subject_ref", "purpose", "outcome", "reasons", "created_at"
)  # fmt: skip


def render_log_row(
    version: MessageTemplateVersion, ref: str, purpose: str, result: RenderResult
) -> tuple:
    """The log row of one render as a tuple of RENDER_LOG_FIELDS (its time: now), for
    `render_logs_save`: what `render_log` holds, without a model instance per render."""
    fields = _log_fields(version, ref, purpose, result)
    return (
        version.pk, fields["subject_ref"], fields["purpose"], fields["outcome"],
        fields["reasons"], timezone.now(),
    )  # fmt: skip


def render_logs_save(rows: list[tuple]) -> None:
    """Store the rows of `render_log_row` in one statement."""
    rows_insert(RenderLog, rows, fields=RENDER_LOG_FIELDS)


def _log_fields(
    version: MessageTemplateVersion, ref: str, purpose: str, result: RenderResult
) -> dict:
    if result.ok:
        outcome = RenderOutcome.OK
    elif any(r.code in _ERROR_CODES for r in result.reasons):
        outcome = RenderOutcome.ERROR
    else:
        outcome = RenderOutcome.BLOCKED
    return {
        "template_version": version,
        "subject_ref": ref[:100],
        "purpose": purpose,
        "outcome": outcome,
        "reasons": [r.as_dict() for r in result.blocking_reasons],
    }


_ERROR_CODES = frozenset(
    {
        "syntax_error",
        "rule_violation",
        "undefined_variable",
        "security_violation",
        "resource_limit",
        "render_error",
    }
)


# --- Campaign-wide check --------------------------------------------------------------------
PART_LABELS = {"subject": "subject", "text": "body text", "html": "body HTML"}
CHECK_EXAMPLES = 3  # leads named per group of the check; the rest are counted
# Reasons whose message carries a per-lead figure (a subject's length, an exception's text):
# grouped under their description, or every lead would be a group of its own.
_GROUPED_BY_DESCRIPTION = frozenset({"subject_too_long", "render_error"})
_UNDEFINED = re.compile(r"^'([^']+)' is undefined")


@dataclass
class CheckRow:
    template: MessageTemplate
    version: MessageTemplateVersion
    recipient_ref: str
    recipient_label: str
    reasons: list[Reason]


@dataclass
class CheckGroup:
    """Every lead one template blocks for one reason: counted, with the parts it is in and
    the first few leads as examples."""

    template: MessageTemplate
    version: MessageTemplateVersion
    code: str
    message: str
    parts: list[str] = field(default_factory=list)  # "subject", "text", "html", in that order
    examples: list[tuple[str, str]] = field(default_factory=list)  # (ref, label)
    count: int = 0

    @property
    def part_labels(self) -> list[str]:
        return [PART_LABELS[p] for p in PART_LABELS if p in self.parts]

    @property
    def more(self) -> int:
        return self.count - len(self.examples)

    @property
    def phrase(self) -> str:
        """The reason in a few words: "missing variable `company_size`"."""
        if self.code == "undefined_variable" and (m := _UNDEFINED.match(self.message)):
            return f"missing variable `{m.group(1)}`"
        return self.message

    def as_dict(self) -> dict:
        return {
            "template": self.template.name,
            "version": self.version.number,
            "code": self.code,
            "message": self.message,
            "parts": self.parts,
            "leads": self.count,
            "examples": [ref for ref, _ in self.examples],
        }


def check_groups(rows: Iterable[CheckRow]) -> list[CheckGroup]:
    """The blocked renders grouped by template and reason, the most leads first."""
    groups: dict[tuple, CheckGroup] = {}
    seen: dict[tuple, set[str]] = {}
    for row in rows:
        for reason in row.reasons:
            if reason.code in _GROUPED_BY_DESCRIPTION:
                message = REASON_DESCRIPTIONS.get(reason.code, reason.message)
            else:  # the HTML part's checks say "... left in the HTML": the part column says it
                message = reason.message.removesuffix(" in the HTML")
            key = (row.version.pk, reason.code, message)
            group = groups.get(key)
            if group is None:
                group = groups[key] = CheckGroup(row.template, row.version, reason.code, message)
                seen[key] = set()
            if reason.part and reason.part not in group.parts:
                group.parts.append(reason.part)
            if row.recipient_ref not in seen[key]:
                seen[key].add(row.recipient_ref)
                group.count += 1
                if len(group.examples) < CHECK_EXAMPLES:
                    group.examples.append((row.recipient_ref, row.recipient_label))
    return sorted(groups.values(), key=lambda g: (-g.count, g.template.name, g.code, g.message))


@dataclass
class CampaignCheck:
    campaign: Campaign
    versions: list[MessageTemplateVersion] = field(default_factory=list)
    recipients_checked: int = 0
    recipients_total: int | None = 0  # None: more than were checked, not counted
    renders: int = 0
    blocked: list[CheckRow] = field(default_factory=list)
    # The first render that passed, per template slug: what the demo and reports can show.
    examples: dict[str, RenderResult] = field(default_factory=dict)

    @property
    def sampled(self) -> bool:
        return self.recipients_total is None or self.recipients_checked < self.recipients_total

    @property
    def blocked_recipients(self) -> int:
        return len({row.recipient_ref for row in self.blocked})

    @cached_property
    def groups(self) -> list[CheckGroup]:
        return check_groups(self.blocked)

    def summary(self) -> str:
        checked, total = self.recipients_checked, self.recipients_total
        if total is None:
            scope = f"the first {checked} recipients by id (there are more)"
        else:
            scope = f"{checked} of {total} recipients"
            if self.sampled:
                scope += " (the first ones by id)"
        return (
            f"{len(self.versions)} active template(s) x {scope}: {self.renders} renders, "
            f"{len(self.blocked)} blocked ({self.blocked_recipients} recipient(s) affected)."
        )

    def as_dict(self) -> dict:
        return {
            "campaign": self.campaign.slug,
            "templates": [
                {"id": v.template_id, "name": v.template.name, "version": v.number}
                for v in self.versions
            ],
            "recipients_checked": self.recipients_checked,
            "recipients_total": self.recipients_total,
            "renders": self.renders,
            "blocked": [
                {
                    "template": row.template.name,
                    "version": row.version.number,
                    "recipient": row.recipient_ref,
                    "reasons": [r.as_dict() for r in row.reasons],
                }
                for row in self.blocked
            ],
            "groups": [g.as_dict() for g in self.groups],
        }


def campaign_templates_check(
    *,
    campaign: Campaign,
    limit: int = CAMPAIGN_CHECK_SAMPLE,
    actor: Actor = "system",
    templates: list[MessageTemplate] | None = None,
    log: bool = True,
    count: bool = True,
) -> CampaignCheck:
    """Render every active template of the campaign (or only `templates`) for its recipients
    (the first `limit` by id) and list every blocked render with its reasons. Each render is
    logged (purpose=check) unless `log` is False. Without `count`, the recipients are not
    counted (on a big campaign the count costs more than the renders): one more than `limit`
    is read to know whether there are more, and `recipients_total` is then None.
    """
    source = recipient_source()
    if templates is None:
        templates = list(templates_for_campaign(campaign))
    check = CampaignCheck(
        campaign=campaign,
        versions=[template_current_version(t, actor=actor) for t in templates],
        recipients_total=source.count(campaign=campaign) if count else 0,
    )
    live = is_live(campaign)
    logs: list[RenderLog] = []
    for recipient in source.iterate(campaign=campaign, limit=limit if count else limit + 1):
        if check.recipients_checked == limit:  # only without `count`: there are more
            check.recipients_total = None
            break
        check.recipients_checked += 1
        for template, version in zip(templates, check.versions, strict=True):
            result = version_render(
                version=version, recipient=recipient, venture=campaign.venture, live=live, log=False
            )
            check.renders += 1
            if log:
                logs.append(render_log(version, recipient.ref, RenderPurpose.CHECK, result))
            if result.ok:
                check.examples.setdefault(template.slug, result)
            else:
                check.blocked.append(
                    CheckRow(
                        template, version, recipient.ref, recipient.label, result.blocking_reasons
                    )
                )
    RenderLog.objects.bulk_create(logs, batch_size=500)
    if not count and check.recipients_total is not None:
        check.recipients_total = check.recipients_checked
    return check


def template_running_checks(
    *,
    template: MessageTemplate,
    campaigns: QuerySet[Campaign] | None = None,
    limit: int | None = None,
    actor: Actor = "system",
) -> tuple[list[CampaignCheck], int]:
    """What a just-saved template does to the running campaigns that use it (its campaign, or
    every running campaign of its venture for a venture-wide one; within `campaigns` if
    given): the campaign check for this template alone, on each campaign's first `limit`
    (default SAVE_CHECK_SAMPLE) active leads, uncounted, and at most SAVE_CHECK_CAMPAIGNS
    campaigns, not logged (it is advisory; the campaign check it points to logs). Returns
    the checks that found a block, and how many running campaigns went unchecked past the
    bound."""
    if not template.is_active:
        return [], 0
    running = (campaigns if campaigns is not None else Campaign.objects.all()).filter(
        venture_id=template.venture_id, status=CampaignStatus.RUNNING
    )
    if template.campaign_id:
        running = running.filter(pk=template.campaign_id)
    chosen = list(running.select_related("venture").order_by("pk")[: SAVE_CHECK_CAMPAIGNS + 1])
    unchecked = (
        max(running.count() - SAVE_CHECK_CAMPAIGNS, 0) if len(chosen) > SAVE_CHECK_CAMPAIGNS else 0
    )
    checks = [
        campaign_templates_check(
            campaign=campaign,
            limit=limit or SAVE_CHECK_SAMPLE,
            actor=actor,
            templates=[template],
            log=False,
            count=False,
        )
        for campaign in chosen[:SAVE_CHECK_CAMPAIGNS]
    ]
    return [c for c in checks if c.blocked], unchecked


# --- Test email -----------------------------------------------------------------------------
@dataclass(frozen=True)
class SentTest:
    """A test email the backend took: what was rendered, the backend, and what it did."""

    result: RenderResult
    backend: BackendInfo
    outcome: str  # "printed to the server's console, not delivered", "handed to host:587 ..."


def template_send_test(
    *,
    template: MessageTemplate,
    recipient: Recipient,
    campaign: Campaign | None,
    user,
    reason: str = "",
) -> SentTest:
    """Render for `recipient` and email the result to the operator's own address, never to the
    recipient, through the default email backend; says what that backend did with it.
    Limited to TEST_EMAIL_LIMIT per operator per TEST_EMAIL_WINDOW; refused when the render
    is blocked. Raises DomainError with the reason."""
    to = (getattr(user, "email", "") or "").strip()
    if not to:
        raise DomainError("Your user account has no email address: add one to receive tests.")
    since = timezone.now() - TEST_EMAIL_WINDOW
    sent = AuditEvent.objects.filter(
        action="template.send_test", actor=actor_label(user), created_at__gte=since
    ).count()
    if sent >= TEST_EMAIL_LIMIT:
        minutes = int(TEST_EMAIL_WINDOW.total_seconds() // 60)
        raise DomainError(
            f"You sent {sent} test emails in the last {minutes} minutes; the limit is "
            f"{TEST_EMAIL_LIMIT}. Try again later."
        )
    version = template_current_version(template, actor=user)
    result = version_render(
        version=version,
        recipient=recipient,
        venture=template.venture,
        live=is_live(campaign),
        purpose=RenderPurpose.TEST,
    )
    if not result.ok:
        codes = ", ".join(dict.fromkeys(result.reason_codes()))
        raise DomainError(f"Not sent: the render is blocked ({codes}). See the preview.")
    backend = email_backend_info()
    outcome = _send_test_email(
        template=template, version=version, recipient=recipient, to=to, result=result,
        backend=backend,
    )  # fmt: skip
    audit_record(
        actor=user,
        action="template.send_test",
        entity=template,
        after={
            "version": version.number,
            "recipient": recipient.ref,
            "to": "operator",
            "backend": backend.kind,
        },
        reason=reason,
    )
    return SentTest(result, backend, outcome)


def _send_test_email(
    *,
    template: MessageTemplate,
    version: MessageTemplateVersion,
    recipient: Recipient,
    to: str,
    result: RenderResult,
    backend: BackendInfo,
) -> str:
    banner = (
        f"[TEST] Template '{template.name}' v{version.number} rendered for {recipient.label}. "
        "This copy went only to you; the recipient was not contacted.\n\n"
    )
    campaign = template.campaign
    from_email = (campaign.sender_email if campaign else "") or settings.DEFAULT_FROM_EMAIL
    message = EmailMultiAlternatives(
        subject=f"[TEST] {result.subject}",
        body=banner + result.text,
        from_email=from_email,
        to=[to],
        headers={"X-AICMO-Test": "1", "Auto-Submitted": "auto-generated"},
    )
    if result.html:
        message.attach_alternative(
            f"<p><strong>{escape(banner.strip())}</strong></p>" + result.html, "text/html"
        )
    try:
        with get_connection(fail_silently=False) as connection:
            message.connection = connection
            message.send(fail_silently=False)
    except Exception as exc:  # SMTP or ESP failure: tell the operator, never a traceback
        raise DomainError(
            f"The email backend ({backend.label}) refused the test email: {exc}"
        ) from exc
    return backend.outcome(connection=connection, message=message)


# --- Retention ------------------------------------------------------------------------------
def render_log_retention_days() -> int:
    """AICMO_RENDER_LOG_RETENTION_DAYS (default 90), read when used, never at import."""
    raw = getattr(settings, "AICMO_RENDER_LOG_RETENTION_DAYS", DEFAULT_RENDER_LOG_RETENTION_DAYS)
    try:
        days = int(raw)
    except (TypeError, ValueError):
        days = 0
    if days < 1:
        raise ImproperlyConfigured(
            f"AICMO_RENDER_LOG_RETENTION_DAYS={raw!r} must be a whole number of days >= 1."
        )
    return days


def render_logs_purge(*, now: dt.datetime | None = None) -> int:
    """Delete render logs older than the retention; returns how many went."""
    cutoff = (now or timezone.now()) - dt.timedelta(days=render_log_retention_days())
    deleted, _ = RenderLog.objects.filter(created_at__lt=cutoff).delete()
    return deleted


def render_logs_erase_subject(*, subject_refs: Iterable[str]) -> int:
    """Delete every render log of these recipients (GDPR erasure)."""
    deleted, _ = RenderLog.objects.filter(subject_ref__in=list(subject_refs)).delete()
    return deleted
