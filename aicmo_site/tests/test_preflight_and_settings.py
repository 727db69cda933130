"""Preflight, settings validation, /healthz and the deploy check, as an operator meets them."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys

import pytest
import time_machine
from django.test import override_settings
from django.utils import timezone

from tests.proc import GOOD_SECRET, REPO, clean_env, manage, python
from ventures.models import WorkerHeartbeat
from ventures.preflight import run_preflight
from ventures.tasks import worker_heartbeat

UNREACHABLE_DB = "postgres://postgres@127.0.0.1:9/aicmo_nowhere"


def ids(messages) -> list[str]:
    return [m.id for m in messages]


# --- preflight, in process -------------------------------------------------------------------


@pytest.mark.django_db
def test_preflight_passes_with_only_a_heartbeat_warning_before_any_worker_ran():
    assert ids(run_preflight()) == ["aicmo.W001"]


@pytest.mark.django_db
def test_preflight_is_clean_once_a_worker_heartbeat_is_fresh():
    worker_heartbeat()
    assert run_preflight() == []


@pytest.mark.django_db
def test_stale_heartbeat_is_a_warning_not_a_failure():
    worker_heartbeat()
    with time_machine.travel(timezone.now() + timezone.timedelta(minutes=30)):
        [message] = run_preflight()
    assert message.id == "aicmo.W001"
    assert "stale" in message.msg
    assert not message.is_serious()


@pytest.mark.django_db
def test_development_secret_key_fails_outside_debug(settings):
    settings.SECRET_KEY = settings.DEV_SECRET_KEY
    assert "aicmo.E001" in ids(run_preflight())
    settings.DEBUG = True
    assert "aicmo.E001" not in ids(run_preflight())


@pytest.mark.django_db
def test_short_secret_key_fails(settings):
    settings.SECRET_KEY = "short"
    assert "aicmo.E001" in ids(run_preflight())


@pytest.mark.django_db
def test_unwritable_artifact_dir_fails(settings, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    settings.AICMO_ARTIFACT_DIR = blocker / "artifacts"
    [message] = [m for m in run_preflight() if m.id == "aicmo.E004"]
    assert str(blocker / "artifacts") in message.msg


@pytest.mark.django_db
def test_live_mode_needs_live_switch_public_https_site_and_a_real_backend():
    found = ids(run_preflight(mode="live"))
    assert {"aicmo.E010", "aicmo.E011", "aicmo.E012"} <= set(found)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "backend",
    [
        "django.core.mail.backends.console.EmailBackend",
        "django.core.mail.backends.locmem.EmailBackend",
        "django.core.mail.backends.filebased.EmailBackend",
    ],
)
def test_live_mode_refuses_backends_that_do_not_deliver(backend):
    with override_settings(
        AICMO_SEND_MODE="live",
        AICMO_SITE_URL="https://aicmo.example.com",
        EMAIL_URL_CONFIGURED=True,
        EMAIL_BACKEND=backend,
    ):
        assert ids(run_preflight(mode="live")) == ["aicmo.E012", "aicmo.W001"]


@pytest.mark.django_db
def test_live_mode_refuses_an_esp_backend_that_is_not_installed():
    with override_settings(
        AICMO_SEND_MODE="live",
        AICMO_SITE_URL="https://aicmo.example.com",
        EMAIL_URL_CONFIGURED=True,
        EMAIL_BACKEND="anymail.backends.nosuchesp.EmailBackend",
    ):
        assert "aicmo.E013" in ids(run_preflight(mode="live"))


@pytest.mark.django_db
def test_live_mode_passes_with_smtp_and_a_public_site():
    worker_heartbeat()
    with override_settings(
        AICMO_SEND_MODE="live",
        AICMO_SITE_URL="https://aicmo.example.com",
        EMAIL_URL_CONFIGURED=True,
        EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend",
    ):
        assert run_preflight(mode="live") == []


# --- preflight, as a command in a fresh process ----------------------------------------------


def test_preflight_command_passes_on_a_migrated_database(migrated_sqlite):
    result = manage("preflight", env=clean_env(DATABASE_URL=migrated_sqlite))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "WARN aicmo.W001: No worker heartbeat yet: is the django-q2 cluster running (`make serve`)?",
        "Preflight passed with 1 warning(s).",
    ]


def test_preflight_command_fails_one_line_per_problem(migrated_sqlite):
    env = clean_env(DATABASE_URL=migrated_sqlite, SECRET_KEY="")
    result = manage("preflight", "--mode", "live", env=env)
    assert result.returncode == 1
    fails = [line for line in result.stdout.splitlines() if line.startswith("FAIL")]
    assert [line.split(":")[0] for line in fails] == [
        "FAIL aicmo.E001",
        "FAIL aicmo.E010",
        "FAIL aicmo.E011",
        "FAIL aicmo.E012",
    ]
    assert result.stderr.strip() == "CommandError: preflight failed: 4 check(s) failed."


def test_preflight_command_reports_unapplied_migrations(tmp_path):
    url = f"sqlite:///{tmp_path / 'empty.sqlite3'}"
    result = manage("preflight", "--json", env=clean_env(DATABASE_URL=url))
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["ok"] is False
    [error] = report["errors"]
    assert error["id"] == "aicmo.E003"
    assert "run `manage.py migrate`" in error["message"]


def test_preflight_command_reports_an_unreachable_database():
    result = manage("preflight", env=clean_env(DATABASE_URL=UNREACHABLE_DB))
    assert result.returncode == 1
    [line] = [line for line in result.stdout.splitlines() if line.startswith("FAIL")]
    assert line.startswith("FAIL aicmo.E002: Database 'default' is not reachable")


# --- settings ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("DEBUG", "maybe", "DEBUG='maybe' is not a boolean"),
        ("AICMO_SEND_MODE", "loud", "AICMO_SEND_MODE='loud' must be one of: proof, live"),
        (
            "AICMO_GLOBAL_DAILY_LIMIT",
            "lots",
            "AICMO_GLOBAL_DAILY_LIMIT='lots' is not a whole number",
        ),
        ("AICMO_GLOBAL_DAILY_LIMIT", "-5", "AICMO_GLOBAL_DAILY_LIMIT='-5' must be at least 0"),
        ("AICMO_KILL_SWITCH", "perhaps", "AICMO_KILL_SWITCH='perhaps' is not a boolean"),
        (
            "AICMO_IMPORT_SLICE_SECONDS",
            "0",
            "AICMO_IMPORT_SLICE_SECONDS='0' must be at least 1",
        ),
        (
            "AICMO_IMPORT_SLICE_SECONDS",
            "200",
            "AICMO_IMPORT_SLICE_SECONDS=200 must be at most 120 (half the task queue's timeout",
        ),
        (
            "AICMO_SITE_URL",
            "aicmo.example.com",
            "AICMO_SITE_URL='aicmo.example.com' must be an absolute",
        ),
        (
            "AICMO_NARRATIVE_EXPLORATION",
            "1",
            "AICMO_NARRATIVE_EXPLORATION='1' must be at least 0 and below 1",
        ),
        (
            "AICMO_NARRATIVE_EXPLORATION",
            "some",
            "AICMO_NARRATIVE_EXPLORATION='some' is not a number",
        ),
        ("DATABASE_URL", "mysql://u@h/db", "DATABASE_URL uses django.db.backends.mysql"),
        ("EMAIL_URL", "anymail://", "EMAIL_URL='anymail://': expected anymail://<esp name>"),
    ],
)
def test_bad_setting_fails_at_start_naming_the_variable(variable, value, message):
    result = manage("campaign", "list", env=clean_env(**{variable: value}))
    assert result.returncode == 2
    assert result.stderr.strip().startswith(f"Configuration error: {message}")
    assert "Traceback" not in result.stderr


def test_a_command_starts_without_loading_the_chart_and_pdf_libraries():
    """matplotlib and WeasyPrint take about half a second to import: the processes that draw a
    chart or print a PDF load them, not every `manage.py` command and worker start."""
    code = (
        "import django, sys; django.setup(); import aicmo_site.urls; "
        "print(sorted(m for m in ('matplotlib', 'weasyprint') if m in sys.modules))"
    )
    result = python(code, env=clean_env(DEBUG="1"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


# --- the secret key: SECRET_KEY, or for local use one made once under var/ ----------------------


def local_env(var_dir, **overrides: str) -> dict[str, str]:
    """Local use as after `make demo`: no SECRET_KEY, no DEBUG, no DATABASE_URL (the default
    SQLite database under `var_dir`, standing in for the clone's var/)."""
    return clean_env(**{"SECRET_KEY": "", "AICMO_VAR_DIR": str(var_dir), **overrides})


PRINT_KEY = (
    "import django; django.setup(); from django.conf import settings; print(settings.SECRET_KEY)"
)


@pytest.mark.parametrize("production", ["own-database", "live-mode"])
def test_manage_py_refuses_to_start_without_secret_key_outside_local_use(
    migrated_sqlite, tmp_path, production
):
    extra = (
        {"DATABASE_URL": migrated_sqlite}
        if production == "own-database"
        else {"AICMO_SEND_MODE": "live"}
    )
    result = manage("campaign", "list", env=local_env(tmp_path / "var", **extra))

    assert result.returncode != 0
    [line] = [line for line in result.stderr.splitlines() if "aicmo.E001" in line]
    assert "SECRET_KEY is the development default; set SECRET_KEY" in line
    assert not (tmp_path / "var" / "secret_key").exists()  # production never makes one


def test_campaign_list_works_from_a_fresh_var_without_debug_or_secret_key(tmp_path):
    var = tmp_path / "var"

    migrate = manage("migrate", "--no-input", env=local_env(var), timeout=300)
    listing = manage("campaign", "list", env=local_env(var))

    assert migrate.returncode == 0, migrate.stderr
    assert listing.returncode == 0, listing.stderr
    assert listing.stdout.startswith("No campaigns yet.")
    key_file = var / "secret_key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    key = key_file.read_text().strip()
    assert len(key) >= 50 and key != GOOD_SECRET
    # The next process reads the same key (sessions and unsubscribe links keep working).
    again = python(PRINT_KEY, env=local_env(var))
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == key
    assert key_file.read_text().strip() == key


def test_processes_starting_together_agree_on_one_local_key(tmp_path):
    var = tmp_path / "var"
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", PRINT_KEY],
            cwd=REPO,
            env=local_env(var),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(6)
    ]
    outputs = [p.communicate(timeout=120) for p in processes]

    assert [p.returncode for p in processes] == [0] * 6, [err for _, err in outputs]
    keys = {out.strip() for out, _ in outputs}
    assert keys == {(var / "secret_key").read_text().strip()}
    assert sorted(p.name for p in var.iterdir()) == ["secret_key"]  # no temporary file left


