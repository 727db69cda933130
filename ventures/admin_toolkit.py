"""The admin toolkit: what every app's ModelAdmin builds on.

- **Venture scope.** `ScopedAdmin` and the functions below restrict every queryset, choice and
  object to the ventures the user may see (`ventures.selectors` holds the rule; this module asks
  it once per request). Another venture's object is a 404, exactly like a missing one.
- **Operations.** An `Operation` is one operator action: a changelist action and, where it makes
  sense, an object-tools button on the change page. It always goes through a confirm page that
  names what it will touch (with a reason for the audit trail); a GET or an unconfirmed POST
  changes nothing. Then it calls a service: per object (`apply`), or once for the whole
  selection (`apply_all`: a million leads are one UPDATE, not a loop). Refusals (`DomainError`)
  become error messages, never a 500. `confirmed_action` gives a plain admin action (one
  another app wrote, say) the same confirm page.
- **Audit.** `AuditedAdmin` records every form save and delete, with the before state read
  from the database, and shows the object's audit trail. `GuardedDeleteAdmin` replaces
  Django's "Delete selected" by one that refuses what must stay and confirms the rest.
- **Filters.** `VentureFilter`, `CampaignFilter` and `VentureObjectFilter` offer only what the
  user's ventures hold: an Operator never sees another venture's names in a filter.
- **Big tables and bad addresses.** `CappedCountPaginator` never counts a whole table;
  `IdChoiceFilter` ignores a filter value that is no id; `QueryStringGuard` turns a query string
  the database cannot take into a message, on every admin of the site (`guard_admin_site`).
- **Read-only records.** `ReadOnlyMixin` for what the admin shows but never edits.
"""

from __future__ import annotations

import functools
import re
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.utils import model_ngettext, quote, unquote
from django.core.exceptions import ObjectDoesNotExist, PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.db import models, transaction
from django.db.models import Q, QuerySet
from django.http import Http404, HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import re_path, reverse
from django.utils.functional import cached_property
from django.utils.html import format_html, format_html_join
from django.utils.timezone import localtime

from ventures import services
from ventures.console import RAISE_REASON_MAX
from ventures.forms import ReasonForm
from ventures.ids import parse_id
from ventures.models import AuditEvent, Campaign, Venture
from ventures.selectors import (
    campaigns_visible_to,
    global_kill_reason,
    user_sees_all_ventures,
    ventures_visible_to,
)

AUDIT_TRAIL_LIMIT = 50  # rows on a change page; the audit log holds the rest
MAX_ERROR_MESSAGES = 5  # per operation, then "and N more"
CONFIRM_SHOWN = 20  # objects a confirm page names; it counts the rest

# --- Venture scope -------------------------------------------------------------------------------


def visible_venture_ids(request) -> list[int] | None:
    """The ids of the ventures the request's user may see, read once per request; None when
    the user sees every venture (no filter needed)."""
    if user_sees_all_ventures(request.user):
        return None
    cached = getattr(request, "_aicmo_venture_ids", None)
    if cached is None:
        cached = list(ventures_visible_to(request.user).values_list("pk", flat=True))
        request._aicmo_venture_ids = cached
    return cached


def scope_to_ventures(
    queryset: QuerySet, request, lookup: str = "venture", *, with_global: bool = False
) -> QuerySet:
    """`queryset` restricted to the ventures the request's user may see, through `lookup`.
    `with_global` also keeps rows without a venture (global suppression entries)."""
    ids = visible_venture_ids(request)
    if ids is None:
        return queryset
    visible = Q(**{f"{lookup}__in": ids})
    return queryset.filter(visible | Q(**{f"{lookup}__isnull": True}) if with_global else visible)


def visible_campaigns(request) -> QuerySet[Campaign]:
    """The campaigns the request's user may see, with their venture, in venture/name order."""
    ids = visible_venture_ids(request)
    campaigns = campaigns_visible_to(request.user) if ids is None else None
    if campaigns is None:  # the same rule as campaigns_visible_to, without asking again
        campaigns = Campaign.objects.filter(venture_id__in=ids)
    return campaigns.select_related("venture").order_by("venture__name", "name")


