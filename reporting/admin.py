"""The reports in the console. *Reporting → Reports* lists the kept reports (by hand or daily)
of the user's ventures and, above them, every campaign they may see with its report page.
The report page (`campaign/<id>/`) shows the whole report inside the admin, with its charts,
and downloads it in every format; "Keep a copy" writes it to the artifact directory.

Members of a venture only: another venture's campaign is a 404, exactly like a missing one.
Viewing needs `view_reportfile`, downloading `download_reportfile` (Viewers have both: they
"read and download"); keeping a copy and the daily schedule need `add_reportfile` /
`change_reportschedule` (Operators).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import Http404, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.views.decorators.http import require_POST

from reporting.models import ReportFile, ReportFormat, ReportSchedule
from reporting.panel import campaign_figures_panel
from reporting.render import context as report_context
from reporting.render import report_css
from reporting.services import (
    CSV_TABLES,
    ReportError,
    report_bytes,
    report_file_path,
    report_file_remove,
    report_keep,
    report_write,
    snapshot,
)
from ventures.admin_toolkit import (
    CampaignFilter,
    GuardedDeleteAdmin,
    ScopedAdmin,
    register_change_panel,
    visible_campaigns,
)
from ventures.http import file_response
from ventures.models import Campaign

CONTENT_TYPES = {
    "html": "text/html; charset=utf-8",
    "md": "text/markdown; charset=utf-8",
    "pdf": "application/pdf",
    "zip": "application/zip",
    "csv": "text/csv; charset=utf-8",
}


@admin.register(ReportFile)
class ReportFileAdmin(GuardedDeleteAdmin):
    """Kept reports: deleted only through the confirm page that names each file, audited
    with the reason, and the file goes from the artifact directory with its row."""

    venture_lookup = "campaign__venture"
    delete_warning = (
        "The files are removed from the artifact directory: download a copy first if a client "
        "may still need one. A new copy can be kept from the campaign's report page."
    )
    change_list_template = "admin/reporting/reportfile/change_list.html"
    list_display = (
        "campaign",
        "format",
        "generated_at",
        "generated_by",
        "scheduled",
        "size_text",
        "digest",
        "download",
    )
    list_filter = (CampaignFilter, "format", "scheduled")
    list_select_related = ("campaign",)
    readonly_fields = (
        "campaign",
        "format",
        "path",
        "size",
        "sha256",
        "generated_at",
        "generated_by",
        "scheduled",
    )

    def has_add_permission(self, request, obj=None):
        return False  # "Keep a copy" on a report page writes them

    def has_change_permission(self, request, obj=None):
        return False

    def delete_label(self, obj: ReportFile) -> str:
        return f"{obj}: {obj.path}"

    def delete_model(self, request, obj):
        super().delete_model(request, obj)  # audited, with the confirm page's reason
        transaction.on_commit(lambda: report_file_remove(obj))

    @admin.display(description="size")
    def size_text(self, obj: ReportFile) -> str:
        return f"{obj.size / 1024:,.1f} KiB"

    @admin.display(description="SHA-256")
    def digest(self, obj: ReportFile) -> str:
        return format_html('<code title="{}">{}…</code>', obj.sha256, obj.sha256[:12])

    @admin.display(description="")
    def download(self, obj: ReportFile) -> str:
        url = reverse("admin:reporting_reportfile_download", args=[obj.pk])
        return format_html('<a class="button" href="{}">Download</a>', url)

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path(
                "campaign/<int:campaign_id>/",
                wrap(self.report_view),
                name="reporting_campaign_report",
            ),
            path(
                "campaign/<int:campaign_id>/download/<str:fmt>/",
                wrap(self.report_download),
                name="reporting_campaign_download",
            ),
            path(
                "campaign/<int:campaign_id>/keep/",
                wrap(require_POST(self.report_keep_view)),
                name="reporting_campaign_keep",
            ),
            path(
                "<int:pk>/download/", wrap(self.file_download), name="reporting_reportfile_download"
            ),
            *super().get_urls(),
        ]

    def changelist_view(self, request, extra_context=None):
        campaigns = list(visible_campaigns(request)) if self.has_view_permission(request) else []
        extra = {"report_campaigns": campaigns, **(extra_context or {})}
        return super().changelist_view(request, extra_context=extra)

    # --- The report of one campaign ------------------------------------------------------------

    def _campaign(self, request, campaign_id: int) -> Campaign:
        if not self.has_view_permission(request):
            raise PermissionDenied
        campaign = visible_campaigns(request).filter(pk=campaign_id).first()
        if campaign is None:
            raise Http404("No such campaign.")
        return campaign

    def report_view(self, request, campaign_id: int):
        from reporting.figures import campaign_report

        campaign = self._campaign(request, campaign_id)
        report = campaign_report(campaign)
        can_download = request.user.has_perm("reporting.download_reportfile")
        return TemplateResponse(
            request,
            "admin/reporting/report.html",
            {
                **self.admin_site.each_context(request),
                **report_context(report),
                "css": report_css(document=False),
                "title": f"Report: {campaign.name}",
                "campaign": campaign,
                "opts": self.model._meta,
                "can_download": can_download,
                "can_keep": request.user.has_perm("reporting.add_reportfile"),
                "csv_tables": CSV_TABLES,
                "kept": ReportFile.objects.filter(campaign=campaign)[:10],
                "schedule": ReportSchedule.objects.filter(campaign=campaign).first(),
            },
        )

    def report_download(self, request, campaign_id: int, fmt: str):
        campaign = self._campaign(request, campaign_id)
        if not request.user.has_perm("reporting.download_reportfile"):
            raise PermissionDenied
        if fmt not in CONTENT_TYPES:
            raise Http404("No such format.")
        name = f"{campaign.slug}-report.{fmt}"
        try:
            if fmt == "csv":
                from reporting.exports import export_filename, export_response

                table = request.GET.get("table", "outcomes")
                if table not in CSV_TABLES:
                    raise Http404("No such table.")
                return export_response(
                    table, campaign, filename=export_filename(table, campaign), request=request
                )
            if fmt == "zip":
                # Written to a temporary file first (a ZIP needs its end to write its
                # directory), then streamed from it; the file goes when the response closes.
                handle = tempfile.NamedTemporaryFile(suffix=".zip", delete=False)  # noqa: SIM115
                handle.close()
                target = Path(handle.name)
                try:
                    report_write(campaign, "zip", target)
                    response = file_response(
                        target.open("rb"), request, filename=name, content_type=CONTENT_TYPES[fmt]
                    )
                finally:
                    target.unlink(missing_ok=True)  # the open file stays readable on POSIX
                return response
            from reporting.figures import campaign_report

            with snapshot():
                data = report_bytes(campaign_report(campaign), fmt)
        except ReportError as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return HttpResponseRedirect(
                reverse("admin:reporting_campaign_report", args=[campaign.pk])
            )
        response = HttpResponse(data, content_type=CONTENT_TYPES[fmt])
        response["Content-Disposition"] = f'attachment; filename="{name}"'
        return response

    def report_keep_view(self, request, campaign_id: int):
        campaign = self._campaign(request, campaign_id)
        if not request.user.has_perm("reporting.add_reportfile"):
            raise PermissionDenied
        fmt = request.POST.get("format", "zip")
        if fmt not in CONTENT_TYPES or fmt == "csv":
            fmt = "zip"
        try:
            kept = report_keep(campaign, fmt, actor=f"admin:{request.user.get_username()}")
        except ReportError as exc:
            self.message_user(request, str(exc), messages.ERROR)
        else:
            self.message_user(
                request,
                f"Kept a copy: {kept.path} ({kept.size / 1024:,.1f} KiB, SHA-256 {kept.sha256[:12]}…).",
                messages.SUCCESS,
            )
        return HttpResponseRedirect(reverse("admin:reporting_campaign_report", args=[campaign.pk]))

    def file_download(self, request, pk: int):
        kept = self.get_object(request, str(pk))
        if kept is None:
            raise Http404("No such report.")
        if not request.user.has_perm("reporting.download_reportfile"):
            raise PermissionDenied
        try:
            target = report_file_path(kept)
            handle = target.open("rb")
        except (OSError, ReportError):
            self.message_user(
                request,
                f"The file {kept.path} is no longer in the artifact directory.",
                messages.ERROR,
            )
            return HttpResponseRedirect(reverse("admin:reporting_reportfile_changelist"))
        return file_response(
            handle, request, filename=target.name, content_type=CONTENT_TYPES.get(kept.format)
        )


class ReportScheduleForm(forms.ModelForm):
    """Formats as checkboxes, not JSON to type."""

    formats = forms.MultipleChoiceField(
        choices=[(f.value, f.label) for f in ReportFormat if f != ReportFormat.CSV],
        widget=forms.CheckboxSelectMultiple,
        initial=[ReportFormat.BUNDLE],
        help_text="The proof bundle holds every format, the CSVs and the run artifacts.",
    )

    class Meta:
        model = ReportSchedule
        fields = ("campaign", "is_active", "hour", "formats", "keep_days")


@admin.register(ReportSchedule)
class ReportScheduleAdmin(ScopedAdmin):
    form = ReportScheduleForm
    venture_lookup = "campaign__venture"
    list_display = ("campaign", "is_active", "hour", "formats", "keep_days", "last_generated_on")
    list_filter = (CampaignFilter, "is_active")
    list_select_related = ("campaign",)

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "campaign":
            kwargs["queryset"] = visible_campaigns(request)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


register_change_panel(Campaign, "Figures", campaign_figures_panel, first=True)
