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


def mailboxes_poll() -> dict:
    """Every AICMO_IMAP_POLL_MINUTES (schedule made on migrate): one IMAP poll of every
    mailbox with an IMAP URL. Safe to run twice or concurrently: each mail's events are
    stored once, and each mailbox's highest UID read only grows."""
    from outreach.imap import mailboxes_poll

    results = mailboxes_poll()
    return {"polled": len(results), "failed": sum(1 for r in results if r.error)}