def request_global_kill_reason(request) -> str | None:
    """`global_kill_reason()`, read once per request: the banner on every page, the
    campaign list's badges and the change pages share it."""
    if not hasattr(request, "_aicmo_global_kill_reason"):
        request._aicmo_global_kill_reason = global_kill_reason()
    return request._aicmo_global_kill_reason


# --- Filters -------------------------------------------------------------------------------------


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


class VentureFilter(IdChoiceFilter):
    """A venture filter that offers only the ventures the user may see."""

    title = "venture"
    parameter_name = "venture"
    field = "venture"

    def lookups(self, request, model_admin):
        return list(ventures_visible_to(request.user).values_list("pk", "name"))


class VentureObjectFilter(IdChoiceFilter):
    """A filter on a foreign key to one venture's objects (`model`: mailboxes, templates,
    segments) that offers only those of the ventures the user may see, as "Venture / object"
    in `order`, each named by `name(obj)`."""

    model: type[models.Model]
    order: tuple[str, ...] = ("venture__name", "pk")

    def name(self, obj) -> str:
        return str(obj)

    def lookups(self, request, model_admin):
        rows = scope_to_ventures(self.model.objects.select_related("venture"), request)
        return [(o.pk, f"{o.venture.name} / {self.name(o)}") for o in rows.order_by(*self.order)]


class CampaignFilter(IdChoiceFilter):
    """A campaign filter that offers only the campaigns the user may see."""

    title = "campaign"
    parameter_name = "campaign"
    field = "campaign_id"

    def lookups(self, request, model_admin):
        return [(c.pk, f"{c.venture.name} / {c.name}") for c in visible_campaigns(request)]


# --- Changelists of big tables, and query strings the database cannot take -------------------


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
    """Give every registered admin that lacks it the QueryStringGuard (auth, django-q2...),
    and put each of its own actions behind the toolkit's confirm page (django-q2's "Resubmit
    selected tasks" runs a tick again, which sends): no action of the site acts unconfirmed."""
    for model, model_admin in list(site._registry.items()):
        if isinstance(model_admin, QueryStringGuard):
            continue
        actions = [
            confirmed_action(a) if callable(a) and not getattr(a, "aicmo_confirmed", False) else a
            for a in model_admin.actions or ()
        ]
        guarded = type(
            f"Guarded{type(model_admin).__name__}",
            (QueryStringGuard, type(model_admin)),
            {"actions": actions},
        )
        site.unregister(model)
        site.register(model, guarded)


# --- Base admins ---------------------------------------------------------------------------------


class ScopedAdmin(QueryStringGuard, admin.ModelAdmin):
    """Base of the console's admins: 404 outside the user's ventures, scoped venture choices.

    `venture_lookup` is the path from the model to its venture (`"campaign__venture"` for an
    import batch), None for a model the admin scopes itself; `with_global_rows` also shows rows
    without a venture (global suppression entries)."""

    show_full_result_count = False  # no COUNT(*) of the whole table on every page
    venture_lookup: str | None = "venture"
    with_global_rows = False

    def __init__(self, model, admin_site):
        super().__init__(model, admin_site)
        if issubclass(self.paginator, CappedCountPaginator):
            # A list too big to count is too big for Django's facet counts (a COUNT per
            # filter choice): no "Show counts" link.
            self.show_facets = admin.ShowFacets.NEVER

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        if self.venture_lookup is None:
            return queryset
        return scope_to_ventures(
            queryset, request, self.venture_lookup, with_global=self.with_global_rows
        )

    def get_object(self, request, object_id, from_field=None):
        obj = super().get_object(request, object_id, from_field)
        if obj is None:
            # Another venture's object must look exactly like a missing one.
            raise Http404(f"No {self.opts.verbose_name} with this ID.")
        return obj

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.remote_field.model is Venture:
            kwargs["queryset"] = ventures_visible_to(request.user)
        elif db_field.remote_field.model is Campaign:
            kwargs["queryset"] = visible_campaigns(request)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


