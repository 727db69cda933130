"""The operator console for the control plane: ventures, ICP segments, campaigns, the global
kill switch, worker heartbeats, the audit log and venture API tokens.

Every admin here builds on `ventures.admin_toolkit` (scoping, operations, audit). Writes go
through `ventures.services`, one call per object; kill switches and live mode confirm first.
"""

from __future__ import annotations

import json
import smtplib
from collections.abc import Callable
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count, OuterRef, Subquery
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html

from ventures import services
from ventures.admin_toolkit import (
    CappedCountPaginator,
    GuardedDeleteAdmin,
    LimitRaiseConfirmMixin,
    Operation,
    OperationsAdmin,
    ReadOnlyMixin,
    ScopedAdmin,
    VentureFilter,
    delete_selected_confirmed,
    deleted_with,
    operation_action,
    request_global_kill_reason,
)
from ventures.console import (
    CampaignLimits,
    campaign_delete_refusal,
    campaign_limits,
    campaign_state,
    campaigns_limits,
    limit_raises,
    with_last_pause,
)
from ventures.forms import (
    MEMBER_ROLE_CHOICES,
    MEMBER_ROLE_HELP,
    ApiTokenCreateForm,
    CampaignAdminForm,
    MembershipForm,
)
from ventures.models import (
    AuditEvent,
    Campaign,
    CampaignStatus,
    IcpSegment,
    SendMode,
    SystemControl,
    Venture,
    VentureApiToken,
    VentureMembership,
    WorkerHeartbeat,
)
from ventures.preflight import preflight_errors
from ventures.roles import ADMINISTRATOR, OPERATOR
from ventures.selectors import (
    audit_search_q,
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


def _transition_op(name: str, label: str, done: str, warning: str) -> Operation:
    return Operation(
        name=name,
        label=label,
        done=done + " {count} {noun}.",
        unchanged="",
        permission="operate",
        apply=_transition(name),
        warning=warning,
    )


TRANSITION_WARNINGS = {
    "start": "The campaign starts sending from the next tick, within its limits and send "
    "window (in live mode, to real people).",
    "pause": "Nothing more is sent until someone resumes the campaign; messages due meanwhile "
    "wait.",
    "resume": "The campaign sends again from the next tick, the messages that came due while "
    "it was paused first.",
    "stop": "Stop is final: the campaign never sends again and cannot be restarted (pause "
    "holds the sends until someone resumes).",
}


KILL_WARNING = (
    "Kill stops every email of the campaign at once, whatever its status, and nothing more "
    "is sent until an Administrator unkills it. (Pause only holds the sends until someone "
    "resumes; kill is for when something is wrong.)"
)
GO_LIVE_WARNING = (
    "Live mode sends real email to real people: from the next tick, every message the "
    "campaign sends goes out through the configured email backend instead of being written "
    "as a proof file. Sent email cannot be taken back."
)

CAMPAIGN_OPERATIONS = {
    op.name: op
    for op in (
        _transition_op("start", "Start", "Started", TRANSITION_WARNINGS["start"]),
        _transition_op("pause", "Pause", "Paused", TRANSITION_WARNINGS["pause"]),
        _transition_op("resume", "Resume", "Resumed", TRANSITION_WARNINGS["resume"]),
        _transition_op("stop", "Stop", "Stopped", TRANSITION_WARNINGS["stop"]),
        Operation(
            name="kill",
            label="Kill",
            done="Killed {count} {noun}.",
            unchanged="{count} {noun} already killed.",
            permission="kill",
            apply=_campaign_kill(True),
            reason_required=True,
            warning=KILL_WARNING,
            danger=True,
        ),
        Operation(
            name="unkill",
            label="Unkill",
            done="Lifted the kill switch of {count} {noun}.",
            unchanged="{count} {noun} not killed.",
            permission="kill",
            apply=_campaign_kill(False),
            # Unkilling a running campaign resumes sending: confirm, as for ventures.
            warning="A running campaign starts sending again (unless another switch stops it).",
        ),
        Operation(
            name="go-live",
            label="Switch to live mode",
            done="Switched {count} {noun} to live mode.",
            unchanged="{count} {noun} already in live mode.",
            permission="go_live",
            apply=_campaign_mode(SendMode.LIVE),
            warning=GO_LIVE_WARNING,
            danger=True,
        ),
        Operation(
            name="go-proof",
            label="Switch to proof mode",
            done="Switched {count} {noun} to proof mode.",
            unchanged="{count} {noun} already in proof mode.",
            permission="operate",
            apply=_campaign_mode(SendMode.PROOF),
            warning="From the next tick the campaign writes its messages as proof files "
            "instead of sending them: nobody receives them.",
        ),
        Operation(
            name="new-capture-link",
            label="New capture link",
            done="Gave {count} {noun} a new lead-capture link; the old one no longer works.",
            unchanged="",
            permission="operate",
            apply=_capture_link_rotate,
            warning="The lead-capture link shared so far stops working at once: visitors get "
            'a page that says the form is closed. Share the new link (campaign action "Show '
            'the lead-capture form links").',
        ),
    )
}


def _member_fields(request) -> dict[str, forms.Field]:
    users = (
        get_user_model()
        .objects.filter(is_active=True, is_superuser=False)
        .exclude(groups__name=ADMINISTRATOR)
    )
    return {
        "user": forms.ModelChoiceField(
            queryset=users.order_by("username"),
            required=False,
            label="Existing user",
            help_text="Someone who already has a login.",
        ),
        "email": forms.EmailField(
            required=False,
            label="Or invite by email",
            help_text="A new login is made for this address and emailed a link to choose a "
            "password.",
        ),
        "role": forms.ChoiceField(
            choices=MEMBER_ROLE_CHOICES, initial=OPERATOR, help_text=MEMBER_ROLE_HELP
        ),
    }


def _member_check(data: dict) -> None:
    if bool(data.get("user")) == bool(data.get("email")):
        raise ValidationError("Pick an existing user or give an email address to invite.")


def _member_add(ventures, actor, data) -> list[tuple[int, str]]:
    shown = []
    for venture in ventures:
        added = services.venture_member_add(
            venture=venture,
            role=data["role"],
            actor=actor,
            user=data.get("user"),
            email=data.get("email") or "",
            reason=data["reason"],
        )
        name = added.user.get_username()
        text = f"Added {name} to {venture.name} as {added.role}."
        if added.role_before and added.role_before != added.role:
            text += f" Their role changed from {added.role_before} in every venture."
        shown.append((messages.SUCCESS, text))
        if added.invited:
            try:
                where = services.member_invite_send(
                    user=added.user, venture=venture, role=added.role, actor=actor
                )
            except (OSError, smtplib.SMTPException) as exc:
                shown.append((messages.ERROR, f"The invitation to {name} was not sent: {exc}."))
            else:
                shown.append(
                    (messages.INFO, f"The invitation with a set-password link was {where}.")
                )
    return shown


VENTURE_OPERATIONS = {
    "add-member": Operation(
        name="add-member",
        label="Add a member",
        permission="members",
        apply_all=_member_add,
        fields=_member_fields,
        clean=_member_check,
        title="Add a member",
        submit="Add the member",
        warning="The member sees this venture's campaigns, leads, templates and reports; an "
        "Operator may also run them.",
    ),
    "kill": Operation(
        name="kill",
        label="Kill",
        done="Killed {count} {noun}: none of their campaigns will send.",
        unchanged="{count} {noun} already killed.",
        permission="kill",
        apply=_venture_kill(True),
        reason_required=True,
        warning="Every campaign of the venture stops sending at once, until an Administrator "
        "unkills the venture.",
        danger=True,
    ),
    "unkill": Operation(
        name="unkill",
        label="Unkill",
        done="Lifted the kill switch of {count} {noun}.",
        unchanged="{count} {noun} not killed.",
        permission="kill",
        apply=_venture_kill(False),
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
        reason_required=True,
        warning="Every campaign of every venture stops sending at once, and nothing is sent "
        "until someone turns the switch off. Campaigns keep their status: they resume where "
        "they were.",
        danger=True,
        title="Turn on the global kill switch: are you sure?",
        submit="Yes, stop all sending",
    ),
    "unkill": Operation(
        name="unkill",
        label="Turn off",
        done="Global kill switch turned off.",
        unchanged="The global kill switch was already off.",
        permission="toggle",
        apply=_global_kill(False),
        warning="Running campaigns start sending again (unless another switch stops them).",
        title="Turn off the global kill switch: are you sure?",
        submit="Yes, let campaigns send again",
    ),
}


class AuditVentureFilter(VentureFilter):
    field = "venture_id"


class MembershipInline(admin.TabularInline):
    """The venture's members, each with their role. Administrators change a role or remove a
    member here; adding one is the page's "Add a member" (pick a user or invite by email), so
    there is one way to do it."""

    model = VentureMembership
    form = MembershipForm
    extra = 0
    fields = ("member", "role", "created_at")
    readonly_fields = ("member", "created_at")
    verbose_name = "member"
    verbose_name_plural = "Members"
    template = "admin/ventures/membership_inline.html"

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("user").prefetch_related("user__groups")

    @admin.display(description="user")
    def member(self, obj: VentureMembership) -> str:
        user = obj.user
        if user.email and user.email.lower() != user.get_username().lower():
            return f"{user.get_username()} ({user.email})"
        return user.get_username()

    def _administrator(self, request) -> bool:
        return user_sees_all_ventures(request.user)

    def has_add_permission(self, request, obj=None):
        return False  # "Add a member" adds (and invites); see VENTURE_OPERATIONS

    def has_change_permission(self, request, obj=None):
        return self._administrator(request) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        return self._administrator(request) and super().has_delete_permission(request, obj)


@admin.register(Venture)
class VentureAdmin(GuardedDeleteAdmin, OperationsAdmin):
    """A venture is deleted only through the guarded "Delete selected" (or its page), while
    nothing keeps it: its campaigns, leads, templates, mailboxes and unsubscribes protect it,
    and the leads app refuses one that still holds suppression entries. The confirm page
    names what goes with it (segments, scoring rules, members, API tokens)."""

    operations = VENTURE_OPERATIONS
    delete_instead = "Kill it instead to stop all its sending; its history stays for reports."
    delete_warning = (
        "Its members lose access to it and its API tokens stop working; its segments and "
        "scoring rules go with it."
    )
    list_display = (
        "name",
        "slug",
        "is_active",
        "kill_state",
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
        delete_selected_confirmed,
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

    @admin.display(description="kill switch", ordering="kill_switch")
    def kill_state(self, obj: Venture) -> str:
        # A word and a colour, not Django's tick, which read as "fine" for a killed venture.
        if obj.kill_switch:
            return format_html('<span class="state state-stop">Killed: {}</span>', obj.kill_reason)
        return format_html('<span class="state state-ok">{}</span>', "off")

    @admin.display(description="campaigns", ordering="campaign_total")
    def campaign_count(self, obj: Venture) -> int:
        return obj.campaign_total

    def get_fieldsets(self, request, obj=None):
        return self.fieldsets if obj else self.fieldsets[:3]

    def delete_label(self, obj: Venture) -> str:
        touched = deleted_with(obj)
        return f"{obj} ({touched})" if touched else str(obj)

    def get_readonly_fields(self, request, obj=None):
        # A campaign stays in its venture: its leads, segments, templates and audit trail are
        # that venture's (and on PostgreSQL its leads' foreign key names the pair).
        fields = super().get_readonly_fields(request, obj)
        return (*fields, "venture") if obj else fields

    def has_kill_permission(self, request) -> bool:
        return request.user.has_perm("ventures.kill_campaign")

    def has_members_permission(self, request) -> bool:
        return user_sees_all_ventures(request.user) and request.user.has_perm("auth.add_user")

    def applicable_operations(self, obj: Venture) -> list[str]:
        return ["add-member", "unkill" if obj.kill_switch else "kill"]

    def get_inlines(self, request, obj):
        return self.inlines if obj is not None else ()  # members join an existing venture

    def render_change_form(self, request, context, *args, **kwargs):
        # "Add a member" sits under the members list, the one place members are managed.
        buttons = context.get("operation_buttons", [])
        context["member_add"] = next((b for b in buttons if b["name"] == "add-member"), None)
        context["operation_buttons"] = [b for b in buttons if b["name"] != "add-member"]
        return super().render_change_form(request, context, *args, **kwargs)

    def save_formset(self, request, form, formset, change):
        if formset.model is not VentureMembership:
            return super().save_formset(request, form, formset, change)
        # commit=False lists the removals and role changes (for the change message); the
        # services write them, each audited.
        formset.save(commit=False)
        for membership in formset.deleted_objects:
            services.venture_member_remove(membership=membership, actor=request.user)
        for membership_form in formset.initial_forms:
            if membership_form.instance in formset.deleted_objects:
                continue
            if "role" in membership_form.changed_data:
                services.venture_member_role_set(
                    membership=membership_form.instance,
                    role=membership_form.cleaned_data["role"],
                    actor=request.user,
                )


@admin.register(IcpSegment)
class IcpSegmentAdmin(GuardedDeleteAdmin):
    """A segment is deleted only through the guarded delete: the outbox refuses one that
    routes leads of a running or paused campaign, or that sent messages were composed for
    (the narrative memory's figures count under it); the confirm page names what goes with
    it (routing rules) and the leads that lose it."""

    delete_warning = (
        "Its routing rules go with it, and its leads stay without a segment: new leads are "
        "no longer matched to it."
    )
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

    def delete_label(self, obj: IcpSegment) -> str:
        touched = deleted_with(obj)
        return f"{obj} of {obj.venture} ({touched})" if touched else f"{obj} of {obj.venture}"


# --- Campaigns -----------------------------------------------------------------------------------


STATE_SHOWN = 60  # characters of a state badge in the list; the whole text is its tooltip


@admin.register(Campaign)
class CampaignAdmin(LimitRaiseConfirmMixin, OperationsAdmin):
    form = CampaignAdminForm
    operations = CAMPAIGN_OPERATIONS
    panels_first = True  # the figures and the controls first, the configuration below
    list_display = (
        "name",
        "venture",
        "state",
        "mode_code",
        "send_window",
        "effective_limit_short",
    )
    list_select_related = ("venture",)
    list_filter = ("status", "mode", "kill_switch", VentureFilter)
    search_fields = ("name", "slug", "venture__name")
    prepopulated_fields = {"slug": ("name",)}
    readonly_fields = (
        "state_brief",
        "status",
        "mode",
        "kill_switch_text",
        "kill_reason",
        "halt_reason",
        "effective_limit",
        "send_days_display",
        "started_at",
        "finished_at",
        "audit_trail",
    )
    actions = tuple(
        operation_action(name, CAMPAIGN_OPERATIONS[op], description)
        for name, op, description in (
            ("start_campaigns", "start", "Start selected campaigns…"),
            ("pause_campaigns", "pause", "Pause selected campaigns…"),
            ("resume_campaigns", "resume", "Resume selected campaigns…"),
            ("stop_campaigns", "stop", "Stop selected campaigns…"),
            ("kill_campaigns", "kill", "Kill selected campaigns…"),
            ("unkill_campaigns", "unkill", "Unkill selected campaigns…"),
            ("go_live_campaigns", "go-live", "Switch selected campaigns to live mode…"),
            ("go_proof_campaigns", "go-proof", "Switch selected campaigns to proof mode…"),
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
                    "state_brief",
                    "status",
                    "mode",
                    "kill_switch_text",
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
        return with_last_pause(campaigns_visible_to(request.user).select_related("venture"))

    def get_fieldsets(self, request, obj=None):
        fieldsets = self.fieldsets if obj else self.fieldsets[:3]
        if obj is None or self.has_change_permission(request, obj):
            return fieldsets
        # Read-only (a Viewer): the days as names, not the stored digits.
        return [
            (title, {**opts, "fields": tuple(_swap(f) for f in opts["fields"])})
            for title, opts in fieldsets
        ]

    def get_readonly_fields(self, request, obj=None):
        # A campaign stays in its venture: its leads, segments, templates and audit trail are
        # that venture's (and on PostgreSQL its leads' foreign key names the pair).
        fields = super().get_readonly_fields(request, obj)
        return (*fields, "venture") if obj else fields

    def get_actions(self, request):
        # A campaign is deleted from its page only, where a running one is refused.
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    def get_changelist_instance(self, request):
        # Read once for the page and handed to every row: the global switch and the caps.
        changelist = super().get_changelist_instance(request)
        reason = request_global_kill_reason(request)
        limits = campaigns_limits(changelist.result_list)
        for campaign in changelist.result_list:
            campaign.console_global_reason = reason
            campaign.console_limits = limits[campaign.pk]
        return changelist

    def get_object(self, request, object_id, from_field=None):
        campaign = super().get_object(request, object_id, from_field)
        campaign.console_global_reason = request_global_kill_reason(request)
        return campaign

    def page_header(self, request, obj: Campaign) -> str:
        """The state badge and the mode above the figures (the buttons sit beside them)."""
        return format_html(
            '<p class="campaign-header">{} <span class="campaign-mode">Mode: {}</span></p>',
            self.state_full(obj),
            obj.get_mode_display(),
        )

    # --- Columns and read-only fields ---

    @admin.display(description="state")
    def state(self, obj: Campaign) -> str:
        found = campaign_state(obj, global_reason=_global_reason(obj), limits=_limits(obj))
        return format_html(
            '<span class="state state-{}" title="{}">{}</span>',
            found.tone,
            found.label,
            found.label if len(found.label) <= STATE_SHOWN else found.label[:STATE_SHOWN] + "…",
        )

    @admin.display(description="state")
    def state_full(self, obj: Campaign) -> str:
        """The badge on the campaign's page: the whole text (an auto-pause's figures)."""
        found = campaign_state(obj, global_reason=_global_reason(obj), limits=_limits(obj))
        return format_html('<span class="state state-{}">{}</span>', found.tone, found.label)

    @admin.display(description="state")
    def state_brief(self, obj: Campaign) -> str:
        """The badge again in the page's State section, a held level only in a few words:
        the page header's badge says why in full."""
        found = campaign_state(
            obj, global_reason=_global_reason(obj), limits=_limits(obj), brief=True
        )
        return format_html('<span class="state state-{}">{}</span>', found.tone, found.label)

    @admin.display(description="kill switch")
    def kill_switch_text(self, obj: Campaign) -> str:
        # Words, not Django's boolean icons: a red cross read as "halted" for a live campaign.
        return "ON: this campaign sends nothing" if obj.kill_switch else "off"

    @admin.display(description="mode", ordering="mode")
    def mode_code(self, obj: Campaign) -> str:
        return obj.mode

    @admin.display(description="send window")
    def send_window(self, obj: Campaign) -> str:
        return format_html(
            '{} {}–{}<div class="help">{}</div>',
            obj.send_days_label,
            f"{obj.send_window_start:%H:%M}",
            f"{obj.send_window_end:%H:%M}",
            obj.tzinfo,
        )

    @admin.display(description="send days")
    def send_days_display(self, obj: Campaign) -> str:
        return obj.send_days_label

    @admin.display(description="limit today", ordering="daily_send_limit")
    def effective_limit_short(self, obj: Campaign) -> str:
        limits = _limits(obj)
        return format_html(
            '<span title="{}">{}</span><div class="help">{}</div>',
            limits.sentence(),
            f"{limits.effective:,}",
            limits.binds,
        )

    @admin.display(description="effective daily limit")
    def effective_limit(self, obj: Campaign) -> str:
        return campaign_limits(obj).sentence(brief=True)

    @admin.display(description="halt reason")
    def halt_reason(self, obj: Campaign) -> str:
        reason = obj.halt_reason(global_reason=_global_reason(obj))
        return reason or "None: no kill switch stops this campaign."

    # --- Views ---

    def limit_raises_of(self, request, stored: Campaign, form) -> list:
        return limit_raises(stored, form.instance)

    def raise_context(self, request, stored: Campaign, form) -> dict:
        edited = form.instance
        state = campaign_state(stored, global_reason=request_global_kill_reason(request))
        return {
            "title": f"Raise the limits of {stored.name}: are you sure?",
            "state": state,
            "limits_now": campaign_limits(stored).sentence(),
            "limits_after": campaign_limits(edited).sentence(),
        }

    def has_delete_permission(self, request, obj=None):
        if obj is not None and campaign_delete_refusal(obj):
            return False  # no delete link on the page; delete_view says why
        return super().has_delete_permission(request, obj)

    def delete_view(self, request, object_id, extra_context=None):
        obj = self.get_object(request, unquote(object_id))
        refusal = campaign_delete_refusal(obj)
        if refusal and super().has_delete_permission(request, obj):
            self.message_user(request, refusal, messages.ERROR)
            return HttpResponseRedirect(self.change_url(obj))
        return super().delete_view(request, object_id, extra_context)

    # --- Operations ---

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

    def confirm_label(self, request, obj) -> str:
        state = campaign_state(obj, global_reason=request_global_kill_reason(request))
        return f"{obj.name} ({obj.venture.name}): {state.label}"

    def confirm_notes(self, request, operation, objects):
        if operation.name != "go-live":
            return []
        notes = [f"Email backend in force: {settings.EMAIL_BACKEND}."]
        errors = preflight_errors(mode=SendMode.LIVE)
        if not errors:
            return notes
        return [
            *notes,
            "Preflight for live mode fails: " + "; ".join(errors),
            "A running campaign cannot switch to live mode until preflight passes; a draft or "
            "paused one can, but it will not start or resume until preflight passes.",
        ]


def _limits(campaign: Campaign) -> CampaignLimits:
    """The caps the page read once for its rows (else read now, for one campaign's page)."""
    if not hasattr(campaign, "console_limits"):
        campaign.console_limits = campaign_limits(campaign)
    return campaign.console_limits


def _global_reason(campaign: Campaign) -> str | None:
    """The global reason the page read once and gave the row (else read now)."""
    if hasattr(campaign, "console_global_reason"):
        return campaign.console_global_reason
    return global_kill_reason()


def _swap(field):
    if isinstance(field, tuple):
        return tuple(_swap(f) for f in field)
    return "send_days_display" if field == "send_days" else field


# --- Global kill switch, heartbeats, audit log -----------------------------------------------------


@admin.register(SystemControl)
class SystemControlAdmin(ReadOnlyMixin, OperationsAdmin):
    """The single global kill switch row: shown read-only, toggled through a confirm page."""

    operations = GLOBAL_OPERATIONS
    venture_lookup = None
    actions = None

    def confirm_label(self, request, obj) -> str:
        """The confirm page already says "Global kill switch:"; the row itself adds only its
        state."""
        return "ON" if obj.kill_switch else "off"

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

    def confirm_notes(self, request, operation, objects):
        # The ones the switch decides for: running, and not stopped by their own or venture's.
        running = Campaign.objects.filter(
            status=CampaignStatus.RUNNING, kill_switch=False, venture__kill_switch=False
        )
        count = running.count()
        if operation.name == "kill":
            return [f"{count} running campaign(s) stop sending now."]
        return [f"{count} running campaign(s) may send again."]


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
    list_filter = (AuditVentureFilter, ("created_at", admin.DateFieldListFilter))
    # The trail only grows: never COUNT(*) it on every page load.
    paginator = CappedCountPaginator
    show_full_result_count = False
    # What the search box matches (audit_search_q): prefixes and an id, each an index lookup.
    search_fields = ("action", "actor", "entity_repr", "=entity_id")
    search_help_text = (
        "The start of an action (campaign.pause, or campaign. for all of a campaign's), of an "
        "actor or of an entity's name, not case-sensitive; or an entity's exact id."
    )
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

    def get_search_results(self, request, queryset, search_term):
        return queryset.filter(audit_search_q(search_term)), False

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


class TokenStateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return (("active", "Active"), ("revoked", "Revoked"))

    def queryset(self, request, queryset):
        if self.value() in ("active", "revoked"):
            return queryset.filter(revoked_at__isnull=self.value() == "active")
        return queryset


def _token_revoke(token: VentureApiToken, user: Any, reason: str) -> bool:
    return services.venture_api_token_revoke(token=token, actor=user, reason=reason)


TOKEN_OPERATIONS = {
    "revoke": Operation(
        name="revoke",
        label="Revoke",
        done="Revoked {count} {noun}.",
        unchanged="{count} {noun} had been revoked already.",
        permission="change",
        apply=_token_revoke,
        warning="Scripts and forms using the token are refused from now on; a revoked token "
        "cannot be brought back (make a new one).",
        danger=True,
    ),
}


@admin.register(VentureApiToken)
class VentureApiTokenAdmin(OperationsAdmin):
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
    list_filter = (VentureFilter, TokenStateFilter)
    search_fields = ("name", "prefix")
    operations = TOKEN_OPERATIONS
    actions = (
        operation_action("revoke_tokens", TOKEN_OPERATIONS["revoke"], "Revoke selected tokens…"),
    )
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

    def applicable_operations(self, obj: VentureApiToken) -> list[str]:
        return [] if obj.revoked_at else ["revoke"]

    def confirm_label(self, request, obj: VentureApiToken) -> str:
        return f"{obj.name} ({obj.venture.name}, {obj.prefix}…): {self.state(obj)}"
