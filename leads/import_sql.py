"""The import's raw SQL: a chunk's lookups and bulk writes, for PostgreSQL and for SQLite.

Every raw SQL statement of an import is here. The chunk loop (`leads.importing`) still asks
`is_pg()` where the two databases take different paths through the merge (new leads held as
COPY lines or as tuples), because those paths are entwined with the merge rules; it keeps to
the ORM for the rest (row issues, the batch's counters).

- Lookups (`fetch_people`, `fetch_existing`, `fetch_suppressed`) are one query per chunk, built
  by `_probe`: on PostgreSQL one index probe per key in a LATERAL subquery, written so that
  stale statistics (a big import's own rows, or autovacuum off) cannot turn it into a scan of
  the campaign; on SQLite an IN list over json_each, which its planner probes by index.
- New leads: on PostgreSQL one COPY straight into the lead table, in a savepoint, of the lines
  the preparing process encoded (`copy_line`); if one collides with the unique index after
  all, the slower staged INSERT ... ON CONFLICT DO NOTHING says which were refused. SQLite (one
  writer at a time, so nothing can collide) takes `executemany`.
- Existing leads are updated with one `executemany` (`update_leads`), or only touched.
- The COPY text encoding of a prepared lead and its way back (`values_from_line`, for the few
  leads that merge into an existing one), and the column lists every write uses.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from decimal import Decimal
from operator import itemgetter
from typing import Any

from django.db import connection, transaction

from leads.models import (
    IDENTITY_KEY_SQL,
    PROFILE_FIELDS,
    Lead,
    LeadStatus,
    SuppressionEntry,
    SuppressionKind,
)

CHUNK_WORK_MEM = "64MB"

# What each row of a chunk brings (the keys of RowNormaliser's values), and what is the same for
# every row of a batch. Text columns come first: a COPY line is their tab-joined text, checked
# once for characters that need escaping, then the few columns that may be NULL or are numbers.
STAGE_TEXT_COLUMNS = (
    "email",
    "email_key",
    "identity_hash",
    *(f for f in PROFILE_FIELDS if f != "company_size"),
    "consent_status",
    "consent_source",
    "custom_fields",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "utm_content",
    "grade",
    "score_explanation",
)
STAGE_OTHER_COLUMNS = (
    "company_size",
    "segment_id",
    "consent_at",
    "value_estimate",
    "source_row",
    "fit_score",
)
STAGE_COLUMNS = (*STAGE_TEXT_COLUMNS, *STAGE_OTHER_COLUMNS)
BATCH_COLUMNS = (
    "campaign_id",
    "venture_id",
    "status",
    "source_channel",
    "source_list",
    "source_batch_id",
    "last_batch_id",
    "first_touch_at",
    "last_touch_at",
    "created_at",
    "updated_at",
)
INSERT_COLUMNS = (*BATCH_COLUMNS, *STAGE_COLUMNS)
# Blank fields of an existing lead that a later import may fill in. Consent has its own rule.
FILL_COLUMNS = (
    *PROFILE_FIELDS,
    "value_estimate",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "utm_content",
)
UPDATE_COLUMNS = (
    *FILL_COLUMNS,
    "custom_fields",
    "consent_status",
    "consent_at",
    "consent_source",
    "segment_id",
    "fit_score",
    "grade",
    "score_explanation",
)


def is_pg() -> bool:
    return connection.vendor == "postgresql"


def relax_chunk_transaction() -> None:
    """PostgreSQL, first in a chunk's transaction: settings for that transaction only (SET
    LOCAL). A crash may lose the last chunks committed (never half a chunk: the counters commit
    with the rows), so a chunk's commit need not wait for the WAL flush; the import's final
    state change is a normal commit. The reference check's transition table holds the chunk's
    rows: `work_mem` keeps it in memory, not spilled to a temporary file (a limit, not an
    allocation)."""
    with connection.cursor() as cur:
        cur.execute("SET LOCAL synchronous_commit = off")
        cur.execute(f"SET LOCAL work_mem = '{CHUNK_WORK_MEM}'")


def lock_lead_table() -> None:
    """PostgreSQL, before a chunk's first lookup: an erasure (which locks the lead table
    against writers) either finished before the chunk looks, or waits until it committed."""
    with connection.cursor() as cur:
        cur.execute(f"LOCK TABLE {Lead._meta.db_table} IN ROW EXCLUSIVE MODE")


def _in(column: str, values: list) -> tuple[str, Any]:
    """`column IN <values>` as one parameter: an array on PostgreSQL, JSON on SQLite."""
    if is_pg():
        return f"{column} = ANY(%s)", list(values)
    return f"{column} IN (SELECT value FROM json_each(%s))", json.dumps(list(values))  # noqa: S608 - identifiers are constants


def _probe(
    *,
    table: str,
    columns: list[str],
    match: str,
    key_column: str,
    keys: list[str],
    match_params: list,
    where: str = "",
    where_params: list | None = None,
    key_index: str = "",
) -> tuple[str, list]:
    """SQL and parameters returning `columns` of the rows of `table` whose `key_column` is one
    of `keys` and that satisfy `match` (on alias l: the rest of an index's columns) and
    `where` (written with {a} for the alias: conditions no index serves). `key_index` is the
    PostgreSQL expression an index holds instead of the key column itself, written with {}
    for the column or key (e.g. `leads.models.IdentityKey`'s).

    On PostgreSQL every key is one index probe in a LATERAL subquery (OFFSET 0 keeps it from
    being flattened into a hash join over the whole campaign). `match` must leave the planner
    one sensible index even with stale statistics, as a table has in the middle of a big import
    (and always, where autovacuum is off). On SQLite, an IN list over json_each, which its
    planner turns into index probes.
    """
    where_params = where_params or []
    if is_pg():
        inner = ", ".join(f"l.{c}" for c in columns)
        outer = ", ".join(f"x.{c}" for c in columns)
        sql = (
            f"SELECT {outer} FROM unnest(string_to_array(%s, E'\\n')) AS k(value) CROSS JOIN LATERAL "  # noqa: S608 - identifiers are constants
            f"(SELECT {inner} FROM {table} l WHERE {match} AND l.{key_column} = k.value "
            + (
                f"AND {key_index.format('l.' + key_column)} = {key_index.format('k.value')} "
                if key_index
                else ""
            )
            + "OFFSET 0) x"
            + (f" WHERE {where.format(a='x')}" if where else "")
        )
        # One text parameter (keys never contain a line break: they are validated emails,
        # domains and hex digests): quoting one string costs far less than an array.
        return sql, ["\n".join(keys), *match_params, *where_params]
    inner = ", ".join(f"l.{c}" for c in columns)
    sql = (
        f"SELECT {inner} FROM {table} l WHERE {match} "  # noqa: S608 - identifiers are constants
        + (f"AND {where.format(a='l')} " if where else "")
        + f"AND l.{key_column} IN (SELECT value FROM json_each(%s))"  # noqa: S608
    )
    return sql, [*match_params, *where_params, json.dumps(list(keys))]


def _json_value(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else (value or {})


_EXISTING_COLUMNS = ("id", "email_key", "last_batch_id", "status", *UPDATE_COLUMNS)


def _existing_lead(values: tuple) -> dict[str, Any]:
    """A row of _EXISTING_COLUMNS as the merge reads it."""
    row = dict(zip(_EXISTING_COLUMNS, values, strict=True))
    row["custom_fields"] = _json_value(row["custom_fields"])
    return row


def fetch_existing(campaign_id: int, keys: list[str]) -> dict[str, dict[str, Any]]:
    """The campaign's leads with these email keys, by key."""
    if not keys:
        return {}
    # On PostgreSQL `campaign_id + 0` keeps the campaign-first indexes out of the planner's
    # choice: with statistics that do not know this campaign yet (a big import's own rows),
    # it would probe one of them and filter the whole campaign per key. The unique
    # (email key, campaign) index is then the only way in.
    campaign_match = "l.campaign_id + 0 = %s" if is_pg() else "l.campaign_id = %s"
    sql, params = _probe(
        table=Lead._meta.db_table,
        columns=list(_EXISTING_COLUMNS),
        match=campaign_match + " AND NOT (l.email_key = '')",
        match_params=[campaign_id],
        key_column="email_key",
        keys=keys,
    )
    found = {}
    with connection.cursor() as cur:
        cur.execute(sql, params)
        for values in cur.fetchall():
            row = _existing_lead(values)
            found[row["email_key"]] = row
    return found


def fetch_suppressed(venture_id: int, hashes: list[str], domains: list[str]) -> tuple[set, set]:
    """(suppressed identity hashes, suppressed domains) among those given, for this venture."""
    if not hashes:
        return set(), set()
    table = SuppressionEntry._meta.db_table
    scope = "({a}.venture_id IS NULL OR {a}.venture_id = %s)"
    columns = ["kind", "value", "identity_hash", "venture_id"]
    by_identity = _probe(
        table=table,
        columns=columns,
        match="l.identity_hash <> ''",
        match_params=[],
        key_column="identity_hash",
        keys=hashes,
        where=scope,
        where_params=[venture_id],
    )
    by_domain = _probe(
        table=table,
        columns=columns,
        match="l.kind = %s",
        match_params=[SuppressionKind.DOMAIN],
        key_column="value",
        keys=sorted(set(domains)),
        where=scope,
        where_params=[venture_id],
    )
    found_hashes, found_domains = set(), set()
    with connection.cursor() as cur:
        for sql, params in (by_identity, by_domain):
            cur.execute(sql, params)
            for kind, value, identity, _ in cur.fetchall():
                if kind == SuppressionKind.DOMAIN:
                    found_domains.add(value)
                else:
                    found_hashes.add(identity)
    return found_hashes, found_domains


def fetch_people(
    venture_id: int, campaign_id: int, hashes: list[str]
) -> tuple[dict[str, dict[str, Any]], set[str]]:
    """The venture's leads with these identities, in one probe of the identity index:
    (this campaign's leads by email key, identities active in another campaign)."""
    if not hashes:
        return {}, set()
    columns = ["identity_hash", "campaign_id", *_EXISTING_COLUMNS]
    sql, params = _probe(
        table=Lead._meta.db_table,
        columns=columns,
        match="l.venture_id = %s",
        match_params=[venture_id],
        key_column="identity_hash",
        key_index=IDENTITY_KEY_SQL,
        keys=hashes,
        where="({a}.campaign_id = %s OR {a}.status = %s)",
        where_params=[campaign_id, LeadStatus.ACTIVE],
    )
    existing: dict[str, dict[str, Any]] = {}
    elsewhere: set[str] = set()
    with connection.cursor() as cur:
        cur.execute(sql, params)
        for values in cur.fetchall():
            if values[1] != campaign_id:
                elsewhere.add(values[0])
                continue
            row = _existing_lead(values[2:])
            existing[row["email_key"]] = row
    return existing, elsewhere


def adapt_values(values: dict[str, Any]) -> dict[str, Any]:
    """Python values -> what the raw cursor of this backend accepts."""
    ops = connection.ops
    values["custom_fields"] = json.dumps(values["custom_fields"], ensure_ascii=False)
    if not is_pg():
        for name in ("consent_at", "first_touch_at", "last_touch_at", "created_at", "updated_at"):
            if values.get(name) is not None:
                values[name] = ops.adapt_datetimefield_value(values[name])
        if values.get("value_estimate") is not None:
            values["value_estimate"] = str(values["value_estimate"])
    return values


# PostgreSQL writes a chunk's new leads with one COPY straight into the lead table: the rows
# were looked up first (`fetch_people`), so none should collide with the unique index. If one
# does all the same (a concurrent import of the same people into the same campaign won the race),
# the COPY is rolled back to its savepoint and the chunk takes the slower way: COPY into this
# session's staging table, then INSERT ... ON CONFLICT DO NOTHING, whose refused rows are
# merged as existing leads. The staging table's name carries its layout's version.
STAGE_TABLE = "leads_import_stage_v2"
UNIQUE_VIOLATION = "23505"
COPY_COLUMNS = (*STAGE_COLUMNS, *BATCH_COLUMNS)
NULL = "\\N"
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_COPY_UNESCAPE = re.compile(r"\\(.)")
_UNESCAPED = {"t": "\t", "n": "\n", "r": "\r"}
_TEXT_OF = itemgetter(*STAGE_TEXT_COLUMNS)
# A lead's STAGE_COLUMNS values as a tuple: how SQLite's prepared leads are held.
stage_tuple = itemgetter(*STAGE_COLUMNS)
# json.dumps() builds a new encoder on every call that is not all defaults.
_JSON_TEXT = json.JSONEncoder(ensure_ascii=False).encode
_QUOTED = json.encoder.encode_basestring


class CustomFieldsJson:
    """A row's custom fields as the JSON text `_JSON_TEXT` gives, built faster: every row of a
    file has the same few column names, so each name's quoted prefix is made once instead of
    on every row. Values that are not strings go through the encoder."""

    def __init__(self) -> None:
        self._prefix: dict[str, str] = {}

    def __call__(self, fields: dict[str, Any]) -> str:
        prefix = self._prefix
        try:
            parts = [(prefix.get(k) or self._add(k)) + _QUOTED(v) for k, v in fields.items()]
        except TypeError:
            return _JSON_TEXT(fields)
        return "{" + ", ".join(parts) + "}"

    def _add(self, name: str) -> str:
        if len(self._prefix) > 10_000:  # bounded: a long-lived process sees many files
            self._prefix.clear()
        self._prefix[name] = text = _QUOTED(name) + ": "
        return text


_TABS = len(STAGE_TEXT_COLUMNS) - 1


def copy_text(value: Any) -> str:
    """One value in COPY's text format."""
    if value is None:
        return NULL
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value).translate(_COPY_ESCAPES)


def copy_line(values: dict[str, Any]) -> str:
    """A lead's STAGE_COLUMNS in COPY's text format, without the line break. `custom_fields`
    is already JSON text."""
    texts = _TEXT_OF(values)
    line = "\t".join(texts)
    if line.count("\t") != _TABS or "\\" in line or "\n" in line or "\r" in line:
        line = "\t".join([t.translate(_COPY_ESCAPES) for t in texts])
    size, segment, consent_at, value = (
        values["company_size"],
        values["segment_id"],
        values["consent_at"],
        values["value_estimate"],
    )
    return (
        f"{line}\t{NULL if size is None else size}\t{NULL if segment is None else segment}\t"
        f"{NULL if consent_at is None else consent_at.isoformat()}\t"
        f"{NULL if value is None else value}\t{values['source_row']}\t{values['fit_score']}"
    )


def values_from_line(line: bytes) -> dict[str, Any]:
    """The normaliser's values back from a lead's COPY line (for the few rows that merge into
    an existing lead); the batch's columns after them are ignored."""
    texts = line.decode().rstrip("\n").split("\t")
    values: dict[str, Any] = {}
    for name, text in zip(STAGE_COLUMNS, texts[: len(STAGE_COLUMNS)], strict=True):
        if text == NULL:
            values[name] = None
        elif "\\" in text:
            values[name] = _COPY_UNESCAPE.sub(lambda m: _UNESCAPED.get(m[1], m[1]), text)
        else:
            values[name] = text
    for name in ("company_size", "segment_id", "source_row", "fit_score"):
        if values[name] is not None:
            values[name] = int(values[name])
    if values["consent_at"] is not None:
        values["consent_at"] = datetime.fromisoformat(values["consent_at"])
    if values["value_estimate"] is not None:
        values["value_estimate"] = Decimal(values["value_estimate"])
    values["custom_fields"] = json.loads(values["custom_fields"])
    return values


def values_from_tuple(row: tuple) -> dict[str, Any]:
    """The normaliser's values back from a lead's SQLite tuple (`stage_tuple`), for the few
    rows that merge into an existing lead."""
    values = dict(zip(STAGE_COLUMNS, row, strict=True))
    values["custom_fields"] = json.loads(values["custom_fields"])
    return values


def _copy(cur, table: str, data: bytes) -> None:
    """COPY lines of COPY_COLUMNS (as `ChunkProcessor.prepare` builds them) into table."""
    with cur.cursor.copy(f"COPY {table} ({', '.join(COPY_COLUMNS)}) FROM STDIN") as copy:
        copy.write(data)


def copy_leads(data: bytes) -> bool:
    """COPY new leads straight into the lead table, in a savepoint. False (and nothing
    written) if one of them collided with the unique index after all."""
    if not data:
        return True
    try:
        with transaction.atomic(), connection.cursor() as cur:
            _copy(cur, Lead._meta.db_table, data)
    except Exception as exc:
        # psycopg's own error (Django wraps execute(), not COPY); the savepoint is rolled back.
        if getattr(exc, "sqlstate", None) != UNIQUE_VIOLATION:
            raise
        return False
    return True


def insert_leads_staged(data: bytes) -> set[str]:
    """The slow way: COPY into the staging table, then INSERT ... ON CONFLICT DO NOTHING.
    Returns the email keys inserted."""
    columns = ", ".join(COPY_COLUMNS)
    with connection.cursor() as cur:
        cur.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {STAGE_TABLE} AS "  # noqa: S608 - identifiers are constants
            f"SELECT {columns} FROM {Lead._meta.db_table} WITH NO DATA"
        )
        cur.execute(f"TRUNCATE {STAGE_TABLE}")
        _copy(cur, STAGE_TABLE, data)
        cur.execute(
            f"INSERT INTO {Lead._meta.db_table} ({columns}) SELECT {columns} FROM {STAGE_TABLE} "  # noqa: S608 - identifiers are constants
            f"ORDER BY email_key ON CONFLICT (campaign_id, email_key) WHERE NOT (email_key = '') "
            f"DO NOTHING RETURNING email_key"
        )
        return {r[0] for r in cur.fetchall()}