class ReadOnlyMixin:
    """A record the admin shows but never adds, changes or deletes (an audit row, a version, a
    batch): what happened stays as it happened. Works for ModelAdmins and inlines."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class ReadOnlyAdmin(ReadOnlyMixin, ScopedAdmin):
    """A scoped, read-only list and detail page."""


# --- Audit ---------------------------------------------------------------------------------------


def _change_summary(event: AuditEvent) -> str:
    before, after = event.before or {}, event.after or {}
    keys = sorted(set(before) | set(after))
    return "; ".join(f"{k}: {before.get(k, '')} → {after.get(k, '')}" for k in keys)


def _audit_log_url(**filters: str) -> str:
    return reverse("admin:ventures_auditevent_changelist") + "?" + urlencode(filters)


class AuditedAdmin(ScopedAdmin):
    """Configuration edits through the form are audited, with the before state read from the DB
    and the reason a confirm step put on the request (`request.aicmo_audit_reason`)."""

    def save_model(self, request, obj, form, change):
        before = services.snapshot(self.model._default_manager.get(pk=obj.pk)) if change else None
        super().save_model(request, obj, form, change)
        services.audit_changes(
            actor=request.user,
            entity=obj,
            before=before,
            action=f"{self.opts.model_name}.{'update' if change else 'create'}",
            reason=getattr(request, "aicmo_audit_reason", ""),
        )

    def delete_model(self, request, obj):
        with transaction.atomic():
            services.audit_record(
                actor=request.user,
                action=f"{self.opts.model_name}.delete",
                entity=obj,
                before=services.snapshot(obj),
                reason=getattr(request, "aicmo_audit_reason", ""),
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


# --- Operations ----------------------------------------------------------------------------------


Messages = list[tuple[int, str]]


@dataclass(frozen=True)
class Operation:
    """One operator action, through a service.

    Either `apply(obj, user, reason)`, called for each object, which returns False when the
    object was already in the wanted state (reported with `done` and `unchanged`, formatted with
    `count` and `noun`); or `apply_all(queryset, user, data)`, called once for the whole
    selection with the confirm form's cleaned data, which returns the messages to show. Every
    operation confirms first, on a page naming the objects it will touch (pausing, marking a
    task done and switching to proof mode too: each changes what is sent).
    `permission` names a `has_<permission>_permission(request)` method of the ModelAdmin;
    `fields(request)` adds fields to the confirm form (a target segment, say) and
    `clean(cleaned_data)` checks them together (raising ValidationError). `danger` marks
    what stops or starts real sending (kill, live mode): red.
    `title` and `submit` replace the confirm page's "<label>: are you sure?" and "Yes, <label>".
    """

    name: str
    label: str
    permission: str
    apply: Callable[[Any, Any, str], bool] | None = None
    apply_all: Callable[[QuerySet, Any, dict], Messages] | None = None
    done: str = ""
    unchanged: str = ""
    reason_required: bool = False
    warning: str = ""
    fields: Callable[[Any], dict[str, forms.Field]] | None = None
    clean: Callable[[dict], None] | None = None
    danger: bool = False
    title: str = ""
    submit: str = ""

    def __post_init__(self) -> None:
        if (self.apply is None) == (self.apply_all is None):
            raise TypeError(f"operation {self.name!r} needs exactly one of apply and apply_all")


# Panels other apps add to a change page (the outbox adds one to the campaign page), without
# the app that owns the admin importing them: `register_change_panel` in AppConfig.ready().
ChangePanel = Callable[[Any, models.Model], str]
_CHANGE_PANELS: dict[type[models.Model], list[tuple[str, ChangePanel]]] = {}


def register_change_panel(
    model: type[models.Model], title: str, render: ChangePanel, *, first: bool = False
) -> None:
    """Show `render(request, obj)` (HTML built with format_html) under `title` on the change
    page of `model` (an OperationsAdmin's), after the panels registered before it (`first`:
    before them). Registering the same title again replaces it."""
    panels = [p for p in _CHANGE_PANELS.get(model, []) if p[0] != title]
    _CHANGE_PANELS[model] = [(title, render), *panels] if first else [*panels, (title, render)]


def operation_action(name: str, operation: Operation, description: str) -> Callable:
    """The changelist action `name` for `operation`: it confirms first, and needs the
    operation's permission (Django hides it from users without)."""

    def action(modeladmin, request, queryset):
        return modeladmin.confirm_operation(request, queryset, operation, name)

    action.__name__ = name
    return admin.action(description=description, permissions=[operation.permission])(action)


