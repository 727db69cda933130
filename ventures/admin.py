"""The operator console for the control plane.

Scoping: every changelist, detail page, form choice and action sees only what
`ventures.selectors` lets the user see; an object outside that scope is a 404.
Writes: each operator action calls one `ventures.services` function per object and reports
what it did with `message_user`. Refusals (`DomainError`) become error messages, never a 500.
Kill switches and live mode go through a confirm page first (the shape of `delete_selected`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.utils import model_ngettext, quote, unquote
from django.core.exceptions import ObjectDoesNotExist, PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.db import models, transaction
from django.db.models import Count, OuterRef, Subquery, Value
from django.http import Http404, HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, re_path, reverse
from django.utils.functional import cached_property
from django.utils.html import format_html, format_html_join
from django.utils.timezone import localtime

from ventures import services
from ventures.forms import CampaignAdminForm, ReasonForm
from ventures.ids import parse_id
from ventures.models import (
    AuditEvent,
    Campaign,
    IcpSegment,
    SendMode,
    SystemControl,
    Venture,
    VentureMembership,
    WorkerHeartbeat,
)
from ventures.preflight import preflight_errors
from ventures.selectors import (
    campaign_halt_reason,
    campaigns_visible_to,
    global_kill_reason,
    global_kill_switch_on,
    user_sees_all_ventures,
    ventures_visible_to,
)

AUDIT_TRAIL_LIMIT = 50  # rows on a change page; the audit log holds the rest
MAX_ERROR_MESSAGES = 5  # per bulk action, then "and N more"

# --- Operations: what an action or an object-tools button does ---------------------------------


@dataclass(frozen=True)
class Operation:
    """One operator action, applied to each object through a service.

    `apply(obj, user, reason)` returns False when the object was already in the wanted state.
    `permission` names a `has_<permission>_permission(request)` method of the ModelAdmin.
    """

    name: str
    label: str
    done: str
    unchanged: str
    permission: str
    apply: Callable[[Any, Any, str], bool]
    confirm: bool = False
    reason_required: bool = False
    warning: str = ""


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


# --- Shared admin behaviour ----------------------------------------------------------------------


def _scope_by_venture(queryset: models.QuerySet, user, lookup: str = "venture") -> models.QuerySet:
    if user_sees_all_ventures(user):
        return queryset
    return queryset.filter(**{f"{lookup}__in": ventures_visible_to(user).values("pk")})


class IdChoiceFilter(admin.SimpleListFilter):
    """A filter on a foreign key by id. A value that is no id (`?campaign=abc`, `²`, a number
    past 64 bits) is ignored with a message, as Django ignores an invalid lookup, never a 500."""

    field = ""

    def chosen_id(self) -> int | None:
        return parse_id(self.value())

    def queryset(self, request, queryset):
        value = self.value()
        if value is None:
            return queryset
        chosen = self.chosen_id()
        if chosen is None:
            messages.warning(
                request,
                f"The {self.title} filter value {value[:40]!r} is not an id and was ignored.",
            )
            return queryset
        return queryset.filter(**{self.field: chosen})


class VisibleVentureFilter(IdChoiceFilter):
    """A venture filter that offers only the ventures the user may see."""

    title = "venture"
    parameter_name = "venture"
    field = "venture"

    def lookups(self, request, model_admin):
        return list(ventures_visible_to(request.user).values_list("pk", "name"))


class AuditVentureFilter(VisibleVentureFilter):
    field = "venture_id"


def _change_summary(event: AuditEvent) -> str:
    before, after = event.before or {}, event.after or {}
    keys = sorted(set(before) | set(after))
    return "; ".join(f"{k}: {before.get(k, '')} → {after.get(k, '')}" for k in keys)


def _audit_log_url(**filters: str) -> str:
    return reverse("admin:ventures_auditevent_changelist") + "?" + urlencode(filters)


COUNT_CAP = 10_000  # rows a changelist counts before it says "more than"


class CappedCountPaginator(Paginator):
    """A paginator that never counts more than COUNT_CAP + 1 rows.

    Django's ChangeList always asks its paginator for `count`; on a table that only grows (the
    audit log, leads) a full COUNT(*) on every page load is the slowest query of the page.
    `count` is min(real count, COUNT_CAP + 1), a COUNT over a LIMITed, unordered subquery;
    pages past the cap are not offered (narrow the list with a filter or a search). The
    project's admin/pagination.html says "More than N ..." when `capped`.
    """

    cap = COUNT_CAP

    @cached_property
    def count(self) -> int:
        return self.object_list.order_by()[: self.cap + 1].count()

    @property
    def capped(self) -> bool:
        return self.count > self.cap


class InvalidQueryString(Exception):
    """The changelist's query string names a lookup or a value the database cannot take."""


