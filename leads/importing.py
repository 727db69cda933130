"""The import pipeline: rows -> normalised leads -> dedup, suppression, policy -> bulk writes.

Rows are processed in chunks of CHUNK_ROWS. Each chunk is one transaction: it looks up the
chunk's keys (existing leads of the campaign, suppression entries, leads active in other
campaigns of the venture) with one query each, writes new leads in bulk (PostgreSQL: COPY into
a temporary staging table, then one INSERT ... ON CONFLICT DO NOTHING; SQLite: executemany under
its single-writer lock), fills blanks of existing leads, stores the row issues and the batch's
counters. A concurrent import of the same people into the same campaign loses the race on the
unique index, not on application code: its conflicting rows are handled as existing leads.

File-level problems were all found by `parsing.scan_file()` before the first chunk.
"""

from __future__ import annotations

import gc
import json
import logging
import operator
import os
import pickle
import re
import select
import signal
import struct
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, closing, suppress
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from decimal import Decimal
from itertools import chain, islice, repeat
from operator import itemgetter
from typing import Any

from django.db import OperationalError, connection, reset_queries, transaction
from django.utils import timezone

from leads.models import (
    IDENTITY_KEY_SQL,
    PROFILE_FIELDS,
    BatchState,
    ConsentStatus,
    CrossCampaignPolicy,
    ImportBatch,
    ImportRowError,
    Lead,
    LeadStatus,
    RowIssueKind,
    SourceChannel,
    SuppressionEntry,
    SuppressionKind,
    identity_hash_of,
)
from leads.normalise import (
    InvalidValue,
    company_size_parse,
    consent_parse,
    country_code_of,
    datetime_parse,
    decimal_parse,
    domain_from_website,
    domain_normalise,
    email_domain_of,
    email_key_of,
    email_normalise,
    linkedin_normalise,
    phone_normalise,
    timezone_infer,
    timezone_valid,
    truthy,
)
from leads.parsing import HeaderMapping, ScanResult, SourceFile, header_key, scan_file
from leads.scoring import LeadScorer
from ventures.services import DomainError

logger = logging.getLogger(__name__)

CHUNK_ROWS = 10_000
CHUNK_WORK_MEM = "64MB"
MAX_CUSTOM_VALUE_CHARS = 10_000
DEADLOCK_RETRIES = 5

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
_TEXT_FIELDS = (
    "first_name",
    "last_name",
    "full_name",
    "title",
    "company",
    "company_domain",
    "website",
    "linkedin_url",
    "city",
    "state",
    "country",
    "industry",
    "consent_source",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "utm_content",
)


@dataclass
class ImportCounts:
    rows_total: int = 0
    rows_done: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    duplicates_in_file: int = 0
    duplicates_in_campaign: int = 0
    active_elsewhere: int = 0
    skipped_active_elsewhere: int = 0
    suppressed: int = 0
    invalid: int = 0

    def add(self, other: ImportCounts) -> None:
        for f in fields(self):
            if f.name != "rows_total":
                setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass
class RowIssue:
    row: int
    column: str
    reason: str
    kind: str = RowIssueKind.INVALID


def _max_lengths() -> dict[str, int]:
    lengths = {f.name: f.max_length for f in Lead._meta.fields if getattr(f, "max_length", None)}
    lengths["full_name"] = lengths["first_name"] + lengths["last_name"]
    lengths["phone_raw"] = 200
    return lengths