def confirmation(
    modeladmin: admin.ModelAdmin,
    request,
    objects: Iterable,
    op: Operation,
    action_name: str = "",
    *,
    label: Callable[[Any], str] = str,
    notes: Callable[[list], list[str]] = lambda shown: [],
    hidden: Iterable[tuple[str, str]] = (),
    cancel_url: str = "",
) -> tuple[dict | None, TemplateResponse | None]:
    """`(cleaned data, None)` once the confirm form came back confirmed (`post=yes`) and
    valid, else `(None, the confirm page)`: what `op` will do, how many objects it touches
    and the first CONFIRM_SHOWN of them by `label`, with the reason form. `hidden` (name,
    value) pairs go back with the form (a custom view's own parameters); `cancel_url` replaces
    the way back (the object's page, or the list). Nothing is changed here: the caller acts on
    the data, and only then."""
    if op.apply_all is None:
        objects = list(objects)
        count, shown = len(objects), objects[:CONFIRM_SHOWN]
    else:
        count, shown = objects.count(), list(objects[:CONFIRM_SHOWN])
    extra = op.fields(request) if op.fields else None
    if request.method == "POST" and request.POST.get("post") == "yes":
        form = ReasonForm(
            request.POST, reason_required=op.reason_required, extra=extra, check=op.clean
        )
        if form.is_valid():
            return form.cleaned_data, None
    else:
        form = ReasonForm(reason_required=op.reason_required, extra=extra)
    opts = modeladmin.opts
    single = shown[0] if count == 1 and not action_name else None
    site = modeladmin.admin_site.name
    cancel = cancel_url or (
        reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[quote(single.pk)])
        if single
        else reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist", current_app=site)
    )
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": op.title or f"{op.label}: are you sure?",
        "submit_label": op.submit or f"Yes, {op.label.lower()}",
        "opts": opts,
        "operation": op,
        "count": count,
        "objects": shown,
        "labels": [label(obj) for obj in shown],
        "more": count - len(shown),
        "object": single,
        "objects_name": model_ngettext(opts, count),
        "notes": notes(shown),
        "form": form,
        "action_name": action_name,
        "selected": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
        "select_across": request.POST.get("select_across") == "1",
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        "cancel_url": cancel,
        "hidden": list(hidden),
    }
    request.current_app = site
    return None, TemplateResponse(request, "admin/ventures/confirm_operation.html", context)


def confirmed_action(func: Callable, *, warning: str = "") -> Callable:
    """`func`, a plain admin action (`func(modeladmin, request, queryset)`, one another app
    wrote), behind the toolkit's confirm page: it runs only once the page came back confirmed,
    and each selected object gets an audit row with the reason given."""
    description = str(getattr(func, "short_description", "") or func.__name__.replace("_", " "))
    label = description.rstrip("…").replace(" selected", "").strip() or func.__name__
    op = Operation(
        name=func.__name__,
        label=label[:1].upper() + label[1:],
        permission="change",
        apply_all=lambda queryset, user, data: [],
        warning=warning,
    )

    def action(modeladmin, request, queryset):
        data, page = confirmation(modeladmin, request, queryset, op, func.__name__)
        if page is not None:
            return page
        with transaction.atomic():
            for obj in queryset:
                services.audit_record(
                    actor=request.user,
                    action=f"{modeladmin.opts.model_name}.{func.__name__}",
                    entity=obj,
                    reason=data["reason"],
                )
            return func(modeladmin, request, queryset)

    action.__name__ = func.__name__
    action.aicmo_confirmed = True
    permissions = getattr(func, "allowed_permissions", None)
    described = description if description.endswith("…") else description + "…"
    return admin.action(description=described, permissions=permissions)(action)


