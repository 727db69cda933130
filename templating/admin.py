"""The operator console for templates: edit (validated, versioned, audited), live preview,
"send me a test", and the campaign-wide check.

Recipients (a campaign's leads, or the sample lead) come from the RecipientSource that outreach
registers (templating.hooks), so this module never imports leads. Scoping: every queryset, form
choice and view goes through ventures.selectors; another venture's template, campaign or lead
is a 404. HTML is built with format_html only; a rendered HTML body is shown in a sandboxed
iframe (no scripts, no same-origin).
"""

from __future__ import annotations

from urllib.parse import urlencode, urlsplit

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.utils import quote
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.defaultfilters import pluralize
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from templating import services
from templating.email_backend import email_backend_info
from templating.forms import CampaignCheckForm, PreviewForm
from templating.guardrails import REASON_DESCRIPTIONS, SUBJECT_MAX_CHARS, Reason
from templating.hooks import Recipient, context_schema, recipient_source
from templating.models import (
    CONTENT_FIELDS,
    MessageTemplate,
    MessageTemplateVersion,
    RenderLog,
    RenderPurpose,
)
from templating.rendering import RenderResult
from ventures.admin_toolkit import (
    CampaignFilter,
    Operation,
    ReadOnlyAdmin,
    ReadOnlyMixin,
    ScopedAdmin,
    VentureFilter,
    VentureObjectFilter,
    confirmation,
)
from ventures.models import Campaign
from ventures.selectors import campaigns_visible_to
from ventures.services import DomainError

RECIPIENT_CHOICES_LIMIT = 200  # leads offered in the preview picker (first ones by id)
CHECK_GROUPS_SHOWN = 100  # groups (template x reason) listed on the check page
SAVE_WARNING_REASONS = 3  # reasons named in the warning after a save
NOT_DELIVERED_HINT = (
    "To receive test emails, set EMAIL_URL to an SMTP server or an ESP (README: "
    "A real mail provider)."
)
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


def _origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) of a URL; the loopback names are one host (this machine)."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    try:
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    except ValueError:  # a port that is no number: compare it as it is
        port = None
    return parts.scheme, "loopback" if host in LOOPBACK_HOSTS else host, port


def site_url_warning(request) -> str:
    """A warning when the unsubscribe links (AICMO_SITE_URL) point elsewhere than the site the
    operator is using; links are never rewritten, so recipients reach AICMO_SITE_URL."""
    site = settings.AICMO_SITE_URL
    using = f"{request.scheme}://{request.get_host()}"
    if _origin(site) == _origin(using):
        return ""
    return (
        f"Unsubscribe links point to {site}, but you are using {using}: recipients will "
        "reach the former. Set AICMO_SITE_URL to the address recipients should reach."
    )


def highlight(text: str, reasons: list[Reason]):
    """`text` escaped, with every reason's span wrapped in <mark title="code: message">."""
    spans = sorted((r.span, r) for r in reasons if r.span and r.span[1] > r.span[0])
    pieces: list[tuple[str, str]] = []  # (kind, value): kind "" = plain, else mark title
    pos = 0
    for (start, end), reason in spans:
        start = max(start, pos)
        if start >= end:
            continue
        pieces.append(("", text[pos:start]))
        pieces.append((f"{reason.code}: {reason.message}", text[start:end]))
        pos = end
    pieces.append(("", text[pos:]))
    return format_html_join(
        "",
        "{}",
        (
            (format_html('<mark class="aicmo-reason" title="{}">{}</mark>', title, value),)
            if title
            else (value,)
            for title, value in pieces
        ),
    )


class TemplateFilter(VentureObjectFilter):
    title = "template"
    parameter_name = "template"
    field = "template_id"
    model = MessageTemplate
    order = ("venture__name", "name")


class RenderTemplateFilter(TemplateFilter):
    field = "template_version__template_id"


class TemplateVersionInline(ReadOnlyMixin, admin.TabularInline):
    model = MessageTemplateVersion
    fields = ("number", "created_at", "created_by", "subject", "variant_label", "content_hash")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True
    ordering = ("-number",)
    verbose_name_plural = "versions (immutable; a sent message points at one)"


