"""Bad input to the project's commands, as an operator meets it: a bad setting, a database that
is down or does not exist, a database nobody migrated. Each gives one line naming the problem on
stderr and a non-zero exit, never a traceback."""

from __future__ import annotations

import json
import socket
import uuid

import pytest

from tests.proc import clean_env, manage, python

UNREACHABLE_DB = "postgres://postgres@127.0.0.1:9/aicmo_nowhere"
PG_SERVER = "127.0.0.1", 5432
COMMANDS = [("campaign", "list"), ("campaign", "status", "x"), ("leads", "export", "x")]


def _pg_server_up() -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(PG_SERVER) == 0


needs_pg_server = pytest.mark.skipif(not _pg_server_up(), reason="no PostgreSQL server")


def _one_line_error(result) -> str:
    """The single stderr line of a failed command (asserting there is exactly one)."""
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


# --- settings: every variable, in one process ---------------------------------------------------

# Each bad value, and what the error must name. Loaded through settings.py itself in one
# subprocess (a fresh interpreter per case would cost a second each).
BAD_SETTINGS = [
    ("DEBUG", "maybe"),
    ("DATABASE_URL", "not a url"),
    ("DATABASE_URL", "mysql://u@h/db"),
    ("DATABASE_URL", "foo://x"),
    ("DATABASE_URL", "postgres://u@h:abc/db"),
    ("DATABASE_URL", "postgres://u@h:99999/db"),
    ("CSRF_TRUSTED_ORIGINS", "aicmo.example.com"),
    ("LOG_LEVEL", "loud"),
    ("EMAIL_URL", "foo://x"),
    ("EMAIL_URL", "smtp://h:abc"),
    ("EMAIL_URL", "anymail://"),
    ("EMAIL_TIMEOUT", "0"),
    ("AICMO_SEND_MODE", "loud"),
    ("AICMO_SITE_URL", "ftp://x"),
    ("AICMO_GLOBAL_DAILY_LIMIT", "lots"),
    ("AICMO_KILL_SWITCH", "perhaps"),
    ("AICMO_HEARTBEAT_MAX_AGE", "5"),
    ("AICMO_RENDER_LOG_RETENTION_DAYS", "0"),
    ("AICMO_IMPORT_MAX_BYTES", "1"),
    ("AICMO_IMPORT_BACKGROUND_BYTES", "x"),
    ("AICMO_IMPORT_SLICE_SECONDS", "200"),
    ("AICMO_CAPTURE_RATE_LIMIT", "0"),
    ("AICMO_CAPTURE_RATE_WINDOW", "x"),
    ("AICMO_PROXY_HOPS", "-1"),
    ("AICMO_PROXY_HOPS", "two"),
    ("AICMO_API_MAX_ROWS", "0"),
    ("AICMO_Q_WORKERS", "0"),
    ("AICMO_Q_SYNC", "maybe"),
    ("SECURE_SSL_REDIRECT", "x"),
    ("SECURE_HSTS_SECONDS", "x"),
    ("SECURE_HSTS_PRELOAD", "x"),
]

LOAD_EACH = """
import json, os, runpy, sys, warnings
from django.core.exceptions import ImproperlyConfigured
base = dict(os.environ)
found = []
for name, value in json.loads(os.environ["CASES"]):
    os.environ.clear()
    os.environ.update(base, **{name: value})
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            runpy.run_path("aicmo_site/settings.py")
        found.append(None)
    except ImproperlyConfigured as exc:
        found.append("ImproperlyConfigured: " + str(exc))
    except Exception as exc:
        found.append("other: " + repr(exc))
print(json.dumps(found))
"""


def test_every_bad_setting_raises_improperly_configured_naming_its_variable():
    result = python(LOAD_EACH, env=clean_env(CASES=json.dumps(BAD_SETTINGS)))
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    for (name, value), error in zip(BAD_SETTINGS, found, strict=True):
        assert error is not None, f"{name}={value!r} was accepted"
        assert error.startswith(f"ImproperlyConfigured: {name}"), error
        assert "\n" not in error


def test_a_database_url_error_does_not_echo_the_password():
    cases = [("DATABASE_URL", "postgres://u:s3cret@h:abc/db"), ("DATABASE_URL", "s3cret")]
    result = python(LOAD_EACH, env=clean_env(CASES=json.dumps(cases)))
    assert result.returncode == 0, result.stderr
    assert all(error and "s3cret" not in error for error in json.loads(result.stdout))


# --- settings: through manage.py ----------------------------------------------------------------


@pytest.fixture
def a_file(tmp_path) -> str:
    path = tmp_path / "a-file"
    path.write_text("not a directory\n")
    return str(path)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DATABASE_URL", "sqlite:///{a_file}/sub/aicmo.sqlite3"),
        ("AICMO_ENV_FILE", "{latin1_env}"),
        ("DATABASE_URL", "not a url"),
        ("DATABASE_URL", "foo://x"),
        ("AICMO_GLOBAL_DAILY_LIMIT", "lots"),
        ("AICMO_SEND_MODE", "loud"),
        ("EMAIL_URL", "foo://x"),
        ("SECURE_SSL_REDIRECT", "sometimes"),
        ("AICMO_PROXY_HOPS", "two"),
        ("CSRF_TRUSTED_ORIGINS", "aicmo.example.com"),
    ],
)
def test_bad_setting_is_one_line_naming_it_from_manage_py(variable, value, a_file, tmp_path):
    latin1_env = tmp_path / "latin1.env"
    latin1_env.write_bytes("AICMO_SITE_URL=http://café.example\n".encode("latin-1"))
    value = value.format(a_file=a_file, latin1_env=latin1_env)
    result = manage("campaign", "list", env=clean_env(**{variable: value}))
    line = _one_line_error(result)
    assert result.returncode == 2
    assert line.startswith(f"Configuration error: {variable}"), line