class LimitRaiseConfirmMixin:
    """A change-form save that lets a running or paused campaign send more (`limit_raises_of`:
    a campaign's own limits, or a mailbox's it sends from or joins, read from the bound and
    valid form, whose `instance` holds the edits) confirms first on its own page,
    old → new, and its reason goes into the save's audit row (`request.aicmo_audit_reason`,
    which `AuditedAdmin.save_model` reads). The page posts the form back as it came, except
    `raise_unechoed` fields (write-only secrets, such as a mailbox's connection URL): what the
    operator typed in them waits in their session (`_stash_secrets`), the page carries only a
    random token, and the confirmed post gets the values back (`_unstash_secrets`), so the
    save stores exactly what was typed and the secret never goes into a page.
    `raise_context` adds what the page shows around the changes (`intro`, `limits_now`,
    `limits_after`). With `raise_on_add`, a new record's save is checked too (`stored` None)."""

    raise_template = "admin/ventures/campaign_limits_confirm.html"
    raise_unechoed: tuple[str, ...] = ()
    raise_on_add = False  # a new record may raise too (`stored` is then None): a new mailbox

    def limit_raises_of(self, request, stored, form) -> list:
        return []

    def raise_context(self, request, stored, form) -> dict:
        return {}

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        if request.method == "POST" and (object_id is not None or self.raise_on_add):
            self._unstash_secrets(request)
            confirm = self._confirm_limit_raise(request, object_id)
            if confirm is not None:
                return confirm
        return super().changeform_view(request, object_id, form_url, extra_context)

    def _stash_secrets(self, request) -> str:
        """Keep the typed `raise_unechoed` values in the session for the confirmed post; the
        token that finds them again, or "" when none was typed. Only this page's latest
        stash is kept, and none older than `STASH_MAX_SECONDS`."""
        typed = {
            name: request.POST[name]
            for name in self.raise_unechoed
            if request.POST.get(name, "").strip()
        }
        stashes = _fresh_stashes(request)
        stashes = {t: s for t, s in stashes.items() if s["path"] != request.path}
        token = ""
        if typed:
            token = secrets.token_urlsafe(24)
            stashes[token] = {"path": request.path, "at": time.time(), "values": typed}
        request.session[STASH_SESSION_KEY] = stashes
        return token

    def _unstash_secrets(self, request) -> None:
        """Put back, into a post from the confirm page, the secrets its token names (each
        field the post left empty); the stash is used up."""
        token = request.POST.get(STASH_FIELD, "")
        if not token or not hasattr(request, "session"):
            return
        stashes = _fresh_stashes(request)
        stash = stashes.pop(token, None)
        request.session[STASH_SESSION_KEY] = stashes
        if stash is None or stash["path"] != request.path:
            return
        post = request.POST.copy()
        for name, value in stash["values"].items():
            if name in self.raise_unechoed and not post.get(name, "").strip():
                post[name] = value
        request.POST = post

    def _confirm_limit_raise(self, request, object_id):
        """The confirm page when the save raises; None to save (nothing raised, or confirmed
        with a reason)."""
        form = self._raise_form(request, object_id)
        if form is None:
            return None
        stored = self.get_object(request, unquote(object_id)) if object_id is not None else None
        if not form.is_valid():
            return None  # the form page shows its errors
        raises = self.limit_raises_of(request, stored, form)
        if not raises:
            return None
        reason = request.POST.get("_raise_reason", "").strip()
        if request.POST.get("_raise_confirmed") == "yes" and reason:
            request.aicmo_audit_reason = reason[:RAISE_REASON_MAX]
            return None
        skipped = {
            "csrfmiddlewaretoken",
            "_raise_reason",
            "_raise_confirmed",
            STASH_FIELD,
            *self.raise_unechoed,
        }
        shown = stored if stored is not None else form.instance
        info = self.opts.app_label, self.opts.model_name
        context = {
            **self.admin_site.each_context(request),
            "title": f"Raise the limits of {shown}: are you sure?",
            "opts": self.opts,
            "object": shown,
            "adding": stored is None,
            "raises": raises,
            "posted": [
                (key, value)
                for key, values in request.POST.lists()
                if key not in skipped
                for value in values
            ],
            "unechoed": [
                str(form.fields[name].label or name)
                for name in self.raise_unechoed
                if name in form.fields and request.POST.get(name, "").strip()
            ],
            "secrets_token": self._stash_secrets(request),
            "secrets_field": STASH_FIELD,
            "reason": reason,
            "reason_missing": request.POST.get("_raise_confirmed") == "yes" and not reason,
            "cancel_url": reverse("admin:{}_{}_change".format(*info), args=[quote(stored.pk)])
            if stored is not None
            else reverse("admin:{}_{}_changelist".format(*info)),
            **self.raise_context(request, stored, form),
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, self.raise_template, context)

    def _raise_form(self, request, object_id):
        """The bound form of the save (editing its own copy of the stored record), or None
        when the user may not make it (Django's view then says so)."""
        if object_id is None:
            if not self.has_add_permission(request):
                return None
            return self.get_form(request, None, change=False)(request.POST, request.FILES)
        stored = self.get_object(request, unquote(object_id))
        if stored is None or not self.has_change_permission(request, stored):
            return None
        edited = self.get_object(request, unquote(object_id))
        form = self.get_form(request, stored, change=True)
        return form(request.POST, request.FILES, instance=edited)


