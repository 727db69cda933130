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

import json
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from typing import Any

from django.db import OperationalError, connection, reset_queries, transaction
from django.utils import timezone

from leads.models import (
    PROFILE_FIELDS,
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
from leads.parsing import HeaderMapping, header_key
from leads.scoring import LeadScorer

CHUNK_ROWS = 10_000
MAX_CUSTOM_VALUE_CHARS = 10_000
DEADLOCK_RETRIES = 5

INSERT_COLUMNS = (
    "campaign_id",
    "venture_id",
    "status",
    "email",
    "email_key",
    "identity_hash",
    *PROFILE_FIELDS,
    "segment_id",
    "consent_status",
    "consent_at",
    "consent_source",
    "value_estimate",
    "custom_fields",
    "source_channel",
    "source_list",
    "source_batch_id",
    "source_row",
    "last_batch_id",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "utm_content",
    "first_touch_at",
    "last_touch_at",
    "fit_score",
    "grade",
    "score_explanation",
    "created_at",
    "updated_at",
)
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
    """Turns one file row into the values of a lead, or into the reasons it cannot be one."""

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

    def __call__(self, number: int, row: list[str]) -> dict[str, Any] | list[RowIssue]:
        width = len(row)
        v = {f: row[i].strip() for f, i in self.present if i < width}
        get = v.get
        issues: list[RowIssue] = []
        raw_email = get("email", "")
        email = ""
        if not raw_email:
            issues.append(RowIssue(number, self.header_of["email"], "No email address."))
        else:
            try:
                email = email_normalise(raw_email)
            except InvalidValue as exc:
                issues.append(RowIssue(number, self.header_of["email"], f"Invalid email: {exc}"))
        lengths = self.lengths
        longest = max(map(len, v.values()), default=0)
        for name in _TEXT_FIELDS if longest > self.shortest_limit else ():
            value = get(name)
            if value and len(value) > lengths[name]:
                issues.append(
                    RowIssue(
                        number,
                        self.header_of[name],
                        f"Longer than {lengths[name]} characters ({len(value)}).",
                    )
                )
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
        if issues:
            return issues
        return self._values(number, v, email, custom)

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
            if len(phone) > self.lengths["phone"]:
                custom.setdefault(self.header_of["phone"], raw_phone)
                phone = ""
        website = get("website", "")
        domain = get("company_domain", "")
        domain = domain_normalise(domain) if domain else domain_from_website(website)
        linkedin = linkedin_normalise(get("linkedin_url", ""))
        if len(linkedin) > self.lengths["linkedin_url"]:
            linkedin = get("linkedin_url", "")
        tz = timezone_valid(get("timezone", "")) or (
            timezone_infer(country, state) if country else ""
        )
        size_raw = get("company_size", "")
        size = company_size_parse(size_raw) if size_raw else None
        if size_raw and size is None:
            custom.setdefault(self.header_of["company_size"], size_raw)
        consent = consent_parse(get("consent_status", ""))
        if truthy(get("do_not_contact", "")):
            consent = ConsentStatus.DNC
        value_raw = get("value_estimate", "")
        value = decimal_parse(value_raw) if value_raw else None
        if value_raw and value is None:
            custom.setdefault(self.header_of["value_estimate"], value_raw)
        consent_at_raw = get("consent_at", "")
        email_key = email_key_of(email)
        title, industry = get("title", ""), get("industry", "")
        score = self.scorer.score(
            title=title,
            industry=industry,
            country=country,
            company_size=size,
            signals=frozenset(n for n in self.signal_names if n in custom),
        )
        return {
            "email": email,
            "email_key": email_key,
            "identity_hash": identity_hash_of(email_key=email_key),
            "first_name": first[: self.lengths["first_name"]],
            "last_name": last[: self.lengths["last_name"]],
            "title": title,
            "company": get("company", ""),
            "company_domain": domain[: self.lengths["company_domain"]],
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


def chunked(rows: Iterable, size: int) -> Iterator[list]:
    chunk: list = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


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
) -> tuple[str, list]:
    """SQL and parameters returning `columns` of the rows of `table` whose `key_column` is one
    of `keys` and that satisfy `match` (on alias l: the rest of an index's columns) and
    `where` (written with {a} for the alias: conditions no index serves).

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
            f"OFFSET 0) x" + (f" WHERE {where.format(a='x')}" if where else "")
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


def fetch_existing(campaign_id: int, keys: list[str]) -> dict[str, dict[str, Any]]:
    """The campaign's leads with these email keys, by key."""
    if not keys:
        return {}
    # On PostgreSQL `campaign_id + 0` keeps the campaign-prefixed indexes out of the planner's
    # choice: with statistics that do not know this campaign yet, it would probe one of them and
    # filter the whole campaign per key. The email key index is then the only way in.
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
            row = dict(zip(_EXISTING_COLUMNS, values, strict=True))
            row["custom_fields"] = _json_value(row["custom_fields"])
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


def fetch_active_elsewhere(venture_id: int, campaign_id: int, hashes: list[str]) -> set[str]:
    """Which of these identities are active in another campaign of the venture."""
    if not hashes:
        return set()
    sql, params = _probe(
        table=Lead._meta.db_table,
        columns=["identity_hash", "campaign_id", "status"],
        match="l.venture_id = %s",
        match_params=[venture_id],
        key_column="identity_hash",
        keys=hashes,
        where="{a}.campaign_id <> %s AND {a}.status = %s",
        where_params=[campaign_id, LeadStatus.ACTIVE],
    )
    with connection.cursor() as cur:
        cur.execute(sql, params)
        return {r[0] for r in cur.fetchall()}


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


def insert_leads(rows: list[tuple]) -> set[str]:
    """Insert rows (INSERT_COLUMNS order); return the email keys actually inserted."""
    if not rows:
        return set()
    table = Lead._meta.db_table
    columns = ", ".join(INSERT_COLUMNS)
    key_index = INSERT_COLUMNS.index("email_key")
    with connection.cursor() as cur:
        if not _is_pg():
            placeholders = ", ".join(["%s"] * len(INSERT_COLUMNS))
            cur.executemany(f"INSERT INTO {table} ({columns}) VALUES ({placeholders})", rows)  # noqa: S608 - identifiers are constants
            return {r[key_index] for r in rows}
        cur.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS leads_import_stage AS "  # noqa: S608 - identifiers are constants
            f"SELECT {columns} FROM {table} WITH NO DATA"
        )
        cur.execute("TRUNCATE leads_import_stage")
        with cur.cursor.copy(f"COPY leads_import_stage ({columns}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        cur.execute(
            f"INSERT INTO {table} ({columns}) SELECT {columns} FROM leads_import_stage "  # noqa: S608 - identifiers are constants
            f"ORDER BY email_key ON CONFLICT (campaign_id, email_key) "
            f"WHERE NOT (email_key = '') DO NOTHING RETURNING email_key"
        )
        return {r[0] for r in cur.fetchall()}


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