class RowNormaliser:
    """Turns one file row into the values of a lead, or into the reasons it cannot be one.

    This runs once per row of every import, so it is written for speed: the columns to read
    are worked out once (`operator.itemgetter`), values that depend only on repeated inputs
    (country, domain, size, scoring) come from bounded caches, and the slow, careful checks
    (over-long values) run only when a cheap test says a row might fail them.
    """

    def __init__(self, *, mapping: HeaderMapping, scorer: LeadScorer) -> None:
        self.present = sorted(mapping.fields.items(), key=lambda item: item[1])
        self.header_of = {f: mapping.headers[i] for f, i in mapping.fields.items()}
        self.custom = mapping.custom
        self.scorer = scorer
        self.lengths = _max_lengths()
        self.shortest_limit = min(self.lengths[name] for name in _TEXT_FIELDS)
        self.signal_names = [
            name for _, name in mapping.custom if header_key(name) in scorer.signal_columns
        ]
        # Rows at least this wide (all of them, in a CSV that passed scan_file) take the fast
        # path: every mapped and custom column read at once.
        self._fields = tuple(f for f, _ in self.present)
        self._take_fields = _taker([i for _, i in self.present])
        self._custom_names = tuple(name for _, name in self.custom)
        self._take_custom = _taker([i for i, _ in self.custom])
        self._width = 1 + max([i for _, i in self.present] + [i for i, _ in self.custom])
        self._score = scorer.score_of
        lengths = self.lengths
        self._first_max, self._last_max = lengths["first_name"], lengths["last_name"]
        self._phone_max, self._linkedin_max = lengths["phone"], lengths["linkedin_url"]
        self._domain_max = lengths["company_domain"]

    def __call__(self, number: int, row: list[str]) -> dict[str, Any] | list[RowIssue]:
        width = len(row)
        # No cell longer than the shortest length limit: no value can be too long.
        short = width >= self._width and max(map(len, row)) <= self.shortest_limit
        if short:
            v = dict(zip(self._fields, map(str.strip, self._take_fields(row)), strict=True))
        else:
            v = {f: row[i].strip() for f, i in self.present if i < width}
        raw_email = v.get("email", "")
        email = ""
        issues: list[RowIssue] | None = None
        if raw_email:
            try:
                email = email_normalise(raw_email)
            except InvalidValue as exc:
                issues = [RowIssue(number, self.header_of["email"], f"Invalid email: {exc}")]
        else:
            issues = [RowIssue(number, self.header_of["email"], "No email address.")]
        if short:
            # The non-empty custom values, in column order.
            values = map(str.strip, self._take_custom(row))
            custom = dict(filter(_second, zip(self._custom_names, values, strict=True)))
        else:
            if max(map(len, v.values()), default=0) > self.shortest_limit:
                issues = self._length_issues(number, v, issues or [])
            custom, issues = self._custom_checked(number, row, width, issues or [])
        if issues:
            return issues
        return self._values(number, v, email, custom)

    def _length_issues(self, number: int, v: dict[str, str], issues: list[RowIssue]) -> list:
        lengths = self.lengths
        for name in _TEXT_FIELDS:
            value = v.get(name)
            if value and len(value) > lengths[name]:
                issues.append(
                    RowIssue(
                        number,
                        self.header_of[name],
                        f"Longer than {lengths[name]} characters ({len(value)}).",
                    )
                )
        return issues

    def _custom_checked(
        self, number: int, row: list[str], width: int, issues: list[RowIssue]
    ) -> tuple[dict[str, str], list[RowIssue]]:
        custom: dict[str, str] = {}
        for i, name in self.custom:
            if i < width:
                value = row[i].strip()
                if value:
                    if len(value) > MAX_CUSTOM_VALUE_CHARS:
                        issues.append(
                            RowIssue(
                                number, name, f"Longer than {MAX_CUSTOM_VALUE_CHARS} characters."
                            )
                        )
                    custom[name] = value
        return custom, issues

    def _values(self, number: int, v: dict[str, str], email: str, custom: dict) -> dict[str, Any]:
        get = v.get
        first, last = get("first_name", ""), get("last_name", "")
        full = get("full_name", "")
        if full and not (first or last):
            first, _, last = full.rpartition(" ") if " " in full else (full, "", "")
        country, state = get("country", ""), get("state", "")
        raw_phone = get("phone", "")
        phone = ""
        if raw_phone:
            region = country_code_of(country) if country else None
            phone = phone_normalise(raw_phone, region=region)
            if len(phone) > self._phone_max:
                custom.setdefault(self.header_of["phone"], raw_phone)
                phone = ""
        website = get("website", "")
        domain = get("company_domain", "")
        domain = domain_normalise(domain) if domain else domain_from_website(website)
        linkedin_raw = get("linkedin_url", "")
        linkedin = linkedin_normalise(linkedin_raw) if linkedin_raw else ""
        if len(linkedin) > self._linkedin_max:
            linkedin = linkedin_raw
        tz_raw = get("timezone", "")
        tz = (timezone_valid(tz_raw) if tz_raw else "") or (
            timezone_infer(country, state) if country else ""
        )
        size_raw = get("company_size", "")
        size = company_size_parse(size_raw) if size_raw else None
        if size_raw and size is None:
            custom.setdefault(self.header_of["company_size"], size_raw)
        consent_raw = get("consent_status", "")
        consent = consent_parse(consent_raw) if consent_raw else ConsentStatus.UNKNOWN
        dnc_raw = get("do_not_contact", "")
        if dnc_raw and truthy(dnc_raw):
            consent = ConsentStatus.DNC
        value_raw = get("value_estimate", "")
        value = decimal_parse(value_raw) if value_raw else None
        if value_raw and value is None:
            custom.setdefault(self.header_of["value_estimate"], value_raw)
        consent_at_raw = get("consent_at", "")
        email_key = email_key_of(email)
        title, industry = get("title", ""), get("industry", "")
        signal_names = self.signal_names
        score = self._score(
            title,
            industry,
            country,
            size,
            frozenset([n for n in signal_names if n in custom]) if signal_names else _NO_SIGNALS,
        )
        return {
            "email": email,
            "email_key": email_key,
            "identity_hash": identity_hash_of(email_key=email_key),
            "first_name": first[: self._first_max],
            "last_name": last[: self._last_max],
            "title": title,
            "company": get("company", ""),
            "company_domain": domain[: self._domain_max],
            "website": website,
            "phone": phone,
            "linkedin_url": linkedin,
            "city": get("city", ""),
            "state": state,
            "country": country,
            "timezone": tz,
            "industry": industry,
            "company_size": size,
            "segment_id": score.segment_id,
            "consent_status": consent,
            "consent_at": datetime_parse(consent_at_raw) if consent_at_raw else None,
            "consent_source": get("consent_source", ""),
            "value_estimate": value,
            "custom_fields": custom,
            "source_row": number,
            "utm_source": get("utm_source", ""),
            "utm_medium": get("utm_medium", ""),
            "utm_campaign": get("utm_campaign", ""),
            "utm_content": get("utm_content", ""),
            "fit_score": score.fit_score,
            "grade": score.grade,
            "score_explanation": score.explanation,
        }


