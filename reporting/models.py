"""Models of the reporting app: the reports that were written (`ReportFile`: kept, listed and
downloadable in the admin) and a campaign's optional daily report (`ReportSchedule`)."""

from __future__ import annotations

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone

from ventures.models import Campaign


class ReportFormat(models.TextChoices):
    HTML = "html", "HTML (self-contained)"
    PDF = "pdf", "PDF"
    MARKDOWN = "md", "Markdown"
    CSV = "csv", "CSV"
    BUNDLE = "zip", "Proof bundle (ZIP)"


def default_formats() -> list[str]:
    return [ReportFormat.BUNDLE]


class ReportSchedule(models.Model):
    """A campaign's daily report: written once a day, after `hour` in the campaign's time zone,
    by the django-q2 cluster (`reporting.tasks.reports_due`), and kept `keep_days`."""

    campaign = models.OneToOneField(
        Campaign, on_delete=models.CASCADE, related_name="report_schedule"
    )
    is_active = models.BooleanField("daily report on", default=True)
    hour = models.PositiveSmallIntegerField(
        default=7,
        validators=[MaxValueValidator(23)],
        help_text="Hour of the day, in the campaign's time zone, after which the report is written.",
    )
    formats = models.JSONField(
        default=default_formats,
        help_text='Any of "html", "pdf", "md", "zip" (the proof bundle holds every format).',
    )
    keep_days = models.PositiveSmallIntegerField(
        default=30,
        validators=[MinValueValidator(1)],
        help_text="Reports older than this many days are deleted.",
    )
    # The campaign-local day of the last report: the conditional claim that makes a task run
    # twice (django-q2 may) write one report, not two.
    last_generated_on = models.DateField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = "daily report"

    def __str__(self) -> str:
        state = "on" if self.is_active else "off"
        return f"Daily report of {self.campaign} at {self.hour:02d}:00 ({state})"

    def clean(self) -> None:
        from django.core.exceptions import ValidationError

        allowed = {"html", "pdf", "md", "zip"}
        if not isinstance(self.formats, list) or not self.formats:
            raise ValidationError(
                {"formats": 'A list of formats, e.g. ["zip"] or ["html", "pdf"].'}
            )
        wrong = [f for f in self.formats if f not in allowed]
        if wrong:
            raise ValidationError(
                {"formats": f"Unknown format {wrong[0]!r}: use html, pdf, md or zip."}
            )


class ReportFile(models.Model):
    """A report written to the artifact directory, by hand (admin, `report generate`) or by
    the daily schedule, with its digest so a copy can be checked against it."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="report_files")
    format = models.CharField(max_length=4, choices=ReportFormat.choices)
    path = models.CharField(max_length=500, help_text="Relative to AICMO_ARTIFACT_DIR.")
    size = models.PositiveBigIntegerField(default=0)
    sha256 = models.CharField(max_length=64)
    generated_at = models.DateTimeField(default=timezone.now)
    generated_by = models.CharField(max_length=200)
    scheduled = models.BooleanField(default=False)

    class Meta:
        verbose_name = "report"
        # Viewers "read and download": downloading any campaign report, kept or fresh.
        permissions = [("download_reportfile", "Can download campaign reports")]
        ordering = ["-generated_at", "-id"]
        indexes = [
            models.Index(fields=["campaign", "-generated_at"], name="reportfile_campaign_idx")
        ]

    def __str__(self) -> str:
        return f"{self.get_format_display()} report of {self.campaign} ({self.generated_at:%Y-%m-%d %H:%M})"
