"""The messages' tallies: a campaign's messages counted by step and state (`MessageTally`) and
its sent emails by quarter hour (`SentQuarter`), so that the report and the campaign page read
a few hundred rows instead of grouping a million messages.

- Database triggers on the messages table write them (migration outreach `0017_message_tally`:
  statement triggers with transition tables on PostgreSQL, row triggers on SQLite). Every
  INSERT, UPDATE and DELETE appends signed deltas: +1 under each row's new key, -1 under its
  old one, netted within a statement. So every way a message changes state is counted (the
  tick, feedback, unsubscribes, erasure, the admin, raw SQL), in the transaction that changes
  it, and appending takes no lock that another writer could wait for.
- A key is (campaign, step, state, a blocked message's reason, a sent email's mailbox, ICP
  segment and template version); the other states carry no reason or sender, which keeps a
  campaign's keys to a few hundred. A quarter hour is UTC; every time zone's offset is a whole
  number of quarter hours, so a day in any zone is a sum of whole quarters.
- `tally_fold` sums a campaign's deltas into one row per key (the tick calls it after its
  batches for the campaigns it worked on); readers sum whatever is there, folded or not.
- `tally_drift` compares the tallies with the messages; `tally_rebuild` recomputes them
  (`manage.py report facts`).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable

from django.db import connection, transaction
from django.db.models import Sum

from outreach.models import MessageTally, OutboundMessage, SentQuarter
from outreach.tally_triggers import counted, key
from outreach.tally_triggers import quarter as quarter_sql

KEY_FIELDS = (
    "step_id", "state", "reason_code", "mailbox_id", "segment_id", "template_version_id",
)  # fmt: skip
# pg_try_advisory_xact_lock(FOLD_LOCK, campaign): one fold of a campaign at a time.
FOLD_LOCK = 72_617


def _tables() -> tuple[str, str, str]:
    q = connection.ops.quote_name
    return (
        q(MessageTally._meta.db_table),
        q(SentQuarter._meta.db_table),
        q(OutboundMessage._meta.db_table),
    )


def tally(campaign_id: int) -> list[tuple]:
    """(step, state, reason, mailbox, segment, template version, count) of the campaign's
    messages, every key with a count."""
    rows = (
        MessageTally.objects.filter(campaign_id=campaign_id)
        .order_by()
        .values_list(*KEY_FIELDS)
        .annotate(total=Sum("n"))
    )
    return [row for row in rows if row[-1]]


def sent_by_day(
    campaign_id: int, tz: dt.tzinfo, since: dt.datetime | None = None
) -> dict[dt.date, int]:
    """Emails sent per day in `tz` (since `since`, a quarter-hour boundary or not: the quarter
    it falls in counts whole)."""
    rows = SentQuarter.objects.filter(campaign_id=campaign_id)
    if since is not None:
        rows = rows.filter(quarter__gte=_quarter_of(since))
    days: dict[dt.date, int] = defaultdict(int)
    for quarter, n in rows.order_by().values_list("quarter").annotate(total=Sum("n")):
        if n:
            days[quarter.astimezone(tz).date()] += n
    return {day: n for day, n in days.items() if n}


def _quarter_of(moment: dt.datetime) -> dt.datetime:
    return moment.replace(minute=moment.minute // 15 * 15, second=0, microsecond=0)


# --- Folding -------------------------------------------------------------------------------------


def tally_fold(campaign_ids: Iterable[int]) -> None:
    """Replace each campaign's deltas with one row per key (dropping keys that sum to 0).
    PostgreSQL: one statement per table (DELETE ... RETURNING into the INSERT, one snapshot),
    so a delta committed meanwhile is either folded or left as it is, never lost; a campaign
    another worker is folding is skipped. SQLite (one writer): the rows up to the highest id
    read first."""
    tally_table, quarter_table, _msg = _tables()
    keys = ", ".join(KEY_FIELDS)
    for campaign_id in sorted(set(campaign_ids)):
        with transaction.atomic(), connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                cursor.execute(
                    "SELECT pg_try_advisory_xact_lock(%s, %s)", [FOLD_LOCK, campaign_id % 2**31]
                )
                if not cursor.fetchone()[0]:
                    continue
                cursor.execute(
                    f"WITH gone AS (DELETE FROM {tally_table} WHERE campaign_id = %s "  # noqa: S608
                    f"RETURNING {keys}, n) INSERT INTO {tally_table} (campaign_id, {keys}, n) "
                    f"SELECT %s, {keys}, SUM(n) FROM gone GROUP BY {keys} HAVING SUM(n) <> 0",
                    [campaign_id, campaign_id],
                )
                cursor.execute(
                    f"WITH gone AS (DELETE FROM {quarter_table} WHERE campaign_id = %s "  # noqa: S608
                    f"RETURNING quarter, n) INSERT INTO {quarter_table} (campaign_id, quarter, n) "
                    "SELECT %s, quarter, SUM(n) FROM gone GROUP BY quarter HAVING SUM(n) <> 0",
                    [campaign_id, campaign_id],
                )
                continue
            for table, columns in ((tally_table, keys), (quarter_table, "quarter")):
                cursor.execute(
                    f"SELECT MAX(id) FROM {table} WHERE campaign_id = %s",  # noqa: S608
                    [campaign_id],
                )
                (top,) = cursor.fetchone()
                if top is None:
                    continue
                cursor.execute(
                    f"INSERT INTO {table} (campaign_id, {columns}, n) "  # noqa: S608
                    f"SELECT campaign_id, {columns}, SUM(n) FROM {table} "
                    f"WHERE campaign_id = %s AND id <= %s GROUP BY campaign_id, {columns} "
                    "HAVING SUM(n) <> 0",
                    [campaign_id, top],
                )
                cursor.execute(
                    f"DELETE FROM {table} WHERE campaign_id = %s AND id <= %s",  # noqa: S608
                    [campaign_id, top],
                )


# --- Checking and rebuilding ---------------------------------------------------------------------

# A message's key, whether it counts as sent, and its quarter hour: the triggers' own SQL
# (`outreach.tally_triggers`); "%" doubled for a statement with parameters.
_KEY_SQL = ", ".join(key(""))
_SENT = counted("")


def _quarter_sql() -> str:
    return quarter_sql("", connection.vendor).replace("%", "%%")


def _computed(campaign_id: int) -> tuple[dict[tuple, int], dict[dt.datetime, int]]:
    """The tallies as the campaign's messages give them now."""
    _t, _q, msg = _tables()
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {_KEY_SQL}, COUNT(*) FROM {msg} WHERE campaign_id = %s "  # noqa: S608
            "GROUP BY 1, 2, 3, 4, 5, 6, 7",
            [campaign_id],
        )
        keys = {tuple(row[1:-1]): row[-1] for row in cursor.fetchall()}
        cursor.execute(
            f"SELECT {_quarter_sql()}, COUNT(*) FROM {msg} "  # noqa: S608
            f"WHERE campaign_id = %s AND {_SENT} GROUP BY 1",
            [campaign_id],
        )
        quarters = {_as_datetime(q): n for q, n in cursor.fetchall()}
    return keys, quarters


