"""What the project's management commands share: their output, their actor, and one line for a
database that is down or not migrated.

Every project command (`campaign`, `leads`, `preflight`, `demo`) derives from `ProjectCommand`.
An operator who points one at a stopped server, a database that does not exist or a file nobody
migrated gets one line on stderr naming the problem and exit status 1, not a traceback. The
one exception is the embedded local database (`var/aicmo.sqlite3`, no `DATABASE_URL` set):
local use needs no setting, so a command that finds it not (or not fully) migrated applies the
migrations, says so on stderr and runs again, as the local secret key is made on first use.
A database named by `DATABASE_URL` is never migrated behind its owner's back.
"""

from __future__ import annotations

import getpass
import json
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections

# SQLSTATE of a missing table or column on PostgreSQL (psycopg reports it as `sqlstate`).
_UNMIGRATED_SQLSTATES = {"42P01", "42703"}
# SQLite says so in the message only.
_UNMIGRATED_SQLITE = ("no such table", "no such column")


class ProjectCommand(BaseCommand):
    """A command whose database errors are reported in one line; `--json` aware output.

    Subclasses set `self.as_json` (from their `--json` option) before calling `emit`.
    """

    as_json = False
    _migrated = False

    def execute(self, *args: Any, **options: Any) -> str | None:
        """Run the command; a database that is unreachable or unmigrated becomes a
        `CommandError` (one line, exit 1). Any other database error is a bug and propagates."""
        try:
            return super().execute(*args, **options)
        except DatabaseError as exc:
            if settings.AICMO_EMBEDDED_DATABASE and _is_unmigrated(exc) and not self._migrated:
                self._migrated = True  # once: a table still missing after it is reported
                self._embedded_database_migrate()
                return self.execute(*args, **options)
            line = database_problem(exc)
            if line is None:
                raise
            raise CommandError(line) from None

    def _embedded_database_migrate(self) -> None:
        from django.core.management import call_command

        name = connections[DEFAULT_DB_ALIAS].settings_dict["NAME"]
        self.stderr.write(f"Setting up the local database {name} (its migrations, once).")
        call_command("migrate", interactive=False, verbosity=0)

    @staticmethod
    def campaign_named(ref: str):
        """The campaign that `ref` (the `C` of the command line: a slug or an id) names; a
        one-line `CommandError` when there is none."""
        from ventures.models import Campaign
        from ventures.selectors import campaign_get

        try:
            return campaign_get(ref)
        except Campaign.DoesNotExist as exc:
            raise CommandError(str(exc)) from None

    def emit(self, data: dict[str, Any], text: str) -> None:
        """Write `data` as JSON with `--json`, else the human `text`."""
        if self.as_json:
            self.stdout.write(json.dumps(data, indent=2, default=str))
        else:
            self.stdout.write(text)


def current_user() -> str:
    """The login name for the audit trail's `cli:<user>`; "unknown" when there is none
    (a container without a passwd entry)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def database_problem(exc: DatabaseError, alias: str = DEFAULT_DB_ALIAS) -> str | None:
    """One line saying what is wrong with the database behind `exc`, or None when `exc` is
    neither an unreachable nor an unmigrated database."""
    detail = _first_line(exc)
    if _is_unmigrated(exc):
        return f"Database '{alias}' is not migrated ({detail}): run `manage.py migrate`."
    if _is_unreachable(alias):
        return f"Database '{alias}' is not reachable: {detail}"
    return None


def _is_unmigrated(exc: DatabaseError) -> bool:
    sqlstate = getattr(exc.__cause__, "sqlstate", None)
    return sqlstate in _UNMIGRATED_SQLSTATES or str(exc).startswith(_UNMIGRATED_SQLITE)


def _is_unreachable(alias: str) -> bool:
    # A failed connect leaves no connection behind; probe again rather than parse messages,
    # which differ per driver and locale.
    connection = connections[alias]
    if connection.connection is not None:
        return False
    try:
        connection.ensure_connection()
    except DatabaseError:
        return True
    return False


def _first_line(exc: Exception) -> str:
    """The driver's message without its hints on further lines or psycopg's prefix."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[0] if lines else type(exc).__name__
    return text.removeprefix("connection failed: ")
