"""Preflight: is this installation fit to run (and, in live mode, to send)?

Each check returns Django check messages with stable ids (aicmo.E0xx errors, aicmo.W0xx
warnings). `settings_checks` is registered as a Django system check by the site
(`aicmo_site.apps`), so `manage.py` refuses to start with, say, the development secret key
outside DEBUG; the checks live here, beside the campaigns whose live start they guard, so that
no app imports the site. The database checks need a
connection and run from `preflight`, `/healthz` and before a live campaign starts (not as
system checks: `migrate` runs those, and must work on an unmigrated database).
"""

from __future__ import annotations

import tempfile
from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning
from django.db import DatabaseError, connections
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from ventures.models import SendMode, WorkerHeartbeat

_NON_DELIVERING_BACKENDS = {
    "django.core.mail.backends.console.EmailBackend": "prints to the console",
    "django.core.mail.backends.locmem.EmailBackend": "keeps mail in memory",
    "django.core.mail.backends.dummy.EmailBackend": "discards mail",
    "django.core.mail.backends.filebased.EmailBackend": "writes mail to files",
}


def check_secret_key() -> list[CheckMessage]:
    if settings.DEBUG:
        return []
    if settings.SECRET_KEY == settings.DEV_SECRET_KEY:
        return [
            Error(
                "SECRET_KEY is the development default; set SECRET_KEY (or DEBUG=1 for local use).",
                id="aicmo.E001",
            )
        ]
    if len(settings.SECRET_KEY) < 40 or len(set(settings.SECRET_KEY)) < 5:
        return [
            Error(
                "SECRET_KEY is too short or too simple: use at least 50 random characters.",
                id="aicmo.E001",
            )
        ]
    return []


def check_artifact_dir() -> list[CheckMessage]:
    path = settings.AICMO_ARTIFACT_DIR
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".preflight-"):
            pass
    except OSError as exc:
        return [
            Error(
                f"AICMO_ARTIFACT_DIR {path} is not writable: {exc.strerror or exc}.",
                id="aicmo.E004",
            )
        ]
    return []


def check_live_settings() -> list[CheckMessage]:
    """What live sending needs: the mode switch, a public https site URL and a real backend."""
    errors: list[CheckMessage] = []
    if settings.AICMO_SEND_MODE != SendMode.LIVE:
        errors.append(
            Error(
                "AICMO_SEND_MODE is proof: set AICMO_SEND_MODE=live to send for real.",
                id="aicmo.E010",
            )
        )
    site = urlsplit(settings.AICMO_SITE_URL)
    if site.scheme != "https" or site.hostname in ("localhost", "127.0.0.1", "::1", None):
        errors.append(
            Error(
                f"AICMO_SITE_URL={settings.AICMO_SITE_URL} must be a public https URL: "
                "recipients click unsubscribe links built from it.",
                id="aicmo.E011",
            )
        )
    backend = settings.EMAIL_BACKEND
    if not settings.EMAIL_URL_CONFIGURED:
        errors.append(
            Error(
                "EMAIL_URL is not set: live mode needs an SMTP server or an ESP.", id="aicmo.E012"
            )
        )
    elif backend in _NON_DELIVERING_BACKENDS:
        errors.append(
            Error(
                f"EMAIL_URL selects a backend that {_NON_DELIVERING_BACKENDS[backend]}; live mode needs SMTP or an ESP.",
                id="aicmo.E012",
            )
        )
    elif backend.startswith("anymail."):
        try:
            __import__(backend.rsplit(".", 1)[0])
        except ImportError:
            errors.append(
                Error(
                    f"EMAIL_URL selects {backend}, which is not installed (pip install django-anymail).",
                    id="aicmo.E013",
                )
            )
    return errors


def check_database(alias: str = "default") -> list[CheckMessage]:
    try:
        with connections[alias].cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return [Error(f"Database '{alias}' is not reachable: {first_line}", id="aicmo.E002")]
    return []


def check_migrations(alias: str = "default") -> list[CheckMessage]:
    executor = MigrationExecutor(connections[alias])
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    if plan:
        names = ", ".join(f"{m.app_label}.{m.name}" for m, _ in plan[:5])
        more = f" and {len(plan) - 5} more" if len(plan) > 5 else ""
        return [
            Error(
                f"{len(plan)} migration(s) not applied ({names}{more}): run `manage.py migrate`.",
                id="aicmo.E003",
            )
        ]
    return []


def heartbeat_age_seconds() -> float | None:
    last = (
        WorkerHeartbeat.objects.order_by("-last_seen").values_list("last_seen", flat=True).first()
    )
    return None if last is None else (timezone.now() - last).total_seconds()


def check_worker_heartbeat() -> list[CheckMessage]:
    age = heartbeat_age_seconds()
    if age is None:
        return [
            Warning(
                "No worker heartbeat yet: is the django-q2 cluster running (`make serve`)?",
                id="aicmo.W001",
            )
        ]
    if age > settings.AICMO_HEARTBEAT_MAX_AGE:
        return [
            Warning(
                f"Worker heartbeat is stale ({int(age)} s old): is the cluster running?",
                id="aicmo.W001",
            )
        ]
    return []


def run_preflight(*, mode: str | None = None) -> list[CheckMessage]:
    """All checks, in order; database-dependent checks only once the database answers."""
    mode = mode or settings.AICMO_SEND_MODE
    messages = check_secret_key() + check_artifact_dir()
    if mode == SendMode.LIVE:
        messages += check_live_settings()
    db = check_database()
    messages += db
    if not db:
        migrations = check_migrations()
        messages += migrations
        if not migrations:
            messages += check_worker_heartbeat()
    return messages


def preflight_errors(*, mode: str | None = None) -> list[str]:
    return [m.msg for m in run_preflight(mode=mode) if m.is_serious()]


def settings_checks(app_configs=None, databases=None, **kwargs) -> list[CheckMessage]:
    """Run with every manage.py command: fail at start, not at send time."""
    messages = check_secret_key()
    if settings.AICMO_SEND_MODE == SendMode.LIVE:
        messages += check_live_settings()
    return messages
