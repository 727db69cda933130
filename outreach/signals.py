"""Signal receivers of the outbox."""

from __future__ import annotations

TICK_SCHEDULE = "outreach: dispatch tick"


def ensure_tick_schedule(**kwargs) -> None:
    """After migrate: the schedule that runs the tick every minute (idempotent)."""
    from ventures.signals import ensure_minutely_schedule

    ensure_minutely_schedule(TICK_SCHEDULE, "outreach.tasks.dispatch_tick")
