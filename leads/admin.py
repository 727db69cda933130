"""The lead console: a million leads, their imports, the suppression list, scoring and API tokens.

Speed on a million rows:
- Django's ChangeList always asks the paginator for `count`, and with `show_full_result_count`
  on it also counts the unfiltered table. Both are avoided: `show_full_result_count = False` and
  `CappedCountPaginator` counts at most COUNT_CAP + 1 rows (an index-only LIMIT in a subquery),
  so the page says "more than 10,000" instead of scanning a million rows on every load.
- Filters are the indexed ones (campaign, consent, segment, source, batch); their choices are
  single scoped queries. Search is an email prefix on the lower-cased `email_key`
  (`LIKE 'prefix%'`, served by the varchar_pattern_ops index), never `icontains`.
- The order is the primary key, newest first, which every lead index ends with.

Scoping: every queryset, object, action and download goes through `ventures.selectors`; another
venture's lead, batch or rule is a 404, exactly like a missing one.
"""

from __future__ import annotations

import json

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import model_ngettext
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import (
    HttpResponse,
    HttpResponseRedirect,
    JsonResponse,
)
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from leads.forms import (
    ImportConfirmForm,
    LeadImportForm,
    SuppressionEntryForm,
)
from leads.models import (
    BatchState,
    CampaignLeadPolicy,
    ConsentStatus,
    ImportBatch,
    Lead,
    LeadStatus,
    ScoringRule,
    SuppressionEntry,
    SuppressionKind,
    Unsubscribe,
    import_counts_text,
)
from leads.parsing import field_choices, field_label
from leads.selectors import lead_search_q
from leads.services import uploads
from leads.services.bulk import leads_mark_dnc, leads_move_to_segment
from leads.services.exports import batch_upload_kept, leads_csv_lines, rejected_csv_lines
from leads.services.privacy import erasure_reach, lead_data_export, lead_erase
from leads.services.rules import campaign_lead_policy_set, lead_rescore
from leads.services.runs import KEPT_UPLOAD_DAYS, import_batch_resume
from leads.suppression import (
    leads_suppress,
    suppression_add,
    suppression_lift,
    suppression_lift_refusal,
)
from leads.timeline import TIMELINE_LIMIT, lead_timeline
from leads.views import capture_url
from ventures.admin_toolkit import (
    AuditedAdmin,
    CampaignFilter,
    CappedCountPaginator,
    IdChoiceFilter,
    InvalidQueryString,
    Operation,
    OperationsAdmin,
    ReadOnlyAdmin,
    ReadOnlyMixin,
    VentureFilter,
    VentureObjectFilter,
    operation_action,
    scope_to_ventures,
    visible_campaigns,
    visible_venture_ids,
)
from ventures.http import streamed_response
from ventures.models import Campaign, IcpSegment, Venture
from ventures.selectors import (
    user_sees_all_ventures,
)

RECENT_BATCHES = 25  # batches offered in the lead list's batch filter
ISSUES_SHOWN = 50  # on the batch page; the CSV download has them all


# --- Changelist machinery --------------------------------------------------------------------


class SegmentFilter(VentureObjectFilter):
    title = "ICP segment"
    parameter_name = "segment"
    field = "segment_id"
    model = IcpSegment
    order = ("venture", "name")

    def name(self, obj: IcpSegment) -> str:
        return obj.name


class BatchFilter(IdChoiceFilter):
    """The newest batches (and the selected one, however old); older ones via the batch page."""

    title = "import batch"
    parameter_name = "batch"
    field = "source_batch_id"

    def lookups(self, request, model_admin):
        batches = scope_to_ventures(ImportBatch.objects.all(), request, "campaign__venture")
        rows = batches.order_by("-id").values_list("pk", "file_name", "channel")
        chosen = self.chosen_id()
        if chosen is not None:
            # One query: the newest batches, plus the chosen one however old it is.
            recent = rows.filter(pk__in=rows.values("pk")[:RECENT_BATCHES]) | rows.filter(pk=chosen)
            rows = recent.order_by("-id")
        else:
            rows = rows[:RECENT_BATCHES]
        return [(pk, f"#{pk} {name or channel}") for pk, name, channel in rows]


# --- Lead operations: one set-wise service call for a whole selection ---------------------------


def _leads(count: int) -> str:
    return f"{count} {model_ngettext(Lead._meta, count)}"


def _mark_dnc(leads, user, data: dict) -> list[tuple[int, str]]:
    total = leads.count()
    changed = leads_mark_dnc(leads=leads, actor=user, reason=data["reason"])
    text = f"Marked {_leads(changed)} do-not-contact."
    if total - changed:
        text += f" {_leads(total - changed)} already were."
    return [(messages.SUCCESS, text)]


def _suppress(leads, user, data: dict) -> list[tuple[int, str]]:
    result = leads_suppress(leads=leads, actor=user, reason=data["reason"])
    created = result.added
    return [
        (
            messages.SUCCESS,
            f"Added {created} suppression entr{'y' if created == 1 else 'ies'}; "
            f"{_leads(result.leads_suppressed)} suppressed across the venture's campaigns.",
        )
    ]


