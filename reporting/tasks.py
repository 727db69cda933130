"""django-q2 tasks of reporting."""

from __future__ import annotations


def reports_due() -> int:
    """Every 15 minutes (schedule made on migrate): the daily reports whose hour has come.
    Safe to run twice or concurrently: each schedule is claimed once a day."""
    from reporting.services import reports_due as write_due

    return len(write_due())