def test_a_set_secret_key_wins_and_no_local_key_is_made(tmp_path):
    result = python(PRINT_KEY, env=local_env(tmp_path / "var", SECRET_KEY=GOOD_SECRET))

    assert result.stdout.strip() == GOOD_SECRET
    assert not (tmp_path / "var" / "secret_key").exists()


def test_an_empty_local_key_file_is_one_line_naming_secret_key(tmp_path):
    var = tmp_path / "var"
    var.mkdir()
    (var / "secret_key").write_text("\n")

    result = manage("campaign", "list", env=local_env(var))

    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"Configuration error: SECRET_KEY is not set and the local key file "
        f"{str(var / 'secret_key')!r} holds no key: delete it (a new one is made) or set "
        "SECRET_KEY."
    )


def test_a_local_key_file_that_cannot_be_read_is_one_line_naming_secret_key(tmp_path):
    var = tmp_path / "var"
    (var / "secret_key").mkdir(parents=True)

    result = manage("campaign", "list", env=local_env(var))

    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"Configuration error: SECRET_KEY is not set and the local key file "
        f"{str(var / 'secret_key')!r} cannot be made or read (Is a directory): set SECRET_KEY."
    )


# --- /healthz -----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_healthz_reports_database_ok_and_missing_worker(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "database": "ok",
        "worker": "missing",
        "kill_switch": False,
    }