STASH_SESSION_KEY = "aicmo_raise_secrets"  # session key: token -> {path, at, values}
STASH_FIELD = "_raise_secrets"  # the confirm page's hidden field: the token only
STASH_MAX_SECONDS = 30 * 60


def _fresh_stashes(request) -> dict:
    """The session's secret stashes younger than STASH_MAX_SECONDS (older ones dropped)."""
    oldest = time.time() - STASH_MAX_SECONDS
    found = request.session.get(STASH_SESSION_KEY) or {}
    return {token: stash for token, stash in found.items() if stash.get("at", 0) >= oldest}


DELETE_ACTION = "delete_confirmed"


def _delete_selected_confirmed(modeladmin, request, queryset):
    """`GuardedDeleteAdmin`'s "Delete selected": refused whole if any object may not go."""
    refused = modeladmin.delete_refusals(queryset)
    if refused:
        for text in refused[:MAX_ERROR_MESSAGES]:
            modeladmin.message_user(request, text, messages.ERROR)
        if len(refused) > MAX_ERROR_MESSAGES:
            more = len(refused) - MAX_ERROR_MESSAGES
            modeladmin.message_user(request, f"... and {more} more refused.", messages.ERROR)
        modeladmin.message_user(request, "Nothing was deleted.", messages.WARNING)
        return None
    op = Operation(
        name=DELETE_ACTION,
        label="Delete",
        permission="delete",
        apply_all=lambda queryset, user, data: [],
        reason_required=True,
        warning=modeladmin.delete_warning,
    )
    data, page = confirmation(
        modeladmin, request, queryset, op, DELETE_ACTION, label=modeladmin.delete_label
    )
    if page is not None:
        return page
    count = queryset.count()
    request.aicmo_audit_reason = data["reason"]
    modeladmin.delete_queryset(request, queryset)
    noun = model_ngettext(modeladmin.opts, count)
    modeladmin.message_user(request, f"Deleted {count} {noun}.", messages.SUCCESS)
    return None


_delete_selected_confirmed.__name__ = DELETE_ACTION
_delete_selected_confirmed.aicmo_confirmed = True
delete_selected_confirmed = admin.action(
    description="Delete selected %(verbose_name_plural)s…", permissions=["delete"]
)(_delete_selected_confirmed)


DeleteRefusals = Callable[[QuerySet], list[str]]
_DELETE_REFUSALS: dict[str, dict[str, DeleteRefusals]] = {}


def register_delete_refusals(label: str, name: str, refusals: DeleteRefusals) -> None:
    """Let an app that knows why some objects of the model `label` ("ventures.icpsegment")
    must stay say so: `refusals(queryset)` returns one sentence per object of the selection
    that may not be deleted, in a fixed number of queries. `GuardedDeleteAdmin`'s default
    `delete_refusals` asks every registered one; registered in `AppConfig.ready()`, the same
    name again replaces it."""
    _DELETE_REFUSALS.setdefault(label, {})[name] = refusals