_NO_SIGNALS: frozenset[str] = frozenset()
_second = operator.itemgetter(1)


def _taker(indexes: list[int]) -> Callable[[list[str]], tuple[str, ...]]:
    """A function returning the values at `indexes` of a row, as a tuple (in C when it can)."""
    if not indexes:
        return lambda row: ()
    if len(indexes) == 1:
        only = indexes[0]
        return lambda row: (row[only],)
    return operator.itemgetter(*indexes)


def chunked(rows: Iterable, size: int, *, ramp: tuple[int, ...] = ()) -> Iterator[Iterator]:
    """Consecutive runs of at most `size` rows, each read lazily (a run must be consumed before
    the next is asked for): a chunk's raw rows are never all held at once. The first runs may
    be shorter: at most `ramp[i]` rows for run i."""
    iterator = iter(rows)
    sizes = chain(ramp, repeat(size))
    for first in iterator:
        yield chain((first,), islice(iterator, next(sizes) - 1))


# With a preparing process the writer waits for the first chunk before it can do anything, and
# the process waits for nothing: the first chunks are short, so writing starts after a few
# hundred rows and overlaps the preparing of the rest (a 10,000-row file is one chunk
# otherwise, prepared and then written with no overlap at all). Only for full-size chunks.
RAMP_MIN_CHUNK_ROWS = 1_000


