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
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, fields
from typing import Any

from django.db import OperationalError, connection, transaction
from django.utils import timezone

from leads.models import (
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
from leads.parsing import HeaderMapping
from leads.scoring import LeadScorer

CHUNK_ROWS = 5000
MAX_CUSTOM_VALUE_CHARS = 10_000
DEADLOCK_RETRIES = 5

INSERT_COLUMNS = (
    "campaign_id",
    "venture_id",
    "status",
    "email",
    "email_key",
    "identity_hash",
    "first_name",
    "last_name",
    "title",
    "company",
    "company_domain",
    "website",
    "phone",
    "linkedin_url",
    "city",
    "state",
    "country",
    "timezone",
    "industry",
    "company_size",
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
    "first_name",
    "last_name",
    "title",
    "company",
    "company_domain",
    "website",
    "phone",
    "linkedin_url",
    "city",
    "state",
    "country",
    "timezone",
    "industry",
    "company_size",
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
        for name in _TEXT_FIELDS:
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
            signals=self.scorer.signals_present(custom),
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


def _json_value(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else (value or {})


_EXISTING_COLUMNS = ("id", "email_key", "last_batch_id", "status", *UPDATE_COLUMNS)


def fetch_existing(campaign_id: int, keys: list[str]) -> dict[str, dict[str, Any]]:
    if not keys:
        return {}
    clause, param = _in("email_key", keys)
    sql = (
        f"SELECT {', '.join(_EXISTING_COLUMNS)} FROM {Lead._meta.db_table} "  # noqa: S608 - identifiers are constants
        f"WHERE campaign_id = %s AND NOT (email_key = '') AND {clause}"
    )
    with connection.cursor() as cur:
        cur.execute(sql, [campaign_id, param])
        found = {}
        for values in cur.fetchall():
            row = dict(zip(_EXISTING_COLUMNS, values, strict=True))
            row["custom_fields"] = _json_value(row["custom_fields"])
            found[row["email_key"]] = row
    return found


def fetch_suppressed(venture_id: int, hashes: list[str], domains: list[str]) -> tuple[set, set]:
    """(suppressed identity hashes, suppressed domains) among those given, for this venture."""
    if not hashes:
        return set(), set()
    hash_clause, hash_param = _in("identity_hash", hashes)
    domain_clause, domain_param = _in("value", sorted(set(domains)))
    sql = (
        f"SELECT kind, value, identity_hash FROM {SuppressionEntry._meta.db_table} "  # noqa: S608 - identifiers are constants
        f"WHERE (venture_id IS NULL OR venture_id = %s) "
        f"AND ({hash_clause} OR (kind = %s AND {domain_clause}))"
    )
    found_hashes, found_domains = set(), set()
    with connection.cursor() as cur:
        cur.execute(sql, [venture_id, hash_param, SuppressionKind.DOMAIN, domain_param])
        for kind, value, identity in cur.fetchall():
            if kind == SuppressionKind.DOMAIN:
                found_domains.add(value)
            else:
                found_hashes.add(identity)
    return found_hashes, found_domains


def fetch_active_elsewhere(venture_id: int, campaign_id: int, hashes: list[str]) -> set[str]:
    if not hashes:
        return set()
    clause, param = _in("identity_hash", hashes)
    sql = (
        f"SELECT DISTINCT identity_hash FROM {Lead._meta.db_table} "  # noqa: S608 - identifiers are constants
        f"WHERE venture_id = %s AND campaign_id <> %s AND status = %s AND {clause}"
    )
    with connection.cursor() as cur:
        cur.execute(sql, [venture_id, campaign_id, LeadStatus.ACTIVE, param])
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


class ChunkProcessor:
    def __init__(self, ctx: ImportContext) -> None:
        self.ctx = ctx
        self.batch = ctx.batch
        self.campaign_id = ctx.batch.campaign_id
        self.venture_id = ctx.batch.campaign.venture_id

    def run(self, records: list[tuple[int, list[str]]], totals: ImportCounts) -> ImportCounts:
        """Process one chunk in its own transaction (with the batch's running counters), retried
        on a deadlock; returns the chunk's counts."""
        for attempt in range(DEADLOCK_RETRIES):
            try:
                with transaction.atomic():
                    counts = self._process(records)
                    running = ImportCounts(**totals.as_dict())
                    running.add(counts)
                    ImportBatch.objects.filter(pk=self.batch.pk).update(**running.as_dict())
                    return counts
            except OperationalError as exc:
                if attempt + 1 == DEADLOCK_RETRIES or not _retryable(exc):
                    raise
                time.sleep(0.05 * (attempt + 1))
        raise AssertionError("unreachable")

    def _process(self, records: list[tuple[int, list[str]]]) -> ImportCounts:
        counts = ImportCounts()
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
        counts.rows_done = len(records)
        self._drop_suppressed(leads, counts, issues)
        now = timezone.now()
        existing = fetch_existing(self.campaign_id, list(leads))
        new = {k: v for k, v in leads.items() if k not in existing}
        self._apply_policy(new, counts, issues)
        inserted = insert_leads([self._insert_row(v, now) for _, v in sorted(new.items())])
        counts.created += len(inserted)
        lost_race = [k for k in new if k not in inserted]
        if lost_race:
            existing.update(fetch_existing(self.campaign_id, lost_race))
        self._merge_existing(
            {k: leads[k] for k in existing if k in leads}, existing, now, counts, issues
        )
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

    def _apply_policy(self, new, counts, issues) -> None:
        hashes = [v["identity_hash"] for v in new.values()]
        elsewhere = fetch_active_elsewhere(self.venture_id, self.campaign_id, hashes)
        if not elsewhere:
            return
        for key in list(new):
            if new[key]["identity_hash"] not in elsewhere:
                continue
            counts.active_elsewhere += 1
            if self.ctx.policy == CrossCampaignPolicy.SKIP_ACTIVE:
                counts.skipped_active_elsewhere += 1
                issues.append(
                    RowIssue(
                        new[key]["source_row"],
                        "",
                        "Already active in another campaign of this venture; skipped by the "
                        "campaign's cross-campaign policy.",
                        RowIssueKind.SKIPPED,
                    )
                )
                del new[key]

    def _insert_row(self, values: dict[str, Any], now) -> tuple:
        values = dict(values)
        values.update(
            campaign_id=self.campaign_id,
            venture_id=self.venture_id,
            status=LeadStatus.ACTIVE,
            source_channel=self.ctx.channel,
            source_list=self.ctx.source_list,
            source_batch_id=self.batch.pk,
            last_batch_id=self.batch.pk,
            first_touch_at=now,
            last_touch_at=now,
            created_at=now,
            updated_at=now,
        )
        values = _adapt(values)
        return tuple(values[c] for c in INSERT_COLUMNS)

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


def run_chunks(
    *,
    ctx: ImportContext,
    rows: Iterable[tuple[int, list[str]]],
    progress: ProgressCallback | None = None,
) -> ImportCounts:
    """Process every data row; after each chunk store the batch's counters and report progress."""
    processor = ChunkProcessor(ctx)
    totals = ctx.counts
    for records in chunked(rows, CHUNK_ROWS):
        totals.add(processor.run(records, totals))
        if progress:
            progress(totals.rows_done, totals.rows_total)
    return totals
