"""Signal receivers of the control plane."""

from __future__ import annotations

HEARTBEAT_SCHEDULE = "aicmo.worker-heartbeat"


def ensure_minutely_schedule(name: str, func: str, *, minutes: int = 1) -> None:
    """Make sure the django-q2 schedule `name` runs `func` every minute, or every `minutes`
    minutes (idempotent: a changed interval is updated)."""
    from django_q.models import Schedule

    Schedule.objects.update_or_create(
        name=name,
        defaults={
            "func": func,
            "schedule_type": Schedule.MINUTES,
            "minutes": minutes,
            "repeats": -1,
        },
    )


def ensure_worker_schedules(**kwargs) -> None:
    """After migrate: make sure the heartbeat schedule exists (idempotent)."""
    ensure_minutely_schedule(HEARTBEAT_SCHEDULE, "ventures.tasks.worker_heartbeat")