def _move_to_segment(leads, user, data: dict) -> list[tuple[int, str]]:
    segment = data["segment"]
    moved, refused = leads_move_to_segment(
        leads=leads, segment=segment, actor=user, reason=data["reason"]
    )
    shown = [(messages.SUCCESS, f"Moved {_leads(moved)} to {segment}.")]
    if refused:
        shown.append(
            (
                messages.WARNING,
                f"{_leads(refused)} of another venture left as they were: a segment belongs to "
                "one venture.",
            )
        )
    return shown


def _segment_field(request) -> dict[str, forms.Field]:
    segments = scope_to_ventures(IcpSegment.objects.select_related("venture"), request)
    return {
        "segment": forms.ModelChoiceField(
            queryset=segments, help_text="Only leads of the segment's venture are moved."
        )
    }


def _erase(lead: Lead, user, reason: str) -> bool:
    return bool(lead_erase(email=lead.email, actor=user, reason=reason).lead_ids)


ERASE_WARNING = (
    "Erasure cannot be undone. It blanks the person's email, name, company, every other "
    "personal field and custom field of every lead of theirs, in every campaign and venture; "
    "deletes their render logs and blanks what they wrote in replies and feedback; and keeps "
    "only a one-way hash of their identity on the global suppression list, so they are "
    "never imported or contacted again. Counts and audit rows stay, naming no personal data."
)

LEAD_OPERATIONS = {
    op.name: op
    for op in (
        Operation(
            name="mark-dnc",
            label="Mark do-not-contact",
            permission="change",
            apply_all=_mark_dnc,
            warning="They will never be contacted again; no import can lift DNC.",
        ),
        Operation(
            name="suppress",
            label="Suppress",
            permission="change",
            apply_all=_suppress,
            warning="Each person goes on their venture's suppression list: they are never "
            "contacted in any campaign of the venture and never re-imported as active.",
        ),
        Operation(
            name="move-to-segment",
            label="Move to an ICP segment",
            permission="change",
            apply_all=_move_to_segment,
            fields=_segment_field,
        ),
        Operation(
            name="erase",
            label="Erase personal data",
            permission="change",
            apply=_erase,
            done="Erased the person's personal data from every lead of theirs.",
            unchanged="Nothing to erase: the person's leads were already erased.",
            reason_required=True,
            warning=ERASE_WARNING,
        ),
    )
}


# --- Leads -----------------------------------------------------------------------------------


