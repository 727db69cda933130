"""Run the project as an operator would: `manage.py` (or Python) in a fresh process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
GOOD_SECRET = "k3Jf9-Qm2Zx7Lp4Rt8Vw1Ny6Hb5Gc0Ds-aU3eI7oP2sD9fG4hJ8kL1zX6cV5bN0m"


def clean_env(**overrides: str) -> dict[str, str]:
    """The machine's environment without any project variable, plus `overrides`."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AICMO_", "ANYMAIL_", "EMAIL_", "DJANGO_", "PYTEST_"))
        and k not in ("DEBUG", "SECRET_KEY", "ALLOWED_HOSTS", "DATABASE_URL")
    }
    env.update(
        DJANGO_SETTINGS_MODULE="aicmo_site.settings",
        AICMO_ENV_FILE=os.devnull,
        SECRET_KEY=GOOD_SECRET,
        # Bytecode under var/, never beside the sources (the Makefile sets the same).
        PYTHONPYCACHEPREFIX=os.environ.get("PYTHONPYCACHEPREFIX", str(REPO / "var" / "pycache")),
    )
    env.update(overrides)
    return {k: v for k, v in env.items() if v is not None}


def running_database_url() -> str:
    """The URL of this test run's PostgreSQL database, for a real process (the SQLite test
    database lives in memory, out of a subprocess's reach: use `migrate_sqlite`)."""
    from django.db import connection

    s = connection.settings_dict
    auth = s["USER"] + (f":{s['PASSWORD']}" if s["PASSWORD"] else "")
    return f"postgres://{auth}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


def migrate_sqlite(path: Path) -> str:
    """A new SQLite database file at `path`, migrated as `make demo` leaves one; its URL."""
    url = f"sqlite:///{path}"
    result = manage("migrate", "--no-input", env=clean_env(DATABASE_URL=url), timeout=300)
    assert result.returncode == 0, result.stderr
    return url


def manage(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "manage.py"), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def manage_started(*args: str, env: dict[str, str]) -> subprocess.Popen:
    """`manage.py` started in the background (text pipes): for several processes at once."""
    return subprocess.Popen(
        [sys.executable, str(REPO / "manage.py"), *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def python(code: str, *, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