class QueryStringGuard:
    """A changelist whose query string cannot be turned into a query (Django's invalid
    lookup, a value too big for the column, a text where a number goes) answers with the
    plain list and a message saying the filter was ignored, never a 500.

    Django's own answer to an invalid lookup is a redirect to `?e=1` and a "database error"
    page, which tells an operator nothing; the console's admins and, through
    `guard_admin_site`, every other admin on the site use this instead."""

    def get_changelist_instance(self, request):
        try:
            return super().get_changelist_instance(request)
        except (IncorrectLookupParameters, ValidationError, ValueError, OverflowError) as exc:
            raise InvalidQueryString(str(exc)) from exc

    def changelist_view(self, request, extra_context=None):
        try:
            return super().changelist_view(request, extra_context)
        except InvalidQueryString:
            messages.warning(
                request, "The filter or search in the address was not valid and was ignored."
            )
            return HttpResponseRedirect(request.path)


def guard_admin_site(site: admin.AdminSite) -> None:
    """Give every registered admin that lacks it the QueryStringGuard (auth, django-q2...)."""
    for model, model_admin in list(site._registry.items()):
        if isinstance(model_admin, QueryStringGuard):
            continue
        guarded = type(
            f"Guarded{type(model_admin).__name__}", (QueryStringGuard, type(model_admin)), {}
        )
        site.unregister(model)
        site.register(model, guarded)


class ScopedAdmin(QueryStringGuard, admin.ModelAdmin):
    """Base of the control-plane admins: 404 outside the user's ventures, scoped FK choices."""

    show_full_result_count = False  # no COUNT(*) of the whole table on every page

    def get_object(self, request, object_id, from_field=None):
        obj = super().get_object(request, object_id, from_field)
        if obj is None:
            # Another venture's object must look exactly like a missing one.
            raise Http404(f"No {self.opts.verbose_name} with this ID.")
        return obj

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.remote_field.model is Venture:
            kwargs["queryset"] = ventures_visible_to(request.user)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


class AuditedAdmin(ScopedAdmin):
    """Configuration edits through the form are audited, with the before state read from the DB."""

    def save_model(self, request, obj, form, change):
        before = services.snapshot(self.model._default_manager.get(pk=obj.pk)) if change else None
        super().save_model(request, obj, form, change)
        services.audit_changes(
            actor=request.user,
            entity=obj,
            before=before,
            action=f"{self.opts.model_name}.{'update' if change else 'create'}",
        )

    def delete_model(self, request, obj):
        with transaction.atomic():
            services.audit_record(
                actor=request.user,
                action=f"{self.opts.model_name}.delete",
                entity=obj,
                before=services.snapshot(obj),
            )
            super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        with transaction.atomic():
            for obj in queryset:
                self.delete_model(request, obj)

    @admin.display(description="audit trail (newest first)")
    def audit_trail(self, obj: models.Model | None) -> str:
        """The object's audit rows as a read-only table (rendered by format_html only)."""
        if obj is None or obj.pk is None:
            return "-"
        events = AuditEvent.objects.for_entity(obj).order_by("-created_at", "-id")
        events = list(events[: AUDIT_TRAIL_LIMIT + 1])
        if not events:
            return "No audited changes yet."
        rows = format_html_join(
            "\n",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    f"{localtime(e.created_at):%Y-%m-%d %H:%M:%S}",
                    e.actor,
                    e.action,
                    _change_summary(e),
                    e.reason,
                )
                for e in events[:AUDIT_TRAIL_LIMIT]
            ),
        )
        shown = (
            f"Showing the newest {AUDIT_TRAIL_LIMIT}."
            if len(events) > AUDIT_TRAIL_LIMIT
            else f"{len(events)} event(s)."
        )
        link = _audit_log_url(entity_type=obj._meta.label_lower, entity_id=str(obj.pk))
        return format_html(
            '<table class="audit-trail"><thead><tr><th>When</th><th>Who</th><th>Action</th>'
            "<th>Change</th><th>Reason</th></tr></thead><tbody>{}</tbody></table>"
            '<p>{} <a href="{}">Open in the audit log</a></p>',
            rows,
            shown,
            link,
        )