@admin.register(Lead)
class LeadAdmin(OperationsAdmin):
    operations = LEAD_OPERATIONS
    # What an operator scans for, left to right, all visible at 1440 px beside the navigation
    # and the filters (tests/test_leads_console_browser.py measures it): who (email, with the
    # name under it), their company, where they stand (status, with consent when it matters;
    # grade with score; segment), and the campaign. Source and dates are on the lead page and
    # in the filters.
    list_display = (
        "email_or_id",
        "company",
        "standing",
        "grade_and_score",
        "segment_name",
        "campaign",
    )
    list_display_links = ("email_or_id",)
    list_select_related = ("campaign", "segment__venture")
    list_filter = (
        CampaignFilter,
        "consent_status",
        "status",
        SegmentFilter,
        "source_channel",
        BatchFilter,
        "grade",
    )
    list_per_page = 50
    paginator = CappedCountPaginator
    show_full_result_count = False
    sortable_by = ()  # the order is the primary key: every index ends with it
    search_fields = ("email_key",)  # see lead_search_q: prefixes on indexed lower-cased columns
    search_help_text = (
        "The start of an email address, first name, last name or company, or a first name and "
        "the start of a last name ('ann smi'). Not case-sensitive."
    )
    actions = (
        operation_action(
            "mark_dnc", LEAD_OPERATIONS["mark-dnc"], "Mark selected leads do-not-contact…"
        ),
        operation_action("suppress", LEAD_OPERATIONS["suppress"], "Suppress selected leads…"),
        operation_action(
            "move_to_segment",
            LEAD_OPERATIONS["move-to-segment"],
            "Move selected leads to an ICP segment…",
        ),
    )
    change_form_template = "admin/leads/lead/change_form.html"
    change_list_template = "admin/leads/lead/change_list.html"
    readonly_fields = (
        "campaign",
        "venture",
        "status",
        "email",
        "identity_hash",
        "consent_status",
        "consent_at",
        "consent_source",
        "custom_fields_pretty",
        "source_channel",
        "source_list",
        "source_batch",
        "source_row",
        "utm_source",
        "utm_medium",
        "utm_campaign",
        "utm_content",
        "first_touch_at",
        "last_touch_at",
        "fit_score",
        "grade",
        "score_explanation",
        "activity_timeline",
        "created_at",
        "updated_at",
    )
    # The page reads top down as an operator asks: who is it and where do they stand (status,
    # consent, score and why), what happened to them, then the details; the technical fields
    # (identity hash, batch row, timestamps) last and collapsed.
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "email",
                    ("first_name", "last_name"),
                    ("company", "title"),
                    "campaign",
                    ("status", "consent_status"),
                )
            },
        ),
        ("Score", {"fields": (("fit_score", "grade"), "score_explanation", "segment")}),
        ("Activity", {"fields": ("activity_timeline",)}),
        (
            "Person and company",
            {
                "fields": (
                    "company_domain",
                    "website",
                    "phone",
                    "linkedin_url",
                    ("city", "state", "country"),
                    "timezone",
                    ("industry", "company_size"),
                    "value_estimate",
                )
            },
        ),
        ("Consent", {"fields": ("consent_at", "consent_source")}),
        ("Custom fields", {"fields": ("custom_fields_pretty",)}),
        (
            "Attribution",
            {
                "fields": (
                    "source_channel",
                    "source_list",
                    ("utm_source", "utm_medium", "utm_campaign", "utm_content"),
                    ("first_touch_at", "last_touch_at"),
                )
            },
        ),
        (
            "Technical details",
            {
                "classes": ("collapse",),
                "fields": (
                    "identity_hash",
                    "venture",
                    ("source_batch", "source_row"),
                    ("created_at", "updated_at"),
                ),
            },
        ),
    )

    def confirm_operation(self, request, objects, op, action_name=""):
        """The toolkit's confirm page, naming each lead (email, name, company, campaign) and,
        for a changelist action, the filters and search that chose them."""
        if isinstance(objects, QuerySet):
            objects = objects.select_related("campaign")
        response = super().confirm_operation(request, objects, op, action_name)
        if isinstance(response, TemplateResponse):
            response.template_name = [
                "admin/leads/lead/confirm_operation.html",
                response.template_name,
            ]
            response.context_data["filters"] = (
                self.filters_described(request) if action_name else []
            )
        return response

    def filters_described(self, request) -> list[tuple[str, str]]:
        """(filter title, chosen value) for each filter in the list's address, and the search."""
        cl = self.get_changelist_instance(request)
        described = []
        for spec in cl.filter_specs:
            if not set(spec.expected_parameters()) & set(request.GET):
                continue
            chosen = [str(c["display"]) for c in spec.choices(cl) if c["selected"]]
            described.append((str(spec.title).capitalize(), ", ".join(chosen) or "-"))
        if cl.query:
            described.append(("Search", cl.query))
        return described

    def get_search_results(self, request, queryset, search_term):
        return queryset.filter(lead_search_q(search_term)), False

    def get_readonly_fields(self, request, obj=None):
        if obj is not None and obj.status == LeadStatus.ERASED:
            return [f for fs in self.fieldsets for f in _flatten(fs[1]["fields"])]
        return self.readonly_fields

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "segment":
            kwargs["queryset"] = scope_to_ventures(IcpSegment.objects.all(), request)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def has_add_permission(self, request):
        return False  # leads arrive through imports, the capture form and the API

    def applicable_operations(self, obj: Lead) -> list[str]:
        if obj.status == LeadStatus.ERASED:
            return []
        names = [] if obj.consent_status == ConsentStatus.DNC else ["mark-dnc"]
        if obj.status != LeadStatus.SUPPRESSED:
            names.append("suppress")
        return [*names, "erase"] if obj.email else names

    def confirm_notes(self, request, operation, objects):
        if operation.name != "erase" or not objects:
            return []
        return [erasure_reach(objects[0], visible_venture_ids(request))]

    def has_delete_permission(self, request, obj=None):
        return False  # a person is removed by erasure (`leads erase`), never by a plain delete

    @admin.display(description="lead", ordering="id")
    def email_or_id(self, obj: Lead) -> str:
        if not obj.full_name:
            return str(obj)
        return format_html('{}<span class="lead-name">{}</span>', str(obj), obj.full_name)

    @admin.display(description="status")
    def standing(self, obj: Lead) -> str:
        if obj.consent_status == ConsentStatus.UNKNOWN:
            return obj.get_status_display()
        return format_html(
            '{}<span class="lead-consent consent-{}">{}</span>',
            obj.get_status_display(),
            obj.consent_status,
            obj.get_consent_status_display(),
        )

    @admin.display(description="grade")
    def grade_and_score(self, obj: Lead) -> str:
        return format_html('{} <span class="lead-score">({})</span>', obj.grade, obj.fit_score)

    @admin.display(description="segment")
    def segment_name(self, obj: Lead) -> str:
        return obj.segment.name if obj.segment_id else "-"

    @admin.display(description="timeline (newest first)")
    def activity_timeline(self, obj: Lead) -> str:
        entries = lead_timeline(obj)
        if not entries:
            return "Nothing has happened yet."
        rows = format_html_join(
            "\n",
            '<tr><td class="timeline-when">{}</td><td class="timeline-kind">{}</td><td>{}</td></tr>',
            (
                (
                    f"{timezone.localtime(e.at):%Y-%m-%d %H:%M}" if e.at else "-",
                    e.kind,
                    format_html('<a href="{}">{}</a>', e.url, e.text) if e.url else e.text,
                )
                for e in entries
            ),
        )
        more = (
            format_html("<p>The newest {} shown.</p>", TIMELINE_LIMIT)
            if len(entries) >= TIMELINE_LIMIT
            else ""
        )
        return format_html(
            '<table class="lead-timeline"><thead><tr><th>When</th><th>What</th><th>Detail</th>'
            "</tr></thead><tbody>{}</tbody></table>{}",
            rows,
            more,
        )

    @admin.display(description="custom fields")
    def custom_fields_pretty(self, obj: Lead) -> str:
        if not obj.custom_fields:
            return "-"
        return format_html_join(
            "\n",
            "<div><code>{}</code>: {}</div>",
            sorted(obj.custom_fields.items()),
        )

    # Per-lead personal data export (access requests).

    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        custom = [
            path(
                "import/",
                self.admin_site.admin_view(self.import_view),
                name="{}_{}_import".format(*info),
            ),
            path(
                "import/remap/",
                self.admin_site.admin_view(self.import_remap_view),
                name="{}_{}_import_remap".format(*info),
            ),
            path(
                "import/confirm/",
                self.admin_site.admin_view(self.import_confirm_view),
                name="{}_{}_import_confirm".format(*info),
            ),
            path(
                "export.csv",
                self.admin_site.admin_view(self.export_view),
                name="{}_{}_export".format(*info),
            ),
            path(
                "<path:object_id>/data-export/",
                self.admin_site.admin_view(self.data_export_view),
                name="{}_{}_data_export".format(*info),
            ),
        ]
        return custom + super().get_urls()

    def export_view(self, request):
        """The list as it is filtered and searched (and scoped), as a streamed CSV: Viewers
        too ("read and download"). Invalid filters are ignored here as on the list."""
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied
        try:
            leads = self.get_changelist_instance(request).get_queryset(request)
        except InvalidQueryString:
            messages.warning(request, "The filter or search was not valid; nothing exported.")
            return HttpResponseRedirect(reverse("admin:leads_lead_changelist"))
        stamp = timezone.localtime().strftime("%Y%m%d-%H%M")
        return streamed_response(
            leads_csv_lines(leads=leads), request, filename=f"leads-{stamp}.csv"
        )

    def data_export_view(self, request, object_id):
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied
        lead = self.get_object(request, object_id)
        data = lead_data_export(lead=lead, actor=request.user)  # audited by the service
        response = HttpResponse(
            json.dumps(data, indent=2, sort_keys=True, default=str),
            content_type="application/json; charset=utf-8",
        )
        response["Content-Disposition"] = f'attachment; filename="lead-{lead.pk}-data.json"'
        return response

    # Import: upload -> preview (mapping, first rows and their problems) -> confirm -> result.

    def has_import_permission(self, request) -> bool:
        return may_import_leads(request)

    def changelist_view(self, request, extra_context=None):
        extra_context = {**(extra_context or {}), "can_import": self.has_import_permission(request)}
        return super().changelist_view(request, extra_context)

    def _import_page(self, request, template: str, **context):
        request.current_app = self.admin_site.name
        context = {**self.admin_site.each_context(request), "opts": self.opts, **context}
        return TemplateResponse(request, f"admin/leads/lead/{template}", context)

    def import_view(self, request):
        """Upload step; a valid upload is previewed (nothing is written yet)."""
        if not self.has_import_permission(request):
            raise PermissionDenied
        campaigns = visible_campaigns(request)
        initial = {"campaign": request.GET.get("campaign")} if request.method == "GET" else None
        form = LeadImportForm(
            request.POST or None, request.FILES or None, campaigns=campaigns, initial=initial
        )
        if request.method == "POST" and form.is_valid():
            preview, error = uploads.upload_preview(
                upload=form.cleaned_data["file"], campaign=form.cleaned_data["campaign"]
            )
            if error:
                form.add_error("file", error)
            else:
                data = form.cleaned_data
                return self._preview_page(
                    request, preview, data["campaign"], data["source"], data["force"]
                )
        return self._import_page(request, "import_upload.html", title="Import leads", form=form)

    def _preview_page(self, request, staged, campaign, source: str, force: bool, error=""):
        ticket = uploads.ticket_sign(
            user=request.user, campaign=campaign, preview=staged, source=source, force=force
        )
        preview = staged.preview
        columns = [
            (index, header, preview.choices.get(header, ""))
            for index, header in enumerate(preview.choices)
        ]
        return self._import_page(
            request,
            "import_preview.html",
            title="Check the import",
            preview=preview,
            campaign=campaign,
            source=source,
            force=force,
            background=staged.size > uploads.background_threshold(),
            checked_in_full=staged.checked_in_full,
            confirm_form=ImportConfirmForm(initial={"ticket": ticket}),
            ticket=ticket,
            columns=columns,
            field_choices=field_choices(),
            totals=projected_totals(preview.projected) if preview.projected else None,
            remap_error=error,
        )

    def _ticket(self, request) -> tuple[dict | None, Campaign | None]:
        """The preview's ticket and campaign from a POST, or (None, None) with the reason
        shown: not a POST, expired, another user's, or its staged file no longer kept."""
        if request.method != "POST":
            return None, None
        ticket = uploads.ticket_read(request.POST.get("ticket", ""), user=request.user)
        campaign = ticket and visible_campaigns(request).filter(pk=ticket["campaign"]).first()
        if not campaign:
            self.message_user(
                request,
                "This import preview has expired or is not yours, or its file is no longer "
                "kept (an upload is kept for an hour between preview and confirm); upload the "
                "file again.",
                messages.ERROR,
            )
            return None, None
        return ticket, campaign

    def import_remap_view(self, request):
        """The operator changed the column mapping on the preview: preview the same staged file
        again with their choices (nothing is written)."""
        if not self.has_import_permission(request):
            raise PermissionDenied
        ticket, campaign = self._ticket(request)
        if not campaign:
            return HttpResponseRedirect(reverse("admin:leads_lead_import"))
        headers = list(ticket.get("choices") or {})
        choices = {
            header: request.POST.get(f"column-{index}", ticket["choices"][header])
            for index, header in enumerate(headers)
        }
        staged, error = uploads.staged_preview(
            name=ticket["file"], original_name=ticket["name"], campaign=campaign, choices=choices
        )
        if staged is None:  # the choices cannot be used: the preview as it was, and why
            staged, _ = uploads.staged_preview(
                name=ticket["file"],
                original_name=ticket["name"],
                campaign=campaign,
                choices=ticket["choices"],
            )
            if staged is None:
                self.message_user(request, error, messages.ERROR)
                return HttpResponseRedirect(reverse("admin:leads_lead_import"))
        return self._preview_page(
            request, staged, campaign, ticket["source"], ticket["force"], error=error
        )

    def import_confirm_view(self, request):
        """Confirm step: run the import now, or in the background for a large file."""
        if not self.has_import_permission(request):
            raise PermissionDenied
        ticket, campaign = self._ticket(request)
        if not campaign:
            return HttpResponseRedirect(reverse("admin:leads_lead_import"))
        batch, error = uploads.ticket_run(ticket=ticket, campaign=campaign, user=request.user)
        if error:
            upload = LeadImportForm(
                campaigns=visible_campaigns(request), initial={"campaign": campaign.pk}
            )
            upload.errors["__all__"] = upload.error_class([error])
            return self._import_page(
                request, "import_upload.html", title="Import leads", form=upload
            )
        if batch.state in (BatchState.PENDING, BatchState.RUNNING):
            text = (
                f"Import #{batch.pk} of {batch.rows_total} rows into {campaign.name} runs in "
                "the background."
            )
        else:
            text = f"Import #{batch.pk} into {campaign.name} finished: " + import_counts_text(
                batch.counts()
            )
            if batch.error:
                text += f" Error: {batch.error}"
        level = messages.ERROR if batch.state == BatchState.FAILED else messages.SUCCESS
        self.message_user(request, text, level)
        return HttpResponseRedirect(reverse("admin:leads_importbatch_change", args=[batch.pk]))