def insert_rows_sqlite(batch_values: tuple, rows: list[tuple]) -> None:
    """SQLite: insert rows (STAGE_COLUMNS order, Python values) with the batch's values."""
    if not rows:
        return
    ops = connection.ops
    at = STAGE_COLUMNS.index("consent_at")
    money = STAGE_COLUMNS.index("value_estimate")

    def adapted(row: tuple) -> tuple:
        if row[at] is None and row[money] is None:
            return (*batch_values, *row)
        row = list(row)
        if row[at] is not None:
            row[at] = ops.adapt_datetimefield_value(row[at])
        if row[money] is not None:
            row[money] = str(row[money])
        return (*batch_values, *row)

    names = ", ".join(INSERT_COLUMNS)
    placeholders = ", ".join(["%s"] * len(INSERT_COLUMNS))
    with connection.cursor() as cur:
        cur.executemany(
            f"INSERT INTO {Lead._meta.db_table} ({names}) VALUES ({placeholders})",  # noqa: S608 - identifiers are constants
            [adapted(r) for r in rows],
        )


def update_leads(rows: list[tuple]) -> None:
    """rows: (UPDATE_COLUMNS values..., last_batch_id, last_touch_at, updated_at, id)."""
    if not rows:
        return
    json_cast = "::jsonb" if is_pg() else ""
    assignments = ", ".join(
        f"{c} = %s{json_cast if c == 'custom_fields' else ''}" for c in UPDATE_COLUMNS
    )
    sql = (
        f"UPDATE {Lead._meta.db_table} SET {assignments}, last_batch_id = %s, "  # noqa: S608 - identifiers are constants
        f"last_touch_at = %s, updated_at = %s WHERE id = %s"
    )
    with connection.cursor() as cur:
        cur.executemany(sql, rows)


def touch_leads(ids: list[int], *, batch_id: int, now: Any) -> None:
    if not ids:
        return
    clause, param = _in("id", ids)
    with connection.cursor() as cur:
        cur.execute(
            f"UPDATE {Lead._meta.db_table} SET last_batch_id = %s, last_touch_at = %s "  # noqa: S608 - identifiers are constants
            f"WHERE {clause}",
            [batch_id, now, param],
        )