class OperationsAdmin(AuditedAdmin):
    """Operations as changelist actions and as object-tools buttons on the change page.

    Buttons that act at once are POST-only URLs (a GET is 405); confirmed operations show a
    confirm page on GET and act on a POST carrying `post=yes` and a valid reason.
    """

    operations: dict[str, Operation] = {}
    change_form_template = "admin/ventures/change_form_operations.html"

    def applicable_operations(self, obj) -> list[str]:
        return list(self.operations)

    def confirm_notes(self, request, operation: Operation, objects: list) -> list[str]:
        return []

    def has_operation_permission(self, request, operation: Operation) -> bool:
        return getattr(self, f"has_{operation.permission}_permission")(request)

    def get_urls(self):
        names = "|".join(re.escape(name) for name in self.operations)
        info = self.opts.app_label, self.opts.model_name
        custom = [
            re_path(
                rf"^(?P<object_id>.+)/(?P<operation>{names})/$",
                self.admin_site.admin_view(self.operation_view),
                name="{}_{}_operation".format(*info),
            )
        ]
        return custom + super().get_urls()

    def operation_url(self, obj, name: str) -> str:
        info = self.opts.app_label, self.opts.model_name
        return reverse(
            "admin:{}_{}_operation".format(*info),
            args=[quote(obj.pk), name],
            current_app=self.admin_site.name,
        )

    def change_url(self, obj) -> str:
        info = self.opts.app_label, self.opts.model_name
        return reverse(
            "admin:{}_{}_change".format(*info),
            args=[quote(obj.pk)],
            current_app=self.admin_site.name,
        )

    def operation_view(self, request, object_id, operation):
        op = self.operations[operation]
        allowed = ("GET", "HEAD", "POST") if op.confirm else ("POST",)
        if request.method not in allowed:
            return HttpResponseNotAllowed(allowed)
        obj = self.get_object(request, unquote(object_id))
        if not self.has_operation_permission(request, op):
            raise PermissionDenied
        if op.confirm:
            response = self.confirm_operation(request, [obj], op)
            if response is not None:
                return response
        else:
            self.run_operation(request, [obj], op)
        return HttpResponseRedirect(self.change_url(obj))

    def confirm_operation(self, request, objects: Iterable, op: Operation, action_name=""):
        """The confirm page; returns None once the confirmed operation has run."""
        objects = list(objects)
        if request.method == "POST" and request.POST.get("post") == "yes":
            form = ReasonForm(request.POST, reason_required=op.reason_required)
            if form.is_valid():
                self.run_operation(request, objects, op, reason=form.cleaned_data["reason"])
                return None
        else:
            form = ReasonForm(reason_required=op.reason_required)
        single = objects[0] if len(objects) == 1 and not action_name else None
        context = {
            **self.admin_site.each_context(request),
            "title": f"{op.label}: are you sure?",
            "opts": self.opts,
            "operation": op,
            "objects": objects,
            "object": single,
            "objects_name": model_ngettext(self.opts, len(objects)),
            "notes": self.confirm_notes(request, op, objects),
            "form": form,
            "action_name": action_name,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "cancel_url": self.change_url(single)
            if single
            else reverse(
                f"admin:{self.opts.app_label}_{self.opts.model_name}_changelist",
                current_app=self.admin_site.name,
            ),
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/ventures/confirm_operation.html", context)

    def run_operation(self, request, objects: Iterable, op: Operation, reason: str = "") -> None:
        changed, unchanged, errors = 0, 0, []
        for obj in objects:
            try:
                if op.apply(obj, request.user, reason):
                    changed += 1
                else:
                    unchanged += 1
            except services.DomainError as exc:
                errors.append(str(exc))
            except ObjectDoesNotExist:  # deleted by someone else since the page was shown
                errors.append(f"{obj} no longer exists.")
        for error in errors[:MAX_ERROR_MESSAGES]:
            self.message_user(request, error, messages.ERROR)
        if len(errors) > MAX_ERROR_MESSAGES:
            more = len(errors) - MAX_ERROR_MESSAGES
            self.message_user(request, f"... and {more} more refused.", messages.ERROR)
        if changed:
            noun = model_ngettext(self.opts, changed)
            self.message_user(request, op.done.format(count=changed, noun=noun), messages.SUCCESS)
        if unchanged:
            noun = model_ngettext(self.opts, unchanged)
            text = op.unchanged.format(count=unchanged, noun=noun)
            self.message_user(request, text, messages.WARNING)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        obj = self.get_object(request, unquote(object_id))
        extra_context = {
            **(extra_context or {}),
            "operation_buttons": [
                {
                    "label": op.label + ("…" if op.confirm else ""),
                    "url": self.operation_url(obj, op.name),
                    "confirm": op.confirm,
                    "name": op.name,
                }
                for op in (self.operations[n] for n in self.applicable_operations(obj))
                if self.has_operation_permission(request, op)
            ],
        }
        if request.method == "GET" and global_kill_switch_on():
            self.message_user(
                request, "The global kill switch is ON: nothing is sent.", messages.WARNING
            )
        return super().change_view(request, object_id, form_url, extra_context)


# --- Ventures ------------------------------------------------------------------------------------


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
    actions = ("kill_ventures", "unkill_ventures")
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

    @admin.action(description="Kill selected ventures…", permissions=["kill"])
    def kill_ventures(self, request, queryset):
        return self.confirm_operation(request, queryset, self.operations["kill"], "kill_ventures")

    @admin.action(description="Unkill selected ventures…", permissions=["kill"])
    def unkill_ventures(self, request, queryset):
        op = self.operations["unkill"]
        return self.confirm_operation(request, queryset, op, "unkill_ventures")


@admin.register(IcpSegment)
class IcpSegmentAdmin(AuditedAdmin):
    list_display = ("name", "venture", "slug", "priority", "industries", "countries")
    list_select_related = ("venture",)
    list_filter = (VisibleVentureFilter,)
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

    def get_queryset(self, request):
        return _scope_by_venture(super().get_queryset(request), request.user)


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
    list_filter = ("status", "mode", "kill_switch", VisibleVentureFilter)
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
    actions = (
        "start_campaigns",
        "pause_campaigns",
        "resume_campaigns",
        "stop_campaigns",
        "kill_campaigns",
        "unkill_campaigns",
        "go_live_campaigns",
        "go_proof_campaigns",
        "new_capture_links",
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
            "Sender and value",
            {"fields": ("sender_name", "sender_email", "reply_to", "value_per_positive_reply")},
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

    def _run(self, request, queryset, name: str) -> None:
        self.run_operation(request, queryset, self.operations[name])

    @admin.action(description="Start selected campaigns", permissions=["operate"])
    def start_campaigns(self, request, queryset):
        self._run(request, queryset, "start")

    @admin.action(description="Pause selected campaigns", permissions=["operate"])
    def pause_campaigns(self, request, queryset):
        self._run(request, queryset, "pause")

    @admin.action(description="Resume selected campaigns", permissions=["operate"])
    def resume_campaigns(self, request, queryset):
        self._run(request, queryset, "resume")

    @admin.action(description="Stop selected campaigns", permissions=["operate"])
    def stop_campaigns(self, request, queryset):
        self._run(request, queryset, "stop")

    @admin.action(description="Kill selected campaigns…", permissions=["kill"])
    def kill_campaigns(self, request, queryset):
        return self.confirm_operation(request, queryset, self.operations["kill"], "kill_campaigns")

    @admin.action(description="Unkill selected campaigns…", permissions=["kill"])
    def unkill_campaigns(self, request, queryset):
        op = self.operations["unkill"]
        return self.confirm_operation(request, queryset, op, "unkill_campaigns")

    @admin.action(description="Switch selected campaigns to live mode…", permissions=["go_live"])
    def go_live_campaigns(self, request, queryset):
        op = self.operations["go-live"]
        return self.confirm_operation(request, queryset, op, "go_live_campaigns")

    @admin.action(description="Switch selected campaigns to proof mode", permissions=["operate"])
    def go_proof_campaigns(self, request, queryset):
        self._run(request, queryset, "go-proof")

    @admin.action(
        description="Give selected campaigns a new lead-capture link…", permissions=["operate"]
    )
    def new_capture_links(self, request, queryset):
        op = self.operations["new-capture-link"]
        return self.confirm_operation(request, queryset, op, "new_capture_links")


# --- Global kill switch, heartbeats, audit log -----------------------------------------------------


@admin.register(SystemControl)
class SystemControlAdmin(OperationsAdmin):
    """The single global kill switch row: shown read-only, toggled through a confirm page."""

    operations = GLOBAL_OPERATIONS
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

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False  # the form is read-only; the toggle is the only write

    def has_delete_permission(self, request, obj=None):
        return False

    def has_toggle_permission(self, request) -> bool:
        return request.user.has_perm("ventures.change_systemcontrol")

    def applicable_operations(self, obj: SystemControl) -> list[str]:
        return ["unkill" if obj.kill_switch else "kill"]


@admin.register(WorkerHeartbeat)
class WorkerHeartbeatAdmin(admin.ModelAdmin):
    list_display = ("name", "last_seen")
    ordering = ("-last_seen",)
    actions = None

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(AuditEvent)
class AuditEventAdmin(ScopedAdmin):
    """The audit log: read-only for everyone (superusers included), scoped by venture."""

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
        qs = _scope_by_venture(super().get_queryset(request), request.user, "venture_id")
        name = Venture.objects.filter(pk=OuterRef("venture_id")).values("name")[:1]
        return qs.annotate(venture_name_value=Subquery(name))

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

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
