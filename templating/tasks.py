"""django-q2 tasks of templating."""

from __future__ import annotations

from templating.services import render_logs_purge


def purge_render_logs() -> int:
    """Scheduled daily: drop render logs past AICMO_RENDER_LOG_RETENTION_DAYS (idempotent)."""
    return render_logs_purge()