PROJECTED = (
    ("created", "New"),
    ("updated", "Updated (blanks filled)"),
    ("unchanged", "Already there, unchanged"),
    ("duplicates_in_file", "Duplicates in the file"),
    ("invalid", "Invalid"),
    ("suppressed", "Suppressed"),
    ("skipped_active_elsewhere", "Skipped (active in another campaign)"),
)


def projected_totals(counts: dict[str, int]) -> list[tuple[str, str, int]]:
    """(count name, label, value) of a dry run's counts, in the order the preview shows them."""
    return [(name, label, counts[name]) for name, label in PROJECTED]


def _flatten(fields) -> list[str]:
    out: list[str] = []
    for field in fields:
        out.extend(field if isinstance(field, tuple | list) else [field])
    return out


# --- Import batches ----------------------------------------------------------------------------


def _resume_batch(batch: ImportBatch, user, reason: str) -> bool:
    return import_batch_resume(batch=batch, actor=user, reason=reason)


IMPORT_BATCH_OPERATIONS = {
    "resume": Operation(
        name="resume",
        label="Resume import",
        done="Queued {count} {noun} to resume from the first unprocessed row.",
        unchanged="",
        permission="resume",
        apply=_resume_batch,
        warning="The import carries on from the first row not yet imported, on the task "
        "cluster. Rows already imported are not imported again. An import that still reports "
        "progress is refused.",
    ),
}