def kept_by(queryset: QuerySet) -> dict[Any, list[str]]:
    """For each object of `queryset` that records of another model keep (a PROTECT foreign
    key: a venture's campaigns, leads, templates...), their models' plural names; one query."""
    model = queryset.model
    relations = [
        rel
        for rel in model._meta.related_objects
        if getattr(rel, "on_delete", None) is models.PROTECT and not rel.many_to_many
    ]
    if not relations:
        return {}
    flags = {
        f"kept_{index}": models.Exists(
            rel.related_model._base_manager.filter(**{rel.field.name: models.OuterRef("pk")})
        )
        for index, rel in enumerate(relations)
    }
    found = {}
    for row in (
        queryset.order_by()
        .annotate(**flags)
        .filter(functools.reduce(lambda q, flag: q | Q(**{flag: True}), flags, Q()))
    ):
        found[row] = [
            str(rel.related_model._meta.verbose_name_plural)
            for index, rel in enumerate(relations)
            if getattr(row, f"kept_{index}")
        ]
    return found


def deleted_with(obj: models.Model) -> str:
    """What deleting `obj` takes with it or changes, as a person reads it: "with 2 ICP
    segments and 1 scoring rule; 40 leads lose their ICP segment" ("" when nothing)."""
    from django.contrib.admin.utils import NestedObjects

    collector = NestedObjects(using=_db_of(obj))
    collector.collect([obj])
    gone = [
        f"{len(objs):,} {_noun(model, len(objs))}"
        for model, objs in collector.model_objs.items()
        if model is not type(obj) and objs
    ]
    cleared = []
    for (field, _value), batches in collector.field_updates.items():
        count = sum(b.count() if isinstance(b, QuerySet) else len(b) for b in batches)
        if count:
            noun = _noun(field.model, count)
            cleared.append(f"{count:,} {noun} lose their {field.verbose_name}")
    parts = ["with " + _and(gone)] if gone else []
    return "; ".join(parts + cleared)


def _db_of(obj: models.Model) -> str:
    from django.db import router

    return router.db_for_write(type(obj), instance=obj)


def _noun(model, count: int) -> str:
    opts = model._meta
    return str(opts.verbose_name if count == 1 else opts.verbose_name_plural)


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


class GuardedDeleteAdmin(AuditedAdmin):
    """Django's "Delete selected" made safe: `delete_refusals(queryset)` (a fixed number of
    queries for the selection) says why each object that may not be deleted stays (it has
    messages, say), and then nothing is deleted; otherwise the toolkit's confirm page names
    what goes (`delete_label`, with `delete_warning`) and asks for a reason, which the audit
    row of each deleted object carries. An object with a refusal has no Delete link on its
    page, and its delete page says why instead.

    By default an object stays while records of another model keep it (`kept_by`: PROTECT
    foreign keys, `delete_instead` saying what to do instead) or an app's registered
    refusals say so (`register_delete_refusals`)."""

    actions = (delete_selected_confirmed,)
    delete_warning = ""
    delete_instead = ""  # the refusal's last sentence: what to do instead of deleting

    def delete_refusals(self, queryset: QuerySet) -> list[str]:
        noun = str(self.opts.verbose_name).capitalize()
        refused = [
            f"{noun} '{obj}' still has {_and(names)}, which keep it, and cannot be deleted."
            + (f" {self.delete_instead}" if self.delete_instead else "")
            for obj, names in kept_by(queryset).items()
        ]
        for refusals in _DELETE_REFUSALS.get(self.opts.label_lower, {}).values():
            refused += refusals(queryset)
        return refused

    def delete_label(self, obj) -> str:
        return str(obj)

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # Django's: no confirmation of ours, no guard
        return actions

    def _refusal(self, obj) -> str:
        found = self.delete_refusals(self.model._default_manager.filter(pk=obj.pk))
        return found[0] if found else ""

    def has_delete_permission(self, request, obj=None):
        if obj is not None and self._refusal(obj):
            return False  # no delete link on the page; delete_view says why
        return super().has_delete_permission(request, obj)

    def delete_view(self, request, object_id, extra_context=None):
        obj = self.get_object(request, unquote(object_id))
        refusal = self._refusal(obj) if obj is not None else ""
        if refusal and super().has_delete_permission(request, obj):
            self.message_user(request, refusal, messages.ERROR)
            info = self.opts.app_label, self.opts.model_name
            return HttpResponseRedirect(
                reverse("admin:{}_{}_change".format(*info), args=[quote(obj.pk)])
            )
        return super().delete_view(request, object_id, extra_context)


