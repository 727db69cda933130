"""Signal receivers of the control plane."""

from __future__ import annotations

HEARTBEAT_SCHEDULE = "aicmo.worker-heartbeat"


def ensure_worker_schedules(**kwargs) -> None:
    """After migrate: make sure the heartbeat schedule exists (idempotent)."""
    from django_q.models import Schedule

    Schedule.objects.update_or_create(
        name=HEARTBEAT_SCHEDULE,
        defaults={
            "func": "ventures.tasks.worker_heartbeat",
            "schedule_type": Schedule.MINUTES,
            "minutes": 1,
            "repeats": -1,
        },
    )