@admin.register(ImportBatch)
class ImportBatchAdmin(ReadOnlyMixin, OperationsAdmin):
    """A batch is a record of what happened: created by imports (the lead list's Import
    button), never added, changed or deleted here; an interrupted one can be resumed."""

    operations = IMPORT_BATCH_OPERATIONS
    venture_lookup = "campaign__venture"
    actions = (
        operation_action(
            "resume_imports",
            IMPORT_BATCH_OPERATIONS["resume"],
            "Resume selected interrupted imports…",
        ),
    )
    list_display = (
        "__str__",
        "campaign",
        "channel",
        "run_state",
        "progress",
        "rows_total",
        "created",
        "updated",
        "duplicates_in_file",
        "duplicates_in_campaign",
        "suppressed",
        "invalid",
        "created_at",
    )
    list_select_related = ("campaign",)
    list_filter = ("state", "channel", CampaignFilter)
    list_per_page = 50
    paginator = CappedCountPaginator
    show_full_result_count = False
    sortable_by = ()
    search_fields = ("file_name", "source")
    change_form_template = "admin/leads/importbatch/change_form.html"
    # The result leads with what matters to the operator: into which campaign, how it went
    # and what it did; the file's particulars (its SHA-256 among them) come after.
    fieldsets = (
        (None, {"fields": ("campaign_link", "run_state", "progress", "outcome", "error")}),
        (
            "Counts",
            {
                "fields": (
                    ("rows_total", "rows_done"),
                    ("created", "updated", "unchanged"),
                    ("duplicates_in_file", "duplicates_in_campaign"),
                    ("active_elsewhere", "skipped_active_elsewhere"),
                    ("suppressed", "invalid"),
                )
            },
        ),
        (
            "File",
            {
                "fields": (
                    "file_name",
                    "source",
                    "channel",
                    ("uploaded_by", "actor"),
                    "forced",
                    "file_size",
                    "file_sha256",
                )
            },
        ),
        (
            "Run",
            {
                "classes": ("collapse",),
                "fields": (("started_at", "heartbeat_at", "finished_at"), ("resumes", "slices")),
            },
        ),
        ("Mapping and rejected rows", {"fields": ("mapping_table", "issues_table")}),
    )

    def get_readonly_fields(self, request, obj=None):
        return [f for fs in self.fieldsets for f in _flatten(fs[1]["fields"])]

    def has_resume_permission(self, request) -> bool:
        return request.user.has_perm("leads.add_importbatch")  # whoever may import

    def applicable_operations(self, obj: ImportBatch) -> list[str]:
        return ["resume"] if obj.is_resumable() else []

    def confirm_notes(self, request, operation, objects):
        return [
            f"{batch}: {batch.run_status}; {batch.rows_done} of {batch.rows_total} rows done."
            for batch in objects
        ]

    @admin.display(description="state")
    def run_state(self, obj: ImportBatch) -> str:
        return obj.run_status

    @admin.display(description="campaign")
    def campaign_link(self, obj: ImportBatch) -> str:
        url = reverse("admin:ventures_campaign_change", args=[obj.campaign_id])
        return format_html('<a href="{}">{}</a>', url, obj.campaign.name)

    @admin.display(description="outcome")
    def outcome(self, obj: ImportBatch) -> str:
        shown = [(label, n) for _, label, n in projected_totals(obj.counts()) if n]
        if not shown:
            return "Nothing imported yet." if obj.state != BatchState.DONE else "No rows."
        return format_html(
            '<ul class="import-outcome">{}</ul>',
            format_html_join(
                "", "<li><strong>{}</strong> {}</li>", ((n, label) for label, n in shown)
            ),
        )

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("campaign")

    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        custom = [
            path(
                "<path:object_id>/progress/",
                self.admin_site.admin_view(self.progress_view),
                name="{}_{}_progress".format(*info),
            ),
            path(
                "<path:object_id>/rejected.csv",
                self.admin_site.admin_view(self.rejected_csv_view),
                name="{}_{}_rejected".format(*info),
            ),
        ]
        return custom + super().get_urls()

    def _batch(self, request, object_id) -> ImportBatch:
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied
        return self.get_object(request, object_id)

    def progress_view(self, request, object_id):
        """The JSON the batch page polls while an import runs."""
        return JsonResponse(batch_progress(self._batch(request, object_id)))

    def rejected_csv_view(self, request, object_id):
        batch = self._batch(request, object_id)
        return streamed_response(
            rejected_csv_lines(batch), request, filename=f"import-{batch.pk}-rejected.csv"
        )

    @admin.display(description="progress")
    def progress(self, obj: ImportBatch) -> str:
        return format_html(
            '<progress class="import-progress" max="100" value="{}"></progress> '
            '<span class="import-progress-text">{}% ({} of {} rows)</span>',
            obj.progress_percent,
            obj.progress_percent,
            obj.rows_done,
            obj.rows_total,
        )

    @admin.display(description="column mapping")
    def mapping_table(self, obj: ImportBatch) -> str:
        if not obj.mapping:
            return "-"
        return format_html(
            "<table><thead><tr><th>Column</th><th>Read as</th></tr></thead>"
            "<tbody>{}</tbody></table>",
            format_html_join("\n", "<tr><td>{}</td><td>{}</td></tr>", _mapping_rows(obj.mapping)),
        )

    @admin.display(description="rejected and skipped rows")
    def issues_table(self, obj: ImportBatch) -> str:
        errors = list(obj.issues.all()[: ISSUES_SHOWN + 1])
        if not errors:
            return "None."
        url = reverse("admin:leads_importbatch_rejected", args=[obj.pk])
        rows = format_html_join(
            "\n",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (e.row_number, e.column, e.get_kind_display(), e.reason)
                for e in errors[:ISSUES_SHOWN]
            ),
        )
        more = f"Showing the first {ISSUES_SHOWN}. " if len(errors) > ISSUES_SHOWN else ""
        if batch_upload_kept(obj):
            kept = (
                "with each row's original columns and a reason column: fix them and import "
                f"the file again. The upload is kept for {KEPT_UPLOAD_DAYS} days after the "
                "import."
            )
        else:
            kept = (
                "with row numbers and reasons only: the uploaded file is no longer kept "
                f"(uploads are kept {KEPT_UPLOAD_DAYS} days, and not at all for command-line "
                "imports or after an erasure), so open your copy of the file at those rows."
            )
        return format_html(
            "<table><thead><tr><th>Row</th><th>Column</th><th>Kind</th><th>Reason</th></tr>"
            '</thead><tbody>{}</tbody></table><p class="rejected-download">{}'
            '<a href="{}">Download all as CSV</a>, {}</p>',
            rows,
            more,
            url,
            kept,
        )