def test_unreadable_env_file_names_the_file(tmp_path):
    env_file = tmp_path / "latin1.env"
    env_file.write_bytes(b"DEBUG=\xe9\n")
    result = manage("preflight", env=clean_env(AICMO_ENV_FILE=str(env_file)))
    assert str(env_file) in _one_line_error(result)


# --- database down, missing, or not migrated ----------------------------------------------------


def _assert_names(result, problem: str) -> None:
    line = _one_line_error(result)
    assert result.returncode == 1
    assert line.startswith("CommandError: Database 'default' "), line
    assert problem in line, line


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_commands_say_in_one_line_that_the_database_is_unreachable(command):
    result = manage(*command, env=clean_env(DATABASE_URL=UNREACHABLE_DB))
    _assert_names(result, 'is not reachable: connection to server at "127.0.0.1", port 9')


@needs_pg_server
@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_commands_say_in_one_line_that_the_database_does_not_exist(command):
    url = "postgres://postgres@{}:{}/aicmo_cmds_no_such_db".format(*PG_SERVER)
    result = manage(*command, env=clean_env(DATABASE_URL=url))
    _assert_names(result, 'database "aicmo_cmds_no_such_db" does not exist')


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_commands_on_an_unmigrated_database_say_run_migrate(command, tmp_path):
    url = f"sqlite:///{tmp_path / 'fresh.sqlite3'}"
    result = manage(*command, env=clean_env(DATABASE_URL=url))
    _assert_names(result, "is not migrated (no such table: ventures_campaign)")
    assert _one_line_error(result).endswith("run `manage.py migrate`.")


def test_the_embedded_local_database_is_migrated_by_the_first_command(tmp_path):
    """No DATABASE_URL: `campaign list` on a fresh clone works as README prints it."""
    env = clean_env(AICMO_VAR_DIR=str(tmp_path))
    database = tmp_path / "aicmo.sqlite3"
    first = manage("campaign", "list", env=env, timeout=300)
    assert first.returncode == 0, first.stderr
    assert first.stderr.strip() == (
        f"Setting up the local database {database} (its migrations, once)."
    )
    assert first.stdout.startswith("No campaigns yet."), first.stdout
    again = manage("campaign", "list", env=env)
    assert (again.returncode, again.stderr, again.stdout) == (0, "", first.stdout)
    # A database named by DATABASE_URL is never migrated behind its owner's back.
    named = manage("campaign", "list", env=clean_env(DATABASE_URL=f"sqlite:///{tmp_path / 'x.db'}"))
    _assert_names(named, "is not migrated")


def test_demo_on_an_unmigrated_database_says_run_migrate(tmp_path):
    url = f"sqlite:///{tmp_path / 'fresh.sqlite3'}"
    result = manage("demo", env=clean_env(DATABASE_URL=url))
    _assert_names(result, "run `manage.py migrate`")


@needs_pg_server
def test_commands_on_an_unmigrated_postgresql_database_say_run_migrate():
    import psycopg

    name = f"aicmo_cmds_empty_{uuid.uuid4().hex[:8]}"
    server = "postgresql://postgres@{}:{}/postgres".format(*PG_SERVER)
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            url = "postgres://postgres@{}:{}/{}".format(*PG_SERVER, name)
            result = manage("campaign", "list", env=clean_env(DATABASE_URL=url))
        finally:
            admin.execute(f'DROP DATABASE "{name}"')
    _assert_names(result, 'is not migrated (relation "ventures_campaign" does not exist)')


@pytest.mark.parametrize(
    ("url", "failure"),
    [
        (UNREACHABLE_DB, "FAIL aicmo.E002: Database 'default' is not reachable"),
        ("sqlite:///{tmp}/fresh.sqlite3", "FAIL aicmo.E003: "),
    ],
    ids=["unreachable", "unmigrated"],
)
def test_preflight_names_the_database_problem_with_one_line_on_stderr(url, failure, tmp_path):
    result = manage("preflight", env=clean_env(DATABASE_URL=url.format(tmp=tmp_path)))
    line = _one_line_error(result)
    assert result.returncode == 1
    assert line == "CommandError: preflight failed: 1 check(s) failed."
    [fail] = [f for f in result.stdout.splitlines() if f.startswith("FAIL")]
    assert fail.startswith(failure), fail


def test_the_settings_corpus_loader_accepts_good_values():
    # Guards the corpus above: a value that loads reads as accepted, so a bad value that was
    # accepted would fail its case rather than pass unnoticed.
    cases = [["AICMO_SEND_MODE", "live"], ["AICMO_PROXY_HOPS", "2"]]
    result = python(LOAD_EACH, env=clean_env(CASES=json.dumps(cases)))
    assert json.loads(result.stdout) == [None, None], result.stderr