@admin.register(MessageTemplate)
class MessageTemplateAdmin(ScopedAdmin):
    list_display = (
        "name",
        "variant_label",
        "narrative_angle",
        "scope",
        "channel",
        "is_active",
        "usage_count",
        "last_used_at",
    )
    list_filter = (VentureFilter, CampaignFilter, "channel", "is_active")
    list_select_related = ("venture", "campaign")
    search_fields = ("name", "slug", "narrative_angle", "variant_label")
    prepopulated_fields = {"slug": ("name",)}
    readonly_fields = ("variables", "usage_count", "last_used_at", "available_variables")
    inlines = (TemplateVersionInline,)
    change_form_template = "admin/templating/messagetemplate/change_form.html"
    change_list_template = "admin/templating/messagetemplate/change_list.html"
    fieldsets = (
        (None, {"fields": ("venture", "campaign", "channel", "name", "slug", "is_active")}),
        ("Narrative", {"fields": ("narrative_angle", "variant_label")}),
        (
            "Message",
            {
                "fields": ("subject", "body_text", "body_html", "variables"),
                "description": (
                    'Jinja2 syntax: {{ first_name | default("there") }}. A variable without a '
                    "value blocks the send unless it has a default. Subjects over "
                    f"{SUBJECT_MAX_CHARS} characters are blocked."
                ),
            },
        ),
        ("Variables you can use", {"fields": ("available_variables",), "classes": ("collapse",)}),
        ("Use", {"fields": ("usage_count", "last_used_at")}),
    )

    @admin.display(description="scope", ordering="campaign__name")
    def scope(self, obj: MessageTemplate) -> str:
        return obj.campaign.name if obj.campaign_id else f"{obj.venture.name} (venture-wide)"

    @admin.display(description="required variables")
    def variables(self, obj: MessageTemplate) -> str:
        return ", ".join(obj.required_variables) or "-"

    @admin.display(description="available variables")
    def available_variables(self, obj: MessageTemplate | None = None) -> str:
        schema = context_schema()
        if schema is None:
            return "-"
        return format_html(
            "<dl>{}</dl>",
            format_html_join(
                "", "<dt><code>{}</code></dt><dd>{}</dd>", schema.descriptions.items()
            ),
        )

    def save_model(self, request, obj, form, change):
        services.template_save(template=obj, actor=request.user)

    def response_add(self, request, obj, post_url_continue=None):
        response = super().response_add(request, obj, post_url_continue)
        self._warn_running_campaigns(request, obj)
        return response

    def response_change(self, request, obj):
        response = super().response_change(request, obj)
        self._warn_running_campaigns(request, obj)
        return response

    def _warn_running_campaigns(self, request, template: MessageTemplate) -> None:
        """After a save: which leads of running campaigns the template now blocks, and why."""
        checks, unchecked = services.template_running_checks(
            template=template, campaigns=campaigns_visible_to(request.user), actor=request.user
        )
        for check in checks:
            messages.warning(request, _blocks_warning(check))
        if unchecked:
            messages.warning(
                request,
                f"{unchecked} more running campaign(s) use this template and were not checked: "
                "run the campaign check on them.",
            )

    def has_delete_permission(self, request, obj=None):
        # Templates are deactivated, never deleted: their versions are what sent messages and
        # render logs point at ("nothing is lost").
        return False

    # --- Extra views ----------------------------------------------------------------------
    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path(
                "<path:object_id>/preview/",
                view(self.preview_view),
                name="templating_messagetemplate_preview",
            ),
            path(
                "<path:object_id>/send-test/",
                view(self.send_test_view),
                name="templating_messagetemplate_send_test",
            ),
            path(
                "campaign-check/",
                view(self.campaign_check_view),
                name="templating_messagetemplate_campaign_check",
            ),
            *super().get_urls(),
        ]

    def _template_or_404(self, request, object_id) -> MessageTemplate:
        if not self.has_view_permission(request):
            raise PermissionDenied
        obj = self.get_object(request, object_id)  # 404 outside the user's ventures
        return obj

    def _preview_form(self, request, template: MessageTemplate, data, initial=None) -> PreviewForm:
        campaigns = campaigns_visible_to(request.user).filter(venture=template.venture_id)
        if template.campaign_id:
            campaigns = campaigns.filter(pk=template.campaign_id)
        return PreviewForm(data, initial=initial, campaigns=campaigns.select_related("venture"))

    def _recipient(self, form: PreviewForm) -> tuple[Campaign, Recipient]:
        """The chosen campaign and recipient; the recipient must belong to that campaign."""
        campaign = form.cleaned_data["campaign"]
        ref = form.cleaned_data.get("recipient") or "sample"
        source = recipient_source()
        if ref == "sample":
            return campaign, source.sample(campaign=campaign)
        recipient = source.get(campaign=campaign, ref=ref)
        if recipient is None:
            raise Http404("No such recipient in this campaign.")
        return campaign, recipient

    def preview_view(self, request, object_id):
        template = self._template_or_404(request, object_id)
        campaign, recipient, result = None, None, None
        if "campaign" in request.GET:
            form = self._preview_form(request, template, request.GET)
            if form.is_valid():
                campaign, recipient = self._recipient(form)
        else:  # first visit: the first campaign in scope, with the sample lead
            form = self._preview_form(request, template, None)
            campaign = form.fields["campaign"].queryset.first()
            if campaign is not None:
                form = self._preview_form(
                    request, template, None, initial={"campaign": campaign, "recipient": "sample"}
                )
                recipient = recipient_source().sample(campaign=campaign)
        if recipient is not None:
            result = services.version_render(
                version=services.template_current_version(template, actor=request.user),
                recipient=recipient,
                venture=template.venture,
                live=services.is_live(campaign),
                purpose=RenderPurpose.PREVIEW,
            )
        if campaign is not None:
            # The picker lists the campaign's first leads by id, or those whose address starts
            # with what the operator typed in "Find a lead" (any lead of a big campaign).
            search = form.cleaned_data.get("find", "") if form.is_bound and form.is_valid() else ""
            choices = recipient_source().choices(
                campaign=campaign, limit=RECIPIENT_CHOICES_LIMIT, search=search
            )
            if recipient is not None and not recipient.is_sample:
                # The lead being shown stays selectable whatever the list holds.
                shown = (recipient.ref, recipient.label)
                choices = [shown, *(c for c in choices if c[0] != recipient.ref)]
            form.set_recipient_choices(choices)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Preview: {template.name}",
            "template_obj": template,
            "form": form,
            "campaign": campaign,
            "recipient": recipient,
            "result": result,
            "live": services.is_live(campaign),
            "highlighted": _highlighted(result) if result else None,
            "can_send_test": self.has_change_permission(request, template),
            "test_to": request.user.email,
            "send_test_url": reverse(
                "admin:templating_messagetemplate_send_test", args=[quote(template.pk)]
            ),
            "reason_descriptions": REASON_DESCRIPTIONS,
            "choices_limit": RECIPIENT_CHOICES_LIMIT,
            "backend": email_backend_info(),
            "not_delivered_hint": NOT_DELIVERED_HINT,
            "site_url": settings.AICMO_SITE_URL,
            "site_url_warning": site_url_warning(request),
        }
        return TemplateResponse(request, "admin/templating/messagetemplate/preview.html", context)

    def send_test_view(self, request, object_id):
        """The preview's "Send me a test" posts here: a confirm page naming the template, the
        lead it is rendered for, the address it goes to and the backend in force; the email
        goes only once that page comes back confirmed."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        template = self._template_or_404(request, object_id)
        if not self.has_change_permission(request, template):
            raise PermissionDenied
        form = self._preview_form(request, template, request.POST)
        query = urlencode({k: request.POST.get(k, "") for k in ("campaign", "recipient")})
        url = reverse("admin:templating_messagetemplate_preview", args=[quote(template.pk)])
        preview_url = f"{url}?{query}"
        if not form.is_valid():
            messages.error(request, "Choose a campaign and a recipient first.")
            return HttpResponseRedirect(preview_url)
        campaign, recipient = self._recipient(form)
        data, page = confirmation(
            self,
            request,
            [template],
            SEND_TEST,
            label=lambda t: f"{t.name}, rendered for {recipient.label} ({campaign.name})",
            notes=lambda shown: _send_test_notes(request),
            hidden=[(k, request.POST.get(k, "")) for k in ("campaign", "recipient")],
            cancel_url=preview_url,
        )
        if page is not None:
            return page
        try:
            sent = services.template_send_test(
                template=template,
                recipient=recipient,
                campaign=campaign,
                user=request.user,
                reason=data["reason"],
            )
        except DomainError as exc:
            messages.error(request, str(exc))
        else:
            said = f"Test email to {request.user.email} (only you, labelled TEST): {sent.outcome}."
            if sent.backend.delivers:
                messages.success(request, said)
            else:
                messages.warning(request, f"{said} {NOT_DELIVERED_HINT}")
        return HttpResponseRedirect(preview_url)

    def campaign_check_view(self, request):
        if not self.has_view_permission(request):
            raise PermissionDenied
        campaigns = campaigns_visible_to(request.user).select_related("venture")
        data = request.POST if request.method == "POST" else (request.GET or None)
        form = CampaignCheckForm(data, campaigns=campaigns)
        check = None
        if request.method == "POST" and form.is_valid():
            campaign = get_object_or_404(campaigns, pk=form.cleaned_data["campaign"].pk)
            check = services.campaign_templates_check(
                campaign=campaign, limit=form.cleaned_data["limit"], actor=request.user
            )
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Campaign template check",
            "form": form,
            "check": check,
            "groups": check.groups[:CHECK_GROUPS_SHOWN] if check else [],
            "groups_hidden": max(len(check.groups) - CHECK_GROUPS_SHOWN, 0) if check else 0,
        }
        return TemplateResponse(
            request, "admin/templating/messagetemplate/campaign_check.html", context
        )


SEND_TEST = Operation(
    name="send-test",
    label="Send me a test",
    permission="change",
    apply=lambda template, user, reason: True,
    title="Send me a test: are you sure?",
    submit="Yes, send me the test",
    warning="The email goes to your own address only, labelled TEST; never to the lead.",
)


def _send_test_notes(request) -> list[str]:
    """Where the test goes and through which backend (and whether that delivers at all)."""
    backend = email_backend_info()
    to = request.user.email or "(no address on your account: the test will be refused)"
    notes = [f"To: {to}.", f"Email backend in force: {backend.label}."]
    if not backend.delivers:
        notes.append(f"It will be {backend.not_delivered}. {NOT_DELIVERED_HINT}")
    return notes


def _blocks_warning(check: services.CampaignCheck):
    """ "This template now blocks 39 leads of running campaign X: missing variable `y`", with
    each reason's count and parts, and a link to the campaign check."""
    leads = check.blocked_recipients
    scope = f"{leads} lead{pluralize(leads)}"
    if check.sampled:
        total = check.recipients_total
        more = "there are more" if total is None else f"of {total:,}"
        scope = f"{leads} of the first {check.recipients_checked:,} active leads ({more})"
    groups = check.groups
    reasons = "; ".join(
        f"{g.phrase} ({g.count} lead{pluralize(g.count)}"
        + (f", {' and '.join(g.part_labels)}" if g.part_labels else "")
        + ")"
        for g in groups[:SAVE_WARNING_REASONS]
    )
    if len(groups) > SAVE_WARNING_REASONS:
        reasons += f"; and {len(groups) - SAVE_WARNING_REASONS} more reason(s)"
    url = reverse("admin:templating_messagetemplate_campaign_check")
    query = urlencode({"campaign": check.campaign.pk, "limit": services.CAMPAIGN_CHECK_SAMPLE})
    return format_html(
        'This template now blocks {} of running campaign “{}”: {}. <a href="{}?{}" '
        'class="template-blocks-check-link">Open the campaign check</a>.',
        scope,
        check.campaign.name,
        reasons,
        url,
        query,
    )