def _ramp(size: int) -> tuple[int, ...]:
    if size < RAMP_MIN_CHUNK_ROWS:
        return ()
    return (size // 8, size // 4, size // 2)


# --- database access (one query per chunk, per backend) ----------------------------------------


def _is_pg() -> bool:
    return connection.vendor == "postgresql"


def _in(column: str, values: list) -> tuple[str, Any]:
    """`column IN <values>` as one parameter: an array on PostgreSQL, JSON on SQLite."""
    if _is_pg():
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
    if _is_pg():
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
    # it would probe one of them and filter the whole campaign per key (53 s for one chunk,
    # seen). The unique (email key, campaign) index is then the only way in.
    campaign_match = "l.campaign_id + 0 = %s" if _is_pg() else "l.campaign_id = %s"
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


def _adapt(values: dict[str, Any]) -> dict[str, Any]:
    """Python values -> what the raw cursor of this backend accepts."""
    ops = connection.ops
    values["custom_fields"] = json.dumps(values["custom_fields"], ensure_ascii=False)
    if not _is_pg():
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
_STAGE_OF = itemgetter(*STAGE_COLUMNS)
# json.dumps() builds a new encoder on every call that is not all defaults.
_JSON_TEXT = json.JSONEncoder(ensure_ascii=False).encode
_QUOTED = json.encoder.encode_basestring


class CustomFieldsJson:
    """A row's custom fields as the JSON text `_JSON_TEXT` gives, built faster: every row of a
    file has the same few column names, so each name's quoted prefix is made once (an import's
    preparing process spent about 2.7 µs a row in the encoder, 1.6 this way). Values that are
    not strings go through the encoder."""

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
    json_cast = "::jsonb" if _is_pg() else ""
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


# --- the chunk processor -----------------------------------------------------------------------


@dataclass
class ImportContext:
    batch: ImportBatch
    normaliser: RowNormaliser
    policy: str
    source_list: str
    channel: str = SourceChannel.IMPORT
    counts: ImportCounts = field(default_factory=ImportCounts)
    # A leased import: each chunk commits only while this token still holds the batch, and
    # extends the lease by `lease_period` in the same transaction.
    lease_token: str | None = None
    lease_period: timedelta | None = None
    # Rows the file probably has, while `counts.rows_total` is not known yet (its check runs
    # beside the import): decides whether a preparing process is worth forking.
    rows_expected: int = 0


class LeaseLost(Exception):
    """Another runner took the batch over; the chunk being written was rolled back."""


@dataclass
class PreparedChunk:
    """A chunk's database-free half, ready to write: its distinct leads in email key order, as
    parallel lists (cheap to pickle from the preparing process and to pick from by position).

    `rows` holds, per lead, on PostgreSQL its whole COPY line as UTF-8 bytes (the batch's
    columns appended, line break included: a chunk of new leads is written by joining them),
    on SQLite a tuple of STAGE_COLUMNS values. `domains` are the distinct email domains."""

    keys: list[str]
    identities: list[str]
    source_rows: list[int]
    rows: list[Any]
    domains: list[str]
    issues: list[RowIssue]
    counts: ImportCounts
    now: Any

    def __len__(self) -> int:
        return len(self.keys)


class ChunkProcessor:
    def __init__(self, ctx: ImportContext) -> None:
        self.ctx = ctx
        self.batch = ctx.batch
        self.campaign_id = ctx.batch.campaign_id
        self.venture_id = ctx.batch.campaign.venture_id
        self.pg = _is_pg()
        self.channel = str(ctx.channel)
        self.source_list = ctx.source_list
        self._custom_json = CustomFieldsJson()

    def prepare(self, records: Iterable[tuple[int, list[str]]]) -> PreparedChunk:
        """The database-free half of a chunk: normalise, validate, score, dedup within the
        chunk, and build the rows to write. Runs in the preparing process of a big import, so
        it must not touch the database. Each row is turned into its COPY line (or tuple) as
        soon as it is normalised: a chunk holds one small entry per lead, not every value."""
        counts = ImportCounts()
        issues: list[RowIssue] = []
        entries: dict[str, tuple[str, int, Any]] = {}
        normalise = self.ctx.normaliser
        dumps = self._custom_json
        pg = self.pg
        done = 0
        for number, row in records:
            done += 1
            values = normalise(number, row)
            if values.__class__ is list:
                counts.invalid += 1
                issues.extend(values)
                continue
            key = values["email_key"]
            first = entries.get(key)
            if first is not None:
                counts.duplicates_in_file += 1
                issues.append(_duplicate(number, first[1]))
                continue
            values["custom_fields"] = dumps(values["custom_fields"])
            entries[key] = (
                values["identity_hash"],
                number,
                copy_line(values) if pg else _STAGE_OF(values),
            )
        counts.rows_done = done
        now = timezone.now()
        # In email key order: indexes are filled in order, and concurrent imports of the same
        # people take their row locks in the same order.
        keys = sorted(entries)
        picked = [entries[k] for k in keys]
        if pg:
            end = "\t" + "\t".join(copy_text(v) for v in self._batch_values(now)) + "\n"
            rows = [(e[2] + end).encode() for e in picked]
        else:
            rows = [e[2] for e in picked]
        return PreparedChunk(
            keys=keys,
            identities=[e[0] for e in picked],
            source_rows=[e[1] for e in picked],
            rows=rows,
            domains=sorted({email_domain_of(k) for k in keys}),
            issues=issues,
            counts=counts,
            now=now,
        )

    def run(self, prepared: PreparedChunk, totals: ImportCounts) -> ImportCounts:
        """Write one prepared chunk in its own transaction (with the batch's running counters),
        retried on a deadlock; returns the chunk's counts."""
        for attempt in range(DEADLOCK_RETRIES):
            try:
                with transaction.atomic():
                    if self.pg:
                        # A crash may lose the last chunks committed (never half a chunk: the
                        # counters commit with the rows); each commit need not wait for the
                        # WAL flush. The import's final state change is a normal commit.
                        with connection.cursor() as cur:
                            cur.execute("SET LOCAL synchronous_commit = off")
                            # The reference check's transition table holds the chunk's rows
                            # (about 10 MB): kept in memory, not spilled to a temporary file
                            # (0.9 s less PostgreSQL CPU per million rows). A limit, not an
                            # allocation.
                            cur.execute(f"SET LOCAL work_mem = '{CHUNK_WORK_MEM}'")
                    counts = self._write(prepared)
                    running = ImportCounts(**totals.as_dict())
                    running.add(counts)
                    self._store_counters(running)
                    return counts
            except Exception as exc:
                if attempt + 1 == DEADLOCK_RETRIES or not _retryable(exc):
                    raise
                time.sleep(0.05 * (attempt + 1))
        raise AssertionError("unreachable")

    def _store_counters(self, running: ImportCounts) -> None:
        """The batch's running counters, in the chunk's transaction. A leased import also
        checks and extends its lease here: a runner that lost the batch (it stalled past its
        lease and another took over) cannot commit another chunk."""
        rows = ImportBatch.objects.filter(pk=self.batch.pk)
        extra: dict[str, Any] = {}
        token = self.ctx.lease_token
        if token is not None:
            rows = rows.filter(state=BatchState.RUNNING, lease_token=token)
            now = timezone.now()
            extra = {"heartbeat_at": now, "lease_until": now + self.ctx.lease_period}
        if not rows.update(**running.as_dict(), **extra):
            raise LeaseLost

    def _batch_values(self, now: Any) -> tuple:
        """The BATCH_COLUMNS values of every new lead of this chunk."""
        batch = self.batch.pk
        return (
            self.campaign_id,
            self.venture_id,
            LeadStatus.ACTIVE.value,
            self.channel,
            self.source_list,
            batch,
            batch,
            now,
            now,
            now,
            now,
        )

    def _write(self, prepared: PreparedChunk) -> ImportCounts:
        """The chunk's leads, by position: suppressed ones dropped, this campaign's existing
        ones merged, the cross-campaign policy applied, the rest written. In the common case
        (all new) the preparing process's COPY lines go to the database as they came."""
        counts = ImportCounts(**prepared.counts.as_dict())
        issues = list(prepared.issues)
        keys, identities, rows = prepared.keys, prepared.identities, prepared.rows
        if self.pg:
            # Taken before any lookup: an erasure (which locks the table against writers)
            # either finished before this chunk looks, or waits until it committed.
            with connection.cursor() as cur:
                cur.execute(f"LOCK TABLE {Lead._meta.db_table} IN ROW EXCLUSIVE MODE")
        keep = self._not_suppressed(prepared, counts, issues)
        whole = len(keep) == len(keys)
        existing, elsewhere = fetch_people(
            self.venture_id,
            self.campaign_id,
            identities if whole else [identities[i] for i in keep],
        )
        skipping = elsewhere if self.ctx.policy == CrossCampaignPolicy.SKIP_ACTIVE else set()
        if self.pg:
            new = self._new(keep, keys, identities, existing, skipping)
            data = b"".join(rows) if len(new) == len(keys) else b"".join([rows[i] for i in new])
            inserted = new
            if not copy_leads(data):
                # Also where a lead of the campaign has the key but not the identity hash.
                stored = insert_leads_staged(data)
                inserted = [i for i in new if keys[i] in stored]
                existing.update(
                    fetch_existing(
                        self.campaign_id, [keys[i] for i in new if keys[i] not in stored]
                    )
                )
            incoming = {keys[i]: values_from_line(rows[i]) for i in keep if keys[i] in existing}
        else:
            # SQLite: the chunk's transaction holds the only write lock, and the campaign's
            # leads are looked up by the unique index's own key (a lead whose identity hash is
            # missing or stale is still found): nothing can collide.
            existing = fetch_existing(self.campaign_id, [keys[i] for i in keep])
            new = self._new(keep, keys, identities, existing, skipping)
            now = connection.ops.adapt_datetimefield_value(prepared.now)
            batch_values = (*self._batch_values(prepared.now)[:-4], now, now, now, now)
            insert_rows_sqlite(batch_values, [rows[i] for i in new])
            inserted = new
            incoming = {keys[i]: self._values_of(rows[i]) for i in keep if keys[i] in existing}
        counts.created += len(inserted)
        if elsewhere or len(inserted) + len(existing) < len(keep):
            rest, rest_issues = self._the_rest(
                prepared, keep, inserted, existing, elsewhere, skipping
            )
            counts.add(rest)
            issues.extend(rest_issues)
        self._merge_existing(incoming, existing, prepared.now, counts, issues)
        self._save_issues(issues)
        return counts

    @staticmethod
    def _new(keep, keys, identities, existing, skipping) -> list[int]:
        """Positions of the leads to write: neither in the campaign already nor skipped."""
        if not (existing or skipping):
            return keep
        return [i for i in keep if keys[i] not in existing and identities[i] not in skipping]

    @staticmethod
    def _the_rest(
        prepared, keep, inserted, existing, elsewhere, skipping
    ) -> tuple[ImportCounts, list[RowIssue]]:
        """Counts and row issues of the leads that were neither written nor merged (skipped by
        the policy, or erased while the chunk ran), and of new ones active elsewhere."""
        counts, issues = ImportCounts(), []
        written = set(inserted)
        keys, identities = prepared.keys, prepared.identities
        for i in keep:
            key, identity = keys[i], identities[i]
            if i in written or key in existing:
                if i in written and identity in elsewhere:
                    counts.active_elsewhere += 1
                continue
            source_row = prepared.source_rows[i]
            if identity not in skipping:
                # Refused by the unique index, then gone: changed while this chunk ran.
                counts.suppressed += 1
                issues.append(
                    RowIssue(
                        source_row,
                        "",
                        "Erased while the import ran; not imported.",
                        RowIssueKind.SUPPRESSED,
                    )
                )
                continue
            counts.active_elsewhere += 1
            counts.skipped_active_elsewhere += 1
            issues.append(
                RowIssue(
                    source_row,
                    "",
                    "Already active in another campaign of this venture; skipped by the "
                    "campaign's cross-campaign policy.",
                    RowIssueKind.SKIPPED,
                )
            )
        return counts, issues

    @staticmethod
    def _values_of(row: tuple) -> dict[str, Any]:
        values = dict(zip(STAGE_COLUMNS, row, strict=True))
        values["custom_fields"] = json.loads(values["custom_fields"])
        return values

    def _not_suppressed(self, prepared: PreparedChunk, counts, issues) -> list[int]:
        """Positions of the chunk's leads that are not on the suppression list; the others
        are counted and get a row issue."""
        everyone = list(range(len(prepared)))
        hit_hashes, hit_domains = fetch_suppressed(
            self.venture_id, prepared.identities, prepared.domains
        )
        if not (hit_hashes or hit_domains):
            return everyone
        keep = []
        for i in everyone:
            key = prepared.keys[i]
            by_domain = email_domain_of(key) in hit_domains
            if not (by_domain or prepared.identities[i] in hit_hashes):
                keep.append(i)
                continue
            counts.suppressed += 1
            why = "domain" if by_domain else "address"
            issues.append(
                RowIssue(
                    prepared.source_rows[i],
                    "",
                    f"On the suppression list ({why}); not imported.",
                    RowIssueKind.SUPPRESSED,
                )
            )
        return keep

    def _merge_existing(self, incoming, existing, now, counts, issues) -> None:
        updates, touched = [], []
        now_db = now if _is_pg() else connection.ops.adapt_datetimefield_value(now)
        for key, old in sorted(existing.items(), key=lambda item: item[1]["id"]):
            new = incoming[key]
            if old["last_batch_id"] == self.batch.pk:
                counts.duplicates_in_file += 1
                issues.append(_duplicate(new["source_row"], None))
                continue
            counts.duplicates_in_campaign += 1
            merged = self._fill_blanks(old, new)
            if merged is None:
                counts.unchanged += 1
                touched.append(old["id"])
                continue
            counts.updated += 1
            merged = _adapt(merged)
            updates.append(
                (*(merged[c] for c in UPDATE_COLUMNS), self.batch.pk, now_db, now_db, old["id"])
            )
        update_leads(updates)
        touch_leads(touched, batch_id=self.batch.pk, now=now_db)

    def _fill_blanks(self, old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any] | None:
        """Old values with blanks filled from the file; None if nothing changes. Consent is
        only ever tightened: UNKNOWN takes the file's value, CONSENTED may become DNC, DNC stays."""
        merged = {c: old[c] for c in UPDATE_COLUMNS}
        changed = False
        for column in FILL_COLUMNS:
            if old[column] in ("", None) and new[column] not in ("", None):
                merged[column] = new[column]
                changed = True
        extra = {k: v for k, v in new["custom_fields"].items() if k not in old["custom_fields"]}
        if extra:
            merged["custom_fields"] = {**old["custom_fields"], **extra}
            changed = True
        tighten = (old["consent_status"] == ConsentStatus.UNKNOWN) or (
            new["consent_status"] == ConsentStatus.DNC
        )
        if tighten and new["consent_status"] not in (old["consent_status"], ConsentStatus.UNKNOWN):
            merged["consent_status"] = new["consent_status"]
            merged["consent_at"] = new["consent_at"]
            merged["consent_source"] = new["consent_source"] or self.ctx.source_list
            changed = True
        if not changed:
            return None
        score = self.ctx.normaliser.scorer.score(
            title=merged["title"],
            industry=merged["industry"],
            country=merged["country"],
            company_size=merged["company_size"],
            signals=self.ctx.normaliser.scorer.signals_present(merged["custom_fields"]),
        )
        merged.update(
            segment_id=score.segment_id,
            fit_score=score.fit_score,
            grade=score.grade,
            score_explanation=score.explanation,
        )
        return merged

    def _save_issues(self, issues: list[RowIssue]) -> None:
        if issues:
            ImportRowError.objects.bulk_create(
                [
                    ImportRowError(
                        batch_id=self.batch.pk,
                        row_number=i.row,
                        column=i.column[:200],
                        kind=i.kind,
                        reason=i.reason[:500],
                    )
                    for i in issues
                ],
                batch_size=1000,
            )


def _duplicate(row: int, first_row: int | None) -> RowIssue:
    where = f"row {first_row}" if first_row else "an earlier row"
    return RowIssue(
        row, "", f"Same email address as {where} of this file; merged.", RowIssueKind.DUPLICATE
    )


def _retryable(exc: Exception) -> bool:
    """A deadlock or serialization failure (Django's wrapped error, or psycopg's own from a
    COPY, which Django does not wrap), or SQLite's busy lock."""
    state = getattr(exc, "sqlstate", None) or getattr(exc.__cause__, "sqlstate", None)
    if state in ("40P01", "40001"):
        return True
    return isinstance(exc, OperationalError) and "database is locked" in str(exc)


ProgressCallback = Callable[[int, int], None]


# --- preparing in a second process ---------------------------------------------------------------
#
# Parsing and normalising a row costs about as much CPU as PostgreSQL spends storing it, and the
# GIL keeps a thread from doing it alongside the writer. So a big import forks one process that
# reads the rows, prepares chunk after chunk (RowNormaliser, dedup in the chunk, COPY lines) and
# sends each one, pickled, through a pipe, while this process writes the previous one. The pipe
# is the backpressure: the child blocks once a chunk waits unread, so at most about three chunks
# exist at once (being written, in the pipe, being prepared). An exception in the child is raised
# here, after the chunks before it were written, as if both halves had run in one process.

# Imports of more rows than this use a preparing process; None means "more than one chunk" (a
# single chunk has nothing to overlap with).
PROCESS_MIN_ROWS: int | None = None
_HEADER = struct.Struct("!Q")


class ImportProcessDied(RuntimeError):
    """A process an import forked (to prepare rows or to check the file) ended without a word."""


def _send(out, message: tuple) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    out.write(_HEADER.pack(len(data)))
    out.write(data)
    out.flush()


def _receive(source) -> tuple | None:
    header = source.read(_HEADER.size)
    if len(header) < _HEADER.size:
        return None
    (size,) = _HEADER.unpack(header)
    data = source.read(size)
    if len(data) < size:
        return None
    return pickle.loads(data)  # noqa: S301 - our own child process, through our own pipe


def _exit_description(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"


class _Child:
    """A forked process running `work(send)`, whose messages this process reads from a pipe.

    The child never touches the database (it inherits the connection and leaves it alone: it
    ends with os._exit, which runs no cleanup); it stops when the pipe breaks, so it does not
    outlive an import that failed or a parent that was killed. An exception in it is sent back
    (with its traceback, but for an operator's DomainError) and raised by `receive`. `close`
    stops and reaps it if it is still running.
    """

    def __init__(self, work: Callable[[Callable[[tuple], None]], None], *, does: str) -> None:
        self.does = does  # "preparing the rows", for messages
        read_fd, write_fd = os.pipe()
        # Objects that exist before the fork are never collected by the child: moved out of the
        # collector's reach, they are not walked (and so not copied page by page) by its
        # collections.
        gc.freeze()
        pid = os.fork()
        if pid == 0:  # the child: do the work, then leave without running any cleanup
            code = 1
            try:
                os.close(read_fd)
                code = _child_main(work, write_fd)
            finally:
                os._exit(code)
        gc.unfreeze()
        os.close(write_fd)
        self.pid = pid
        self.source = os.fdopen(read_fd, "rb")
        self.finished = False

    def ready(self) -> bool:
        """Whether a message (or the child's end) is waiting to be read; never blocks."""
        return self.finished or bool(select.select([self.source], [], [], 0)[0])

    def receive(self, *, lost: str) -> tuple[str, Any]:
        """The next (kind, payload) the child sent; raises what it raised, or
        ImportProcessDied (ending with `lost`) if it ended without a word."""
        message = _receive(self.source)
        if message is None:
            status = self.wait()
            raise ImportProcessDied(
                f"The process {self.does} stopped unexpectedly ({_exit_description(status)}); "
                f"{lost}."
            )
        kind, payload = message
        if kind == "error":
            exc, detail = payload
            if detail:
                logger.error("%s for an import failed:\n%s", self.does.capitalize(), detail)
            raise exc
        return kind, payload

    def wait(self) -> int:
        _, status = os.waitpid(self.pid, 0)
        self.finished = True
        return status

    def close(self) -> None:
        self.source.close()
        if not self.finished:
            with suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)  # no-op if it already ended
            self.wait()


def _child_main(work: Callable[[Callable[[tuple], None]], None], write_fd: int) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    out = os.fdopen(write_fd, "wb")
    try:
        work(lambda message: _send(out, message))
        return 0
    except BrokenPipeError:
        return 0  # the parent stopped reading: it failed or was killed
    except BaseException as exc:  # everything goes back to the parent
        detail = "" if isinstance(exc, DomainError) else traceback.format_exc()
        try:
            _send(out, ("error", (exc, detail)))
        except Exception:  # the exception itself does not pickle
            _send(out, ("error", (RuntimeError(f"{type(exc).__name__}: {exc}"), detail)))
        return 1


def _prepared_in_child(prepare: Callable, chunks: Iterator[Iterator]) -> Iterator[PreparedChunk]:
    """Chunks prepared by a forked process, as this process asks for them (see above)."""

    def work(send: Callable[[tuple], None]) -> None:
        for records in chunks:
            send(("chunk", prepare(records)))
        send(("end", None))

    with closing(_Child(work, does="preparing the rows")) as child:
        while True:
            kind, payload = child.receive(lost="the chunks before it were imported")
            if kind == "end":
                child.wait()
                return
            yield payload


def _use_child(rows_total: int) -> bool:
    threshold = CHUNK_ROWS if PROCESS_MIN_ROWS is None else PROCESS_MIN_ROWS
    return hasattr(os, "fork") and rows_total > threshold


class FileCheck:
    """`scan_file()` of a big file in a forked process, while the import's first chunks are
    written. The caller writes them in one transaction that commits only once the check has
    passed (`run_chunks(check=...)`): a file-level problem still leaves the database as it was,
    but the seconds spent reading a million rows twice are no longer spent before the first
    write. Use as a context manager: leaving it stops and reaps the process."""

    def __init__(self, info: SourceFile) -> None:
        self.child = _Child(lambda send: send(("ok", scan_file(info))), does="checking the file")

    def __enter__(self) -> FileCheck:
        return self

    def __exit__(self, *exc_info) -> None:
        self.child.close()

    def done(self) -> bool:
        """Whether the verdict is in (never blocks)."""
        return self.child.ready()

    def result(self) -> ScanResult:
        """The scan's result (waits for it); raises its FileProblem."""
        _, scan = self.child.receive(lost="nothing was imported")
        self.child.wait()
        return scan


def run_chunks(
    *,
    ctx: ImportContext,
    rows: Iterable[tuple[int, list[str]]],
    progress: ProgressCallback | None = None,
    check: FileCheck | None = None,
    pending: ExitStack | None = None,
) -> ImportCounts:
    """Process every data row; after each chunk store the batch's counters and report progress.

    With a `check` running, `pending` holds the open transaction the first chunks are written
    in: once the check has passed (it is looked at after every chunk), the file's row count is
    taken from it and `pending` is closed, committing them; if it fails, its FileProblem is
    raised here and `pending` rolls everything back.
    """
    processor = ChunkProcessor(ctx)
    totals = ctx.counts
    if _use_child(totals.rows_total or ctx.rows_expected):
        chunks = chunked(rows, CHUNK_ROWS, ramp=_ramp(CHUNK_ROWS))
        prepared_chunks = _prepared_in_child(processor.prepare, chunks)
    else:
        prepared_chunks = (processor.prepare(records) for records in chunked(rows, CHUNK_ROWS))

    def passed() -> None:
        totals.rows_total = check.result().rows_total  # stored with the next counters
        pending.close()

    with closing(prepared_chunks):
        for prepared in prepared_chunks:
            totals.add(processor.run(prepared, totals))
            # With DEBUG on, Django keeps the last 9,000 queries with their parameters (a
            # chunk's lookups carry 10,000 keys each): a big import must not grow that log.
            reset_queries()
            if check is not None and check.done():
                passed()
                check = None
            if progress:
                progress(totals.rows_done, totals.rows_total)
        if check is not None:
            passed()
    return totals