def _mapping_rows(mapping: dict) -> list[tuple[str, str]]:
    """Mapping as stored by the importer, {column: field or 'custom: name'}, in the operator's
    words ("First name", "Custom field"); skipped columns are not stored."""
    return [
        (column, "Custom field" if field.startswith("custom: ") else field_label(field))
        for column, field in mapping.items()
    ]


def batch_progress(batch: ImportBatch) -> dict:
    seen = batch.heartbeat_at
    return {
        "id": batch.pk,
        "state": batch.state,
        "state_label": batch.run_status,
        "percent": batch.progress_percent,
        "finished": batch.state in ("done", "failed"),
        "interrupted": batch.lease_lapsed(),
        "resumes": batch.resumes,
        "last_progress_at": seen.isoformat() if seen else None,
        "last_progress_seconds_ago": int((timezone.now() - seen).total_seconds()) if seen else None,
        "error": batch.error,
        **batch.counts(),
    }


# --- Suppression list --------------------------------------------------------------------------


def _lift(entries: QuerySet, user, data: dict) -> list[tuple[int, str]]:
    lifted = suppression_lift(entries=entries, actor=user, reason=data["reason"])
    return [(messages.SUCCESS, f"Lifted {lifted} suppression entr{'y' if lifted == 1 else 'ies'}.")]


