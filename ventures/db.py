"""Database-level protection of the audit trail.

On PostgreSQL a trigger refuses UPDATE and DELETE on the audit table outright. On SQLite the
trigger calls `aicmo_audit_guard()`, a function this module registers on every connection
Django opens: it refuses unless `allow_audit_purge()` is active, which only the `flush`
maintenance command uses. A raw sqlite3 shell has no such function, so its DELETE fails too.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

_purge_depth = 0


def _guard() -> int:
    return 0 if _purge_depth else 1


@contextlib.contextmanager
def allow_audit_purge() -> Iterator[None]:
    global _purge_depth
    _purge_depth += 1
    try:
        yield
    finally:
        _purge_depth -= 1


def register_sqlite_functions(sender, connection, **kwargs) -> None:
    if connection.vendor == "sqlite":
        connection.connection.create_function("aicmo_audit_guard", 0, _guard)