@dataclass
class PreparedChunk:
    leads: dict[str, dict[str, Any]]  # email key -> normalised values
    rows: dict[str, tuple]  # email key -> row to insert (INSERT_COLUMNS order)
    issues: list[RowIssue]
    counts: ImportCounts
    now: Any


class ChunkProcessor:
    def __init__(self, ctx: ImportContext) -> None:
        self.ctx = ctx
        self.batch = ctx.batch
        self.campaign_id = ctx.batch.campaign_id
        self.venture_id = ctx.batch.campaign.venture_id
        self.pg = _is_pg()
        # Taken here, in the thread that owns the connection: `prepare` runs in another thread
        # and must not reach for a connection of its own.
        self.ops = connection.ops
        self.channel = str(ctx.channel)
        self.source_list = ctx.source_list

    def prepare(self, records: list[tuple[int, list[str]]]) -> PreparedChunk:
        """The database-free half of a chunk: normalise, validate, score, dedup within the
        chunk, and build the rows to insert."""
        counts = ImportCounts(rows_done=len(records))
        issues: list[RowIssue] = []
        leads: dict[str, dict[str, Any]] = {}
        normalise = self.ctx.normaliser
        for number, row in records:
            result = normalise(number, row)
            if isinstance(result, list):
                counts.invalid += 1
                issues.extend(result)
                continue
            key = result["email_key"]
            if key in leads:
                counts.duplicates_in_file += 1
                issues.append(_duplicate(number, leads[key]["source_row"]))
                continue
            leads[key] = result
        now = timezone.now()
        # As text once per chunk: formatting four datetimes per row would cost more than the row.
        now_db = now.isoformat() if self.pg else self.ops.adapt_datetimefield_value(now)
        rows = {key: self._insert_row(values, now_db) for key, values in leads.items()}
        return PreparedChunk(leads=leads, rows=rows, issues=issues, counts=counts, now=now)

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
                    counts = self._write(prepared)
                    running = ImportCounts(**totals.as_dict())
                    running.add(counts)
                    ImportBatch.objects.filter(pk=self.batch.pk).update(**running.as_dict())
                    return counts
            except OperationalError as exc:
                if attempt + 1 == DEADLOCK_RETRIES or not _retryable(exc):
                    raise
                time.sleep(0.05 * (attempt + 1))
        raise AssertionError("unreachable")

    def _write(self, prepared: PreparedChunk) -> ImportCounts:
        counts = ImportCounts(**prepared.counts.as_dict())
        issues = list(prepared.issues)
        leads = dict(prepared.leads)
        self._drop_suppressed(leads, counts, issues)
        now, rows = prepared.now, prepared.rows
        elsewhere = fetch_active_elsewhere(
            self.venture_id, self.campaign_id, [v["identity_hash"] for v in leads.values()]
        )
        skip = self.ctx.policy == CrossCampaignPolicy.SKIP_ACTIVE
        candidates = {
            k: v for k, v in leads.items() if not (skip and v["identity_hash"] in elsewhere)
        }
        if self.pg:
            # Insert first: the unique index sorts new from existing (also against a concurrent
            # import), and only the rows it refused are looked up.
            inserted = insert_leads([rows[k] for k in sorted(candidates)])
            existing = fetch_existing(self.campaign_id, [k for k in leads if k not in inserted])
        else:
            # SQLite: the chunk's transaction holds the only write lock, so look up, then insert.
            existing = fetch_existing(self.campaign_id, list(leads))
            inserted = insert_leads([rows[k] for k in sorted(candidates) if k not in existing])
        counts.created += len(inserted)
        for key, values in leads.items():
            if key in inserted or key in existing:
                if key in inserted and values["identity_hash"] in elsewhere:
                    counts.active_elsewhere += 1
                continue
            if key in candidates:
                # Refused by the unique index, then gone: erased while this chunk ran.
                counts.suppressed += 1
                issues.append(
                    RowIssue(
                        values["source_row"],
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
                    values["source_row"],
                    "",
                    "Already active in another campaign of this venture; skipped by the "
                    "campaign's cross-campaign policy.",
                    RowIssueKind.SKIPPED,
                )
            )
        self._merge_existing({k: leads[k] for k in existing}, existing, now, counts, issues)
        self._save_issues(issues)
        return counts

    def _drop_suppressed(self, leads, counts, issues) -> None:
        hashes = [v["identity_hash"] for v in leads.values()]
        domains = [email_domain_of(k) for k in leads]
        hit_hashes, hit_domains = fetch_suppressed(self.venture_id, hashes, domains)
        if not (hit_hashes or hit_domains):
            return
        for key in list(leads):
            values = leads[key]
            if values["identity_hash"] in hit_hashes or email_domain_of(key) in hit_domains:
                counts.suppressed += 1
                why = "domain" if email_domain_of(key) in hit_domains else "address"
                issues.append(
                    RowIssue(
                        values["source_row"],
                        "",
                        f"On the suppression list ({why}); not imported.",
                        RowIssueKind.SUPPRESSED,
                    )
                )
                del leads[key]

    def _insert_row(self, v: dict[str, Any], now: Any) -> tuple:
        """The row in INSERT_COLUMNS order (spelled out: this runs once per new lead)."""
        consent_at, value = v["consent_at"], v["value_estimate"]
        if not self.pg:
            consent_at = consent_at and self.ops.adapt_datetimefield_value(consent_at)
            value = None if value is None else str(value)
        return (
            self.campaign_id,
            self.venture_id,
            LeadStatus.ACTIVE.value,
            v["email"],
            v["email_key"],
            v["identity_hash"],
            v["first_name"],
            v["last_name"],
            v["title"],
            v["company"],
            v["company_domain"],
            v["website"],
            v["phone"],
            v["linkedin_url"],
            v["city"],
            v["state"],
            v["country"],
            v["timezone"],
            v["industry"],
            v["company_size"],
            v["segment_id"],
            v["consent_status"],
            consent_at,
            v["consent_source"],
            value,
            json.dumps(v["custom_fields"], ensure_ascii=False),
            self.channel,
            self.source_list,
            self.batch.pk,
            v["source_row"],
            self.batch.pk,
            v["utm_source"],
            v["utm_medium"],
            v["utm_campaign"],
            v["utm_content"],
            now,
            now,
            v["fit_score"],
            v["grade"],
            v["score_explanation"],
            now,
            now,
        )

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


