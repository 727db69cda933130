"""Signal receivers of templating."""

from __future__ import annotations

PURGE_SCHEDULE = "aicmo.render-log-purge"


def ensure_purge_schedule(**kwargs) -> None:
    """After migrate: make sure the daily render-log purge is scheduled (idempotent)."""
    from django_q.models import Schedule

    Schedule.objects.update_or_create(
        name=PURGE_SCHEDULE,
        defaults={
            "func": "templating.tasks.purge_render_logs",
            "schedule_type": Schedule.DAILY,
            "repeats": -1,
        },
    )