def _as_datetime(value) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC)
    return dt.datetime.fromisoformat(str(value)).replace(tzinfo=dt.UTC)


def tally_drift(campaign_id: int) -> list[tuple[str, tuple, int, int]]:
    """Where the tallies differ from the messages: (table, key, kept, computed). Empty when
    they agree."""
    keys, quarters = _computed(campaign_id)
    kept_keys = {tuple(row[:-1]): row[-1] for row in tally(campaign_id)}
    kept_quarters: dict[dt.datetime, int] = defaultdict(int)
    for quarter, n in (
        SentQuarter.objects.filter(campaign_id=campaign_id).values_list("quarter", "n").iterator()
    ):
        kept_quarters[_as_datetime(quarter)] += n
    drift = [
        ("messages", key, kept_keys.get(key, 0), keys.get(key, 0))
        for key in sorted(kept_keys.keys() | keys.keys(), key=repr)
        if kept_keys.get(key, 0) != keys.get(key, 0)
    ]
    drift += [
        ("sent quarter hours", (quarter.isoformat(),), kept_quarters.get(quarter, 0), n)
        for quarter in sorted(kept_quarters.keys() | quarters.keys())
        if kept_quarters.get(quarter, 0) != (n := quarters.get(quarter, 0))
    ]
    return drift


def tally_rebuild(campaign_id: int) -> int:
    """Replace the campaign's tallies with the counts of its messages (in the caller's
    transaction; on PostgreSQL the messages' rows are share-locked meanwhile, so no write
    lands between the delete and the count). Returns the rows written."""
    tally_table, quarter_table, msg = _tables()
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"LOCK TABLE {msg} IN SHARE MODE")
        MessageTally.objects.filter(campaign_id=campaign_id).delete()
        SentQuarter.objects.filter(campaign_id=campaign_id).delete()
        cursor.execute(
            f"INSERT INTO {tally_table} (campaign_id, {', '.join(KEY_FIELDS)}, n) "  # noqa: S608
            f"SELECT {_KEY_SQL}, COUNT(*) FROM {msg} WHERE campaign_id = %s "
            "GROUP BY 1, 2, 3, 4, 5, 6, 7",
            [campaign_id],
        )
        written = cursor.rowcount
        cursor.execute(
            f"INSERT INTO {quarter_table} (campaign_id, quarter, n) "  # noqa: S608
            f"SELECT campaign_id, {_quarter_sql()}, COUNT(*) FROM {msg} "
            f"WHERE campaign_id = %s AND {_SENT} GROUP BY 1, 2",
            [campaign_id],
        )
        return written + cursor.rowcount