def _retryable(exc: OperationalError) -> bool:
    cause = exc.__cause__
    state = getattr(cause, "sqlstate", None)
    return state in ("40P01", "40001") or "database is locked" in str(exc)


ProgressCallback = Callable[[int, int], None]

# While chunks are prepared in one thread and written in another, the writer waits on the
# database many times per chunk (a COPY is flushed in socket-sized pieces). Each time it wakes
# it needs the GIL back from the preparing thread, which CPython hands over only every switch
# interval (5 ms by default): hundreds of such waits a chunk made the overlap slower than no
# overlap. A shorter interval, for the duration of the imports running in this process, lets
# the writer take the GIL back promptly. The first import to start sets it, the last to finish
# restores it.
IMPORT_SWITCH_INTERVAL = 0.0005
_switch_lock = threading.Lock()
_switch_users = 0
_switch_saved = 0.0


@contextmanager
def _prompt_thread_switches() -> Iterator[None]:
    global _switch_users, _switch_saved
    with _switch_lock:
        if _switch_users == 0:
            _switch_saved = sys.getswitchinterval()
            sys.setswitchinterval(min(_switch_saved, IMPORT_SWITCH_INTERVAL))
        _switch_users += 1
    try:
        yield
    finally:
        with _switch_lock:
            _switch_users -= 1
            if _switch_users == 0:
                sys.setswitchinterval(_switch_saved)


