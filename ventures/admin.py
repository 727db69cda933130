"""The operator console for the control plane: ventures, ICP segments, campaigns, the global
kill switch, worker heartbeats, the audit log and venture API tokens.

Every admin here builds on `ventures.admin_toolkit` (scoping, operations, audit). Writes go
through `ventures.services`, one call per object; kill switches and live mode confirm first.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, OuterRef, Subquery, Value
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html

from ventures import services
from ventures.admin_toolkit import (
    AuditedAdmin,
    CappedCountPaginator,
    Operation,
    OperationsAdmin,
    ReadOnlyMixin,
    ScopedAdmin,
    VentureFilter,
    operation_action,
)
from ventures.forms import ApiTokenCreateForm, CampaignAdminForm
from ventures.models import (
    AuditEvent,
    Campaign,
    IcpSegment,
    SendMode,
    SystemControl,
    Venture,
    VentureApiToken,
    VentureMembership,
    WorkerHeartbeat,
)
from ventures.preflight import preflight_errors
from ventures.selectors import (
    campaign_halt_reason,
    campaigns_visible_to,
    global_kill_reason,
    user_sees_all_ventures,
    ventures_visible_to,
)

# --- Operations: what an action or an object-tools button does ---------------------------------


def _transition(action: str) -> Callable[[Campaign, Any, str], bool]:
    def apply(campaign: Campaign, user: Any, reason: str) -> bool:
        services.campaign_transition(campaign=campaign, action=action, actor=user, reason=reason)
        return True

    return apply


def _campaign_kill(on: bool) -> Callable[[Campaign, Any, str], bool]:
    def apply(campaign: Campaign, user: Any, reason: str) -> bool:
        return services.campaign_set_kill_switch(
            campaign=campaign, on=on, actor=user, reason=reason
        )

    return apply


def _campaign_mode(mode: str) -> Callable[[Campaign, Any, str], bool]:
    def apply(campaign: Campaign, user: Any, reason: str) -> bool:
        return services.campaign_set_mode(campaign=campaign, mode=mode, actor=user, reason=reason)

    return apply


def _capture_link_rotate(campaign: Campaign, user: Any, reason: str) -> bool:
    return services.campaign_capture_link_rotate(campaign=campaign, actor=user, reason=reason)


def _venture_kill(on: bool) -> Callable[[Venture, Any, str], bool]:
    def apply(venture: Venture, user: Any, reason: str) -> bool:
        return services.venture_set_kill_switch(venture=venture, on=on, actor=user, reason=reason)

    return apply


def _global_kill(on: bool) -> Callable[[SystemControl, Any, str], bool]:
    def apply(control: SystemControl, user: Any, reason: str) -> bool:
        return services.global_kill_switch_set(on=on, actor=user, reason=reason)

    return apply


def _transition_op(name: str, label: str, done: str) -> Operation:
    return Operation(
        name=name,
        label=label,
        done=done + " {count} {noun}.",
        unchanged="",
        permission="operate",
        apply=_transition(name),
    )


KILL_WARNING = "Sending stops at once, whatever the status, until someone unkills it."

CAMPAIGN_OPERATIONS = {
    op.name: op
    for op in (
        _transition_op("start", "Start", "Started"),
        _transition_op("pause", "Pause", "Paused"),
        _transition_op("resume", "Resume", "Resumed"),
        _transition_op("stop", "Stop", "Stopped"),
        Operation(
            name="kill",
            label="Kill",
            done="Killed {count} {noun}.",
            unchanged="{count} {noun} already killed.",
            permission="kill",
            apply=_campaign_kill(True),
            confirm=True,
            reason_required=True,
            warning=KILL_WARNING,
        ),
        Operation(
            name="unkill",
            label="Unkill",
            done="Lifted the kill switch of {count} {noun}.",
            unchanged="{count} {noun} not killed.",
            permission="kill",
            apply=_campaign_kill(False),
            # Unkilling a running campaign resumes sending: confirm, as for ventures.
            confirm=True,
            warning="A running campaign starts sending again (unless another switch stops it).",
        ),
        Operation(
            name="go-live",
            label="Switch to live mode",
            done="Switched {count} {noun} to live mode.",
            unchanged="{count} {noun} already in live mode.",
            permission="go_live",
            apply=_campaign_mode(SendMode.LIVE),
            confirm=True,
            warning="Live mode sends real email through the configured email backend.",
        ),
        Operation(
            name="go-proof",
            label="Switch to proof mode",
            done="Switched {count} {noun} to proof mode.",
            unchanged="{count} {noun} already in proof mode.",
            permission="operate",
            apply=_campaign_mode(SendMode.PROOF),
        ),
        Operation(
            name="new-capture-link",
            label="New capture link",
            done="Gave {count} {noun} a new lead-capture link; the old one no longer works.",
            unchanged="",
            permission="operate",
            apply=_capture_link_rotate,
            confirm=True,
            warning="The lead-capture link shared so far stops working at once: visitors get "
            'a page that says the form is closed. Share the new link (campaign action "Show '
            'the lead-capture form links").',
        ),
    )
}

VENTURE_OPERATIONS = {
    "kill": Operation(
        name="kill",
        label="Kill",
        done="Killed {count} {noun}: none of their campaigns will send.",
        unchanged="{count} {noun} already killed.",
        permission="kill",
        apply=_venture_kill(True),
        confirm=True,
        reason_required=True,
        warning="Every campaign of the venture stops sending at once.",
    ),
    "unkill": Operation(
        name="unkill",
        label="Unkill",
        done="Lifted the kill switch of {count} {noun}.",
        unchanged="{count} {noun} not killed.",
        permission="kill",
        apply=_venture_kill(False),
        confirm=True,
        warning="Campaigns of the venture that are running start sending again.",
    ),
}

GLOBAL_OPERATIONS = {
    "kill": Operation(
        name="kill",
        label="Turn on",
        done="Global kill switch turned ON: nothing is sent.",
        unchanged="The global kill switch was already on.",
        permission="toggle",
        apply=_global_kill(True),
        confirm=True,
        reason_required=True,
        warning="Every campaign of every venture stops sending at once.",
    ),
    "unkill": Operation(
        name="unkill",
        label="Turn off",
        done="Global kill switch turned off.",
        unchanged="The global kill switch was already off.",
        permission="toggle",
        apply=_global_kill(False),
        confirm=True,
        warning="Running campaigns start sending again (unless another switch stops them).",
    ),
}


class AuditVentureFilter(VentureFilter):
    field = "venture_id"


class MembershipInline(admin.TabularInline):
    """Who sees the venture. Only Administrators may change it."""

    model = VentureMembership
    extra = 0
    fields = ("user", "created_at")
    readonly_fields = ("created_at",)

    def _administrator(self, request) -> bool:
        return user_sees_all_ventures(request.user)

    def has_add_permission(self, request, obj=None):
        return self._administrator(request) and super().has_add_permission(request, obj)

    def has_change_permission(self, request, obj=None):
        return self._administrator(request) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        return self._administrator(request) and super().has_delete_permission(request, obj)


@admin.register(Venture)
class VentureAdmin(OperationsAdmin):
    operations = VENTURE_OPERATIONS
    list_display = (
        "name",
        "slug",
        "is_active",
        "kill_switch",
        "daily_send_limit",
        "campaign_count",
        "owner_name",
    )
    list_filter = ("is_active", "kill_switch")
    search_fields = ("name", "slug", "owner_name", "owner_email")
    prepopulated_fields = {"slug": ("name",)}
    readonly_fields = ("kill_switch", "kill_reason", "created_at", "updated_at", "audit_trail")
    inlines = (MembershipInline,)
    actions = (
        operation_action("kill_ventures", VENTURE_OPERATIONS["kill"], "Kill selected ventures…"),
        operation_action(
            "unkill_ventures", VENTURE_OPERATIONS["unkill"], "Unkill selected ventures…"
        ),
    )
    fieldsets = (
        (None, {"fields": ("name", "slug", "is_active", "offer_summary", "primary_cta")}),
        ("Sending", {"fields": ("default_channels", "timezone", "daily_send_limit")}),
        ("Owner and compliance", {"fields": ("owner_name", "owner_email", "postal_address")}),
        ("Kill switch", {"fields": ("kill_switch", "kill_reason")}),
        ("Audit trail", {"fields": ("audit_trail", "created_at", "updated_at")}),
    )

    def get_queryset(self, request):
        return ventures_visible_to(request.user).annotate(campaign_total=Count("campaigns"))

    @admin.display(description="campaigns", ordering="campaign_total")
    def campaign_count(self, obj: Venture) -> int:
        return obj.campaign_total

    def get_fieldsets(self, request, obj=None):
        return self.fieldsets if obj else self.fieldsets[:3]

    def get_readonly_fields(self, request, obj=None):
        # A campaign stays in its venture: its leads, segments, templates and audit trail are
        # that venture's (and on PostgreSQL its leads' foreign key names the pair).
        fields = super().get_readonly_fields(request, obj)
        return (*fields, "venture") if obj else fields

    def has_kill_permission(self, request) -> bool:
        return request.user.has_perm("ventures.kill_campaign")

    def applicable_operations(self, obj: Venture) -> list[str]:
        return ["unkill" if obj.kill_switch else "kill"]

    def save_formset(self, request, form, formset, change):
        super().save_formset(request, form, formset, change)
        if formset.model is not VentureMembership:
            return
        venture = form.instance
        for membership in formset.new_objects:
            services.audit_record(
                actor=request.user,
                action="venture.member_add",
                entity=venture,
                after={"user": membership.user.get_username()},
            )
        for membership in formset.deleted_objects:
            services.audit_record(
                actor=request.user,
                action="venture.member_remove",
                entity=venture,
                before={"user": membership.user.get_username()},
            )
        initial_users = {f.instance.pk: f.initial.get("user") for f in formset.initial_forms}
        for membership, _fields in formset.changed_objects:
            services.audit_record(
                actor=request.user,
                action="venture.member_change",
                entity=venture,
                before={"user_id": initial_users.get(membership.pk)},
                after={"user_id": membership.user_id},
            )


@admin.register(IcpSegment)
class IcpSegmentAdmin(AuditedAdmin):
    list_display = ("name", "venture", "slug", "priority", "industries", "countries")
    list_select_related = ("venture",)
    list_filter = (VentureFilter,)
    search_fields = ("name", "slug", "venture__name")
    prepopulated_fields = {"slug": ("name",)}
    fieldsets = (
        (None, {"fields": ("venture", "name", "slug", "priority")}),
        ("Notes", {"fields": ("firmographic_notes", "psychographic_notes")}),
        (
            "Matching rules",
            {
                "fields": (
                    "industries",
                    "title_keywords",
                    "countries",
                    "company_size_min",
                    "company_size_max",
                ),
                "description": 'Lists are JSON, e.g. ["software", "fintech"]. '
                "Every non-empty rule must match; an empty rule matches anything.",
            },
        ),
    )


# --- Campaigns -----------------------------------------------------------------------------------


@admin.register(Campaign)
class CampaignAdmin(OperationsAdmin):
    form = CampaignAdminForm
    operations = CAMPAIGN_OPERATIONS
    list_display = (
        "name",
        "venture",
        "status",
        "mode_code",
        "halted",
        "daily_send_limit",
        "effective_limit",
        "updated_at",
    )
    list_select_related = ("venture",)
    list_filter = ("status", "mode", "kill_switch", VentureFilter)
    search_fields = ("name", "slug", "venture__name")
    prepopulated_fields = {"slug": ("name",)}
    readonly_fields = (
        "status",
        "mode",
        "kill_switch",
        "kill_reason",
        "halt_reason",
        "effective_limit",
        "started_at",
        "finished_at",
        "audit_trail",
    )
    actions = tuple(
        operation_action(name, CAMPAIGN_OPERATIONS[op], description)
        for name, op, description in (
            ("start_campaigns", "start", "Start selected campaigns"),
            ("pause_campaigns", "pause", "Pause selected campaigns"),
            ("resume_campaigns", "resume", "Resume selected campaigns"),
            ("stop_campaigns", "stop", "Stop selected campaigns"),
            ("kill_campaigns", "kill", "Kill selected campaigns…"),
            ("unkill_campaigns", "unkill", "Unkill selected campaigns…"),
            ("go_live_campaigns", "go-live", "Switch selected campaigns to live mode…"),
            ("go_proof_campaigns", "go-proof", "Switch selected campaigns to proof mode"),
            (
                "new_capture_links",
                "new-capture-link",
                "Give selected campaigns a new lead-capture link…",
            ),
        )
    )
    fieldsets = (
        (None, {"fields": ("venture", "name", "slug", "objective")}),
        (
            "Limits and send window",
            {
                "fields": (
                    "daily_send_limit",
                    ("warmup_start_limit", "warmup_daily_increase"),
                    "send_days",
                    ("send_window_start", "send_window_end"),
                    "timezone",
                )
            },
        ),
        (
            "Sender, replies, value and cost",
            {
                "fields": (
                    "sender_name",
                    "sender_email",
                    "reply_to",
                    "reply_sla_hours",
                    "value_per_positive_reply",
                    "fixed_cost",
                    "cost_per_email",
                )
            },
        ),
        (
            "State (changed only through the actions)",
            {
                "fields": (
                    "status",
                    "mode",
                    "kill_switch",
                    "kill_reason",
                    "halt_reason",
                    "effective_limit",
                    ("started_at", "finished_at"),
                )
            },
        ),
        ("Audit trail", {"fields": ("audit_trail",)}),
    )

    def get_queryset(self, request):
        qs = campaigns_visible_to(request.user).select_related("venture")
        if hasattr(request, "global_kill_reason"):  # the changelist read it for the page
            qs = qs.annotate(global_halt=Value(request.global_kill_reason or ""))
        return qs

    def get_fieldsets(self, request, obj=None):
        return self.fieldsets if obj else self.fieldsets[:3]

    def get_readonly_fields(self, request, obj=None):
        # A campaign stays in its venture: its leads, segments, templates and audit trail are
        # that venture's (and on PostgreSQL its leads' foreign key names the pair).
        fields = super().get_readonly_fields(request, obj)
        return (*fields, "venture") if obj else fields

    def changelist_view(self, request, extra_context=None):
        # Read once for the page: every row's "halted" column and the banner use it.
        request.global_kill_reason = global_kill_reason()
        if request.method == "GET" and request.global_kill_reason:
            self.message_user(
                request, "The global kill switch is ON: nothing is sent.", messages.WARNING
            )
        return super().changelist_view(request, extra_context)

    @admin.display(description="mode", ordering="mode")
    def mode_code(self, obj: Campaign) -> str:
        return obj.mode

    @admin.display(description="halted", boolean=True)
    def halted(self, obj: Campaign) -> bool:
        if hasattr(obj, "global_halt"):
            return obj.halt_reason(global_reason=obj.global_halt or None) is not None
        return campaign_halt_reason(obj) is not None

    @admin.display(description="effective daily limit")
    def effective_limit(self, obj: Campaign) -> int:
        return obj.effective_daily_limit()

    @admin.display(description="halt reason")
    def halt_reason(self, obj: Campaign) -> str:
        return campaign_halt_reason(obj) or "None: no kill switch stops this campaign."

    def has_operate_permission(self, request) -> bool:
        return request.user.has_perm("ventures.operate_campaign")

    def has_kill_permission(self, request) -> bool:
        return request.user.has_perm("ventures.kill_campaign")

    def has_go_live_permission(self, request) -> bool:
        return request.user.has_perm("ventures.go_live")

    def applicable_operations(self, obj: Campaign) -> list[str]:
        names = [a for a in obj.allowed_actions() if a in self.operations]
        names.append("unkill" if obj.kill_switch else "kill")
        names.append("go-proof" if obj.mode == SendMode.LIVE else "go-live")
        names.append("new-capture-link")
        return names

    def confirm_notes(self, request, operation, objects):
        if operation.name != "go-live":
            return []

        errors = preflight_errors(mode=SendMode.LIVE)
        if not errors:
            return []
        return [
            "Preflight for live mode fails: " + "; ".join(errors),
            "A running campaign cannot switch to live mode until preflight passes; a draft or "
            "paused one can, but it will not start or resume until preflight passes.",
        ]


# --- Global kill switch, heartbeats, audit log -----------------------------------------------------


@admin.register(SystemControl)
class SystemControlAdmin(ReadOnlyMixin, OperationsAdmin):
    """The single global kill switch row: shown read-only, toggled through a confirm page."""

    operations = GLOBAL_OPERATIONS
    venture_lookup = None
    actions = None
    fields = ("kill_switch", "kill_reason", "setting_state", "updated_at", "audit_trail")
    readonly_fields = fields

    @admin.display(description="AICMO_KILL_SWITCH setting")
    def setting_state(self, obj: SystemControl) -> str:
        from django.conf import settings

        if settings.AICMO_KILL_SWITCH:
            return "ON: nothing is sent whatever this toggle says (unset it in the environment)."
        return "off"

    def changelist_view(self, request, extra_context=None):
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied
        return HttpResponseRedirect(self.change_url(SystemControl.load()))

    def has_toggle_permission(self, request) -> bool:
        return request.user.has_perm("ventures.change_systemcontrol")

    def applicable_operations(self, obj: SystemControl) -> list[str]:
        return ["unkill" if obj.kill_switch else "kill"]


@admin.register(WorkerHeartbeat)
class WorkerHeartbeatAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ("name", "last_seen")
    ordering = ("-last_seen",)
    actions = None


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyMixin, ScopedAdmin):
    """The audit log: read-only for everyone (superusers included), scoped by venture."""

    venture_lookup = "venture_id"
    list_display = ("created_at", "actor", "action", "entity", "venture_name", "reason")
    list_filter = (AuditVentureFilter,)
    # The trail only grows: never COUNT(*) it on every page load.
    paginator = CappedCountPaginator
    show_full_result_count = False
    search_fields = ("actor", "action", "entity_repr", "=entity_id", "reason")
    fields = (
        "created_at",
        "actor",
        "action",
        "entity_type",
        "entity_id",
        "entity",
        "venture_id",
        "before_pretty",
        "after_pretty",
        "reason",
    )
    readonly_fields = fields
    actions = None

    def get_queryset(self, request):
        name = Venture.objects.filter(pk=OuterRef("venture_id")).values("name")[:1]
        return super().get_queryset(request).annotate(venture_name_value=Subquery(name))

    @admin.display(description="entity", ordering="entity_repr")
    def entity(self, obj: AuditEvent) -> str:
        app_label, _, model_name = obj.entity_type.partition(".")
        try:
            url = reverse(f"admin:{app_label}_{model_name}_change", args=[obj.entity_id])
        except NoReverseMatch:  # an entity type without an admin page
            return obj.entity_repr or obj.entity_id
        return format_html('<a href="{}">{}</a>', url, obj.entity_repr or obj.entity_id)

    @admin.display(description="venture")
    def venture_name(self, obj: AuditEvent) -> str:
        return obj.venture_name_value or "-"

    @admin.display(description="before")
    def before_pretty(self, obj: AuditEvent) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.before, indent=2, sort_keys=True))

    @admin.display(description="after")
    def after_pretty(self, obj: AuditEvent) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.after, indent=2, sort_keys=True))


# --- Venture API tokens (Administrators only) -----------------------------------------------------


@admin.register(VentureApiToken)
class VentureApiTokenAdmin(ScopedAdmin):
    """Create (plaintext shown once, on the page itself, never in a message or a log) and revoke."""

    list_display = (
        "name",
        "venture",
        "prefix",
        "state",
        "created_by",
        "created_at",
        "last_used_at",
    )
    list_select_related = ("venture",)
    list_filter = (VentureFilter,)
    actions = ("revoke_tokens",)
    fields = ("venture", "name", "prefix", "created_by", "created_at", "last_used_at", "revoked_at")
    readonly_fields = fields

    def _administrator(self, request) -> bool:
        return user_sees_all_ventures(request.user)

    def has_module_permission(self, request):
        return self._administrator(request)

    def has_view_permission(self, request, obj=None):
        return self._administrator(request)

    def has_add_permission(self, request):
        return self._administrator(request)

    def has_change_permission(self, request, obj=None):
        return self._administrator(request)  # the change page is read-only; revoke is an action

    def has_delete_permission(self, request, obj=None):
        return False  # revoked tokens stay listed: who had access, and until when

    @admin.display(description="state")
    def state(self, obj: VentureApiToken) -> str:
        return "revoked" if obj.revoked_at else "active"

    def add_view(self, request, form_url="", extra_context=None):
        if not self.has_add_permission(request):
            raise PermissionDenied
        created = plaintext = None
        form = ApiTokenCreateForm(request.POST or None, ventures=ventures_visible_to(request.user))
        if request.method == "POST" and form.is_valid():
            created, plaintext = services.venture_api_token_create(
                venture=form.cleaned_data["venture"],
                name=form.cleaned_data["name"],
                actor=request.user,
            )
        context = {
            **self.admin_site.each_context(request),
            "title": "New API token",
            "opts": self.opts,
            "form": form,
            "token": created,
            "plaintext": plaintext,
            "api_example": "/api/leads/<campaign slug>/",
        }
        request.current_app = self.admin_site.name
        response = TemplateResponse(request, "admin/ventures/apitoken_add.html", context)
        response["Cache-Control"] = "no-store"
        return response

    @admin.action(description="Revoke selected tokens", permissions=["change"])
    def revoke_tokens(self, request, queryset):
        revoked = sum(
            services.venture_api_token_revoke(token=token, actor=request.user) for token in queryset
        )
        self.message_user(request, f"Revoked {revoked} token(s).", messages.SUCCESS)