SUPPRESSION_OPERATIONS = {
    "lift": Operation(
        name="lift",
        label="Lift suppression",
        permission="lift",
        apply_all=_lift,
        reason_required=True,
        danger=True,
        warning=(
            "Mail to these addresses and domains may go out again: a later import, or a lead "
            "not marked suppressed yet, is no longer stopped by them (leads already marked "
            "suppressed stay so). An unsubscribe, a spam complaint or an erasure is never "
            "lifted."
        ),
    )
}


@admin.register(SuppressionEntry)
class SuppressionEntryAdmin(OperationsAdmin):
    """Venture entries are scoped; global entries (no venture) are visible to everyone. Operators
    add entries for their ventures; only Administrators add global ones or lift any. Nothing
    is ever deleted: "Lift suppression" confirms, naming the entries, takes a reason and
    audits it (`leads.suppression.suppression_lift`)."""

    operations = SUPPRESSION_OPERATIONS
    actions = (
        operation_action(
            "lift_suppressions", SUPPRESSION_OPERATIONS["lift"], "Lift selected suppressions…"
        ),
    )

    list_display = ("shown_value", "kind", "venture", "reason", "source", "created_at")
    list_select_related = ("venture",)
    list_filter = ("kind", VentureFilter)
    list_per_page = 100
    paginator = CappedCountPaginator
    show_full_result_count = False
    sortable_by = ()
    search_fields = ("value",)
    search_help_text = "Email or domain prefix."
    fields = ("kind", "value", "venture", "reason", "source", "created_at")
    readonly_fields = ("source", "created_at")
    with_global_rows = True  # a global entry stops a send in every venture: everyone sees it

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip().lower()
        if not term:
            return queryset, False
        return queryset.filter(value__startswith=term), False

    def get_readonly_fields(self, request, obj=None):
        if obj is not None:
            return self.fields  # an entry is added or removed, never edited
        return self.readonly_fields

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change, **kwargs)
        if (
            obj is None
            and "venture" in form.base_fields
            and not user_sees_all_ventures(request.user)
        ):
            form.base_fields["venture"].required = True
        return form

    def has_change_permission(self, request, obj=None):
        return False if obj is not None else super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        return False  # taking someone off a list is "Lift suppression", never a silent delete

    def has_lift_permission(self, request) -> bool:
        # Taking someone off the list could get them contacted again: Administrators only.
        user = request.user
        return user_sees_all_ventures(user) and user.has_perm("leads.delete_suppressionentry")

    def applicable_operations(self, obj: SuppressionEntry) -> list[str]:
        return [] if suppression_lift_refusal(obj) else ["lift"]

    form = SuppressionEntryForm

    def save_model(self, request, obj, form, change):
        # The form has normalised the value; the one suppression service lists it.
        target = "@" + obj.value if obj.kind == SuppressionKind.DOMAIN else obj.value
        result = suppression_add(
            values=[target],
            venture=obj.venture,
            reason=obj.reason,
            actor=request.user,
            source="admin",
        )
        obj.pk = (
            SuppressionEntry.objects.filter(venture=obj.venture, kind=obj.kind, value=obj.value)
            .values_list("pk", flat=True)
            .first()
        )
        self.message_user(
            request,
            f"{result.leads_suppressed} active lead(s) matching it are now suppressed.",
            messages.INFO,
        )

    @admin.display(description="value", ordering="id")
    def shown_value(self, obj: SuppressionEntry) -> str:
        return str(obj)


# --- Unsubscribes ----------------------------------------------------------------------------------


@admin.register(Unsubscribe)
class UnsubscribeAdmin(ReadOnlyAdmin):
    """Who asked to hear nothing more, when, how and why: written by the unsubscribe link, the
    mail client's one-click and unsubscribe emails (leads.unsubscribes), never edited here."""

    list_display = ("__str__", "created_at", "venture", "campaign", "source", "reason", "lead")
    list_select_related = ("venture", "campaign", "lead")
    list_filter = (
        "source",
        "reason",
        VentureFilter,
        CampaignFilter,
        ("created_at", admin.DateFieldListFilter),
    )
    list_per_page = 100
    paginator = CappedCountPaginator
    sortable_by = ()
    fields = (
        "venture",
        "campaign",
        "lead",
        "identity_hash",
        "source",
        "created_at",
        "reason",
        "comment",
        "reason_at",
    )