def run_chunks(
    *,
    ctx: ImportContext,
    rows: Iterable[tuple[int, list[str]]],
    progress: ProgressCallback | None = None,
) -> ImportCounts:
    """Process every data row; after each chunk store the batch's counters and report progress."""
    processor = ChunkProcessor(ctx)
    totals = ctx.counts
    chunks = chunked(rows, CHUNK_ROWS)

    def prepare_next() -> PreparedChunk | None:
        records = next(chunks, None)
        return None if records is None else processor.prepare(records)

    # One worker parses and prepares chunk N+1 (no database) while this thread writes chunk N
    # (psycopg and sqlite3 release the GIL while the database works). The next chunk is asked
    # for only once the previous one was received, so at most two chunks are in memory. An
    # exception of the worker is raised here by result(), after the chunks before it were
    # written, as it was when both halves ran in turn; leaving the block waits for the worker.
    with (
        _prompt_thread_switches(),
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="lead-import-prepare") as worker,
    ):
        pending = worker.submit(prepare_next)
        while (prepared := pending.result()) is not None:
            pending = worker.submit(prepare_next)
            totals.add(processor.run(prepared, totals))
            # With DEBUG on, Django keeps the last 9,000 queries with their parameters (a
            # chunk's lookups carry 10,000 keys each): a big import must not grow that log.
            reset_queries()
            if progress:
                progress(totals.rows_done, totals.rows_total)
    return totals