class OperationsAdmin(AuditedAdmin):
    """Operations as changelist actions and as object-tools buttons on the change page.

    A button links to the operation's confirm page (GET), which acts on a POST carrying
    `post=yes` and a valid form; any other request changes nothing. A changelist
    action confirms with `confirm_operation(request, queryset, op, action_name)`: the page posts
    back the selection as Django's own actions do (the ids, or "all matching" with the list's
    filters still in the address), so a confirmed action acts on exactly what was selected.

    `panels_first` puts the page's header (`page_header`: a state badge, say) and its change
    panels above the form, which becomes a collapsed "Configuration" section below them (the
    Save buttons stay visible). A form with errors is shown open and first, panels after it.
    """

    operations: dict[str, Operation] = {}
    change_form_template = "admin/ventures/change_form_operations.html"
    panels_first = False

    def page_header(self, request, obj) -> str:
        """HTML shown at the top of the change page when `panels_first` (format_html only)."""
        return ""

    def applicable_operations(self, obj) -> list[str]:
        return list(self.operations)

    def confirm_notes(self, request, operation: Operation, objects: list) -> list[str]:
        return []

    def confirm_label(self, request, obj) -> str:
        """How the confirm page names one object of the selection (the campaign admin adds
        its state, so an operator sees what the operation will stop)."""
        return str(obj)

    def has_operation_permission(self, request, operation: Operation) -> bool:
        return getattr(self, f"has_{operation.permission}_permission")(request)

    def get_urls(self):
        if not self.operations:
            return super().get_urls()
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
        allowed = ("GET", "HEAD", "POST")
        if request.method not in allowed:
            return HttpResponseNotAllowed(allowed)
        obj = self.get_object(request, unquote(object_id))
        if not self.has_operation_permission(request, op):
            raise PermissionDenied
        selection = [obj] if op.apply else self.get_queryset(request).filter(pk=obj.pk)
        response = self.confirm_operation(request, selection, op)
        if response is not None:
            return response
        return HttpResponseRedirect(self.change_url(obj))

    def confirm_operation(self, request, objects: Iterable, op: Operation, action_name=""):
        """The confirm page; returns None once the confirmed operation has run."""
        data, page = confirmation(
            self,
            request,
            objects,
            op,
            action_name,
            label=lambda obj: self.confirm_label(request, obj),
            notes=lambda shown: self.confirm_notes(request, op, shown),
        )
        if page is None:
            self.run_operation(request, objects, op, data=data)
        return page

    def run_operation(self, request, objects: Iterable, op: Operation, data=None) -> None:
        data = data or {"reason": ""}
        if op.apply_all is not None:
            try:
                shown = op.apply_all(objects, request.user, data)
            except services.DomainError as exc:
                shown = [(messages.ERROR, str(exc))]
            for level, text in shown:
                self.message_user(request, text, level)
            return
        changed, unchanged, errors = 0, 0, []
        for obj in objects:
            try:
                if op.apply(obj, request.user, data["reason"]):
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
                    "label": op.label + "…",
                    "url": self.operation_url(obj, op.name),
                    "danger": op.danger,
                    "name": op.name,
                }
                for op in (self.operations[n] for n in self.applicable_operations(obj))
                if self.has_operation_permission(request, op)
            ],
            "panels": [
                (title, render(request, obj))
                for title, render in _CHANGE_PANELS.get(self.model, [])
            ],
            "panels_first": self.panels_first,
            "page_header": self.page_header(request, obj) if self.panels_first else "",
        }
        return super().change_view(request, object_id, form_url, extra_context)