@pytest.mark.django_db
def test_healthz_reports_fresh_and_stale_workers(client):
    worker_heartbeat()
    assert client.get("/healthz").json()["worker"] == "ok"
    WorkerHeartbeat.objects.update(last_seen=timezone.now() - timezone.timedelta(hours=1))
    body = client.get("/healthz").json()
    assert body["worker"] == "stale"
    assert body["worker_heartbeat_age_seconds"] >= 3600


def test_healthz_is_503_when_the_database_is_unreachable():
    code = (
        "import django, json; django.setup();"
        "from django.test import Client;"
        "r = Client().get('/healthz', HTTP_HOST='localhost');"
        "print(r.status_code, json.dumps(r.json(), sort_keys=True))"
    )
    result = python(code, env=clean_env(DATABASE_URL=UNREACHABLE_DB, DEBUG="1"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        '503 {"database": "unreachable", "status": "error", "worker": "unknown"}'
    )


def test_env_example_documents_every_contract_variable():
    text = (REPO / ".env.example").read_text()
    for name in (
        "DATABASE_URL",
        "SECRET_KEY",
        "DEBUG",
        "ALLOWED_HOSTS",
        "EMAIL_URL",
        "AICMO_SEND_MODE",
        "AICMO_SITE_URL",
        "AICMO_ARTIFACT_DIR",
        "AICMO_GLOBAL_DAILY_LIMIT",
        "AICMO_KILL_SWITCH",
        "AICMO_IMPORT_SLICE_SECONDS",
        "AICMO_IMAP_POLL_MINUTES",
        "AICMO_IMAP_TIMEOUT",
        "ANYMAIL_",
    ):
        assert f"{name}" in text, name


def test_plain_migrate_creates_the_rate_limit_cache_table(migrated_sqlite):
    code = (
        "import django; django.setup();"
        "from django.db import connection;"
        "print(sorted(t for t in connection.introspection.table_names() if 'cache' in t))"
    )
    result = python(code, env=clean_env(DATABASE_URL=migrated_sqlite))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['aicmo_ratelimit_cache']"


@pytest.mark.parametrize("moment", ["2026-11-21 09:00:03", "2026-11-21 17:00:00"])
def test_system_checks_are_silent_at_the_default_send_window_edges(moment):
    # Django warns (fields.W161) about a fixed time default when the clock is within 10 s of
    # it; at 09:00 UTC that warning once broke a CI run by landing on a command's stderr.
    from django.core import checks

    with time_machine.travel(dt.datetime.fromisoformat(moment + "+00:00"), tick=False):
        found = [m.id for m in checks.run_checks(include_deployment_checks=False)]
    assert "fields.W161" not in found


@pytest.mark.parametrize("ref", ["²", "٣", "99999999999999999999999"])
def test_campaign_reference_that_is_no_id_nor_slug_is_one_line_not_a_traceback(
    migrated_sqlite, ref
):
    result = manage("campaign", "status", ref, env=clean_env(DATABASE_URL=migrated_sqlite))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    [line] = result.stderr.strip().splitlines()
    assert "No campaign with slug or id" in line
