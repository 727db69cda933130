"""Database-level protection of the audit trail.

On PostgreSQL a trigger refuses UPDATE and DELETE on the audit table outright. On SQLite the
trigger calls `aicmo_audit_guard()`, a function this module registers on every connection
Django opens: it refuses unless `allow_audit_purge()` is active, which only the `flush`
maintenance command uses. A raw sqlite3 shell has no such function, so its DELETE fails too.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

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


# --- Sending gates -------------------------------------------------------------------------------
#
# A batch's hand-over holds a shared gate for each campaign, venture and mailbox it sends for
# (and the global one); a kill switch, a pause or an auto-pause takes the gate exclusively
# before it writes. PostgreSQL queues these advisory locks fairly: a waiting exclusive request
# holds back later shared ones, so a kill switch waits only for the batches already handing
# over, however many workers keep sending, and every later batch sees it committed. (Share
# locks of the rows themselves would let overlapping batches starve the switch's UPDATE.)
# On SQLite, one writer at a time does the same.

GATE_GLOBAL, GATE_VENTURE, GATE_CAMPAIGN, GATE_MAILBOX = 1, 2, 3, 4


def _gate_key(kind: int, pk: int) -> int:
    return (0x41 << 56) | (kind << 48) | int(pk)  # one bigint key space, "A" for AICMO


def sending_gates(
    *,
    campaign_ids: Iterable[int] = (),
    venture_ids: Iterable[int] = (),
    mailbox_ids: Iterable[int] = (),
    everything: bool = False,
    exclusive: bool,
) -> None:
    """Take the gates (until the transaction ends), in one order for every caller."""
    from django.db import connection

    if connection.vendor != "postgresql":
        return
    keys = sorted(
        {_gate_key(GATE_CAMPAIGN, pk) for pk in campaign_ids}
        | {_gate_key(GATE_VENTURE, pk) for pk in venture_ids}
        | {_gate_key(GATE_MAILBOX, pk) for pk in mailbox_ids}
        | ({_gate_key(GATE_GLOBAL, 0)} if everything else set())
    )
    if not keys:
        return
    function = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {function}(k) FROM (SELECT unnest(%s::bigint[]) AS k ORDER BY 1) AS gates",  # noqa: S608
            [keys],
        )