# --- Scoring rules and per-campaign policy -------------------------------------------------------


def _rescore(rules, user, data: dict) -> list[tuple[int, str]]:
    ventures = Venture.objects.filter(pk__in=rules.values("venture_id"))
    names = ", ".join(sorted(v.name for v in ventures))
    changed = lead_rescore(leads=Lead.objects.filter(venture__in=ventures), actor=user)
    return [
        (
            messages.SUCCESS,
            f"Re-scored the leads of {names}: {_leads(changed)} changed score, grade or segment.",
        )
    ]


SCORING_OPERATIONS = {
    "rescore": Operation(
        name="rescore",
        label="Re-score the leads",
        permission="change",
        apply_all=_rescore,
        warning="Every lead of the selected rules' ventures gets its score, grade and ICP "
        "segment computed again with the active rules; lists and narrative figures move with "
        "them.",
    ),
}


@admin.register(ScoringRule)
class ScoringRuleAdmin(OperationsAdmin):
    operations = SCORING_OPERATIONS
    list_display = ("label", "venture", "field", "points", "is_active")
    list_select_related = ("venture",)
    list_filter = (VentureFilter, "field", "is_active")
    search_fields = ("label",)
    actions = (
        operation_action(
            "rescore_ventures",
            SCORING_OPERATIONS["rescore"],
            "Re-score every lead of the selected rules' ventures…",
        ),
    )

    def applicable_operations(self, obj) -> list[str]:
        return []  # a changelist action: it acts on ventures, not on one rule

    def confirm_label(self, request, obj: ScoringRule) -> str:
        return f"{obj.label} ({obj.venture.name}): {obj.points:+d} points"

    def confirm_notes(self, request, operation, objects):
        ventures = {rule.venture for rule in objects}
        return [
            f"{v.name}: {Lead.objects.filter(venture=v).count():,} leads scored again."
            for v in sorted(ventures, key=lambda v: v.name)
        ]


@admin.register(CampaignLeadPolicy)
class CampaignLeadPolicyAdmin(AuditedAdmin):
    list_display = ("campaign", "cross_campaign")
    list_select_related = ("campaign", "campaign__venture")
    list_filter = ("cross_campaign",)
    venture_lookup = "campaign__venture"

    def get_readonly_fields(self, request, obj=None):
        return ("campaign",) if obj is not None else ()

    def save_model(self, request, obj, form, change):
        # The core service writes and audits the change (one path with the CLI).
        campaign_lead_policy_set(
            campaign=obj.campaign, cross_campaign=obj.cross_campaign, actor=request.user
        )
        obj.pk = CampaignLeadPolicy.objects.get(campaign=obj.campaign).pk


# --- "Import leads" on the campaign list -----------------------------------------------------------


def may_import_leads(request) -> bool:
    """Whoever may create import batches (Operators, Administrators) may import; a Viewer may
    not, and is not offered the Import buttons and actions at all."""
    return request.user.has_perm("leads.add_importbatch")


@admin.action(description="Import leads into the selected campaign…", permissions=["import_leads"])
def import_leads_into_campaign(modeladmin, request, queryset):
    """Campaign action (added to the ventures app's CampaignAdmin below): opens the import
    upload step with the campaign chosen. Offered only to those who may import."""
    if not may_import_leads(request):  # a forged POST of the hidden action
        modeladmin.message_user(request, "You may not import leads.", messages.ERROR)
        return None
    campaigns = list(queryset[:2])
    if len(campaigns) != 1:
        modeladmin.message_user(
            request, "Select exactly one campaign to import into.", messages.ERROR
        )
        return None
    url = reverse("admin:leads_lead_import") + f"?campaign={campaigns[0].pk}"
    return HttpResponseRedirect(url)


@admin.action(description="Show the lead-capture form links of the selected campaigns")
def show_capture_links(modeladmin, request, queryset):
    """The public capture page of each campaign (a signed, unguessable link to share)."""
    for campaign in queryset:
        url = request.build_absolute_uri(capture_url(campaign))
        modeladmin.message_user(
            request,
            format_html(
                '{}: <a href="{}">{}</a> (add ?utm_source=...&amp;utm_campaign=... to attribute '
                "the leads it brings)",
                campaign.name,
                url,
                url,
            ),
            messages.INFO,
        )


def _add_campaign_import_action() -> None:
    # leads depends on ventures, never the reverse: the ventures app's CampaignAdmin cannot name
    # this action, so the leads admin (loaded after it) appends it.
    if not admin.site.is_registered(Campaign):
        return
    campaign_admin = admin.site.get_model_admin(Campaign)
    # The action's permission check asks the Campaign admin for this (Django hides an action
    # from users without its permission).
    campaign_admin.has_import_leads_permission = may_import_leads
    extra = (import_leads_into_campaign, show_capture_links)
    current = tuple(campaign_admin.actions or ())
    campaign_admin.actions = current + tuple(a for a in extra if a not in current)


_add_campaign_import_action()