def _highlighted(result: RenderResult) -> dict:
    by_part: dict[str, list[Reason]] = {}
    for reason in result.reasons:
        by_part.setdefault(reason.part, []).append(reason)
    return {
        "subject": highlight(result.subject, by_part.get("subject", [])),
        "text": highlight(result.text, by_part.get("text", [])),
    }


@admin.register(MessageTemplateVersion)
class MessageTemplateVersionAdmin(ReadOnlyAdmin):
    list_display = ("template", "number", "created_at", "created_by", "variant_label")
    list_filter = (TemplateFilter,)
    list_select_related = ("template", "template__venture", "template__campaign")
    search_fields = ("template__name",)
    readonly_fields = (
        "template",
        "number",
        *CONTENT_FIELDS,
        "required_variables",
        "content_hash",
        "created_by",
        "created_at",
    )
    fields = readonly_fields
    venture_lookup = "template__venture"


@admin.register(RenderLog)
class RenderLogAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "template_version", "subject_ref", "purpose", "outcome", "why")
    list_filter = ("outcome", "purpose", RenderTemplateFilter)
    list_select_related = ("template_version", "template_version__template")
    search_fields = ("=subject_ref",)
    fields = ("created_at", "template_version", "subject_ref", "purpose", "outcome", "why")
    readonly_fields = fields
    venture_lookup = "template_version__template__venture"

    @admin.display(description="blocking reasons")
    def why(self, obj: RenderLog) -> str:
        return "; ".join(f"{r.get('code')}: {r.get('message')}" for r in obj.reasons) or "-"
