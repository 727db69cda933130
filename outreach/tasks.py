"""django-q2 tasks of the outbox."""

from __future__ import annotations

from outreach.dispatch import tick


def dispatch_tick() -> int:
    """Every minute (schedule made on migrate): one pass of the tick. Safe to run twice or
    concurrently: correctness lives in the outbox rows, not in the task."""
    return tick(worker="django-q2").pk


def replies_escalate() -> int:
    """Every minute (schedule made on migrate): positive replies past their SLA are escalated
    to the venture's owner, each once (`outreach.sla`)."""
    from outreach.sla import replies_escalate as escalate

    return len(escalate())
