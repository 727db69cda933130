from django.apps import AppConfig

REPORT_SCHEDULE = "reporting: daily campaign reports"


def ensure_report_schedule(**kwargs) -> None:
    """After migrate: the schedule that writes the daily reports that are due (idempotent)."""
    from ventures.signals import ensure_minutely_schedule

    ensure_minutely_schedule(REPORT_SCHEDULE, "reporting.tasks.reports_due", minutes=15)


class ReportingConfig(AppConfig):
    name = "reporting"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        post_migrate.connect(ensure_report_schedule, sender=self)
