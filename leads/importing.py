"""The import's merge rules and chunk loop: rows -> chunks -> dedup, suppression, policy, writes.

`run_chunks` cuts an import's rows into chunks (`Chunking`) and takes each through the two
halves of `ChunkProcessor`. `prepare` touches no database, so that a big import can run it in
a forked process (`leads.import_fork`) beside the writer: it normalises the rows
(`leads.import_rows`), dedups them within the chunk and encodes the leads to write. `run`
writes the chunk in one transaction, retried on a deadlock: it looks up the chunk's keys
(suppression entries, the venture's leads with these identities) with one query each, drops
the suppressed, applies the campaign's cross-campaign policy, writes the new leads in bulk,
fills blanks of the campaign's existing leads (consent is only ever tightened), and stores the
row issues and the batch's running counters; a leased import commits a chunk only while its
lease holds (`LeaseLost`). The SQL of all this, for PostgreSQL and SQLite, is
`leads.import_sql`. A concurrent import of the same people into the same campaign loses the
race on the unique index, not in application code: its conflicting rows are merged as
existing leads.

File-level problems. Before the first chunk the caller has checked the file whole
(`parsing.scan_file()`), except for a big file imported by `leads.services.imports.lead_import`:
that one is checked by a `FileCheck` in a forked process while the first chunks are written,
all in one transaction (`run_chunks(pending=...)`) that commits only once the check has passed,
so that a file-level problem still leaves the database as it was. Records from the capture
form and the API (`leads.inbound`) are refused as a whole, if at all, before the first chunk.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, closing
from dataclasses import dataclass, field, fields
from datetime import timedelta
from itertools import chain, islice, repeat
from typing import Any

from django.db import OperationalError, connection, reset_queries, transaction
from django.utils import timezone

from leads.import_fork import FileCheck, prepared_in_child, use_child
from leads.import_rows import RowIssue, RowNormaliser
from leads.import_sql import (
    FILL_COLUMNS,
    UPDATE_COLUMNS,
    CustomFieldsJson,
    adapt_values,
    copy_leads,
    copy_line,
    copy_text,
    fetch_existing,
    fetch_people,
    fetch_suppressed,
    insert_leads_staged,
    insert_rows_sqlite,
    is_pg,
    lock_lead_table,
    relax_chunk_transaction,
    stage_tuple,
    touch_leads,
    update_leads,
    values_from_line,
    values_from_tuple,
)
from leads.models import (
    BatchState,
    ConsentStatus,
    CrossCampaignPolicy,
    ImportBatch,
    ImportIssue,
    LeadStatus,
    RowIssueKind,
    SourceChannel,
)
from leads.normalise import email_domain_of

DEADLOCK_RETRIES = 5


@dataclass(frozen=True)
class Chunking:
    """How an import cuts its rows into chunks. The defaults are production's; tests pass
    small ones (`lead_import(chunking=Chunking(rows=3))`).

    `rows`: rows a chunk, written and committed together. `ramp_min_rows`: with a preparing
    process, chunks of at least this many rows start with shorter ones (`ramp`).
    `process_min_rows`: imports of more rows than this prepare their chunks in a forked
    process; None means more than one chunk (a single chunk has nothing to overlap with).
    """

    rows: int = 10_000
    ramp_min_rows: int = 1_000
    process_min_rows: int | None = None

    @property
    def process_threshold(self) -> int:
        """Imports of more rows than this use a preparing process."""
        return self.rows if self.process_min_rows is None else self.process_min_rows

    def ramp(self) -> tuple[int, ...]:
        """The sizes of the first chunks when a process prepares them. The writer waits for the
        first chunk before it can do anything, and the process waits for nothing: short first
        chunks start the writing early, overlapping the preparing of the rest (a file of one
        full chunk would otherwise be prepared, then written, with no overlap at all)."""
        if self.rows < self.ramp_min_rows:
            return ()
        return (self.rows // 8, self.rows // 4, self.rows // 2)


DEFAULT_CHUNKING = Chunking()


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


def chunked(rows: Iterable, size: int, *, ramp: tuple[int, ...] = ()) -> Iterator[Iterator]:
    """Consecutive runs of at most `size` rows, each read lazily (a run must be consumed before
    the next is asked for): a chunk's raw rows are never all held at once. The first runs may
    be shorter: at most `ramp[i]` rows for run i."""
    iterator = iter(rows)
    sizes = chain(ramp, repeat(size))
    for first in iterator:
        yield chain((first,), islice(iterator, next(sizes) - 1))


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
    chunking: Chunking = DEFAULT_CHUNKING


class LeaseLost(Exception):
    """Another runner took the batch over; the chunk being written was rolled back."""


@dataclass
class PreparedChunk:
    """A chunk's database-free half, ready to write: its distinct leads in email key order, as
    parallel lists (cheap to pickle from the preparing process and to pick from by position).

    `rows` holds, per lead, on PostgreSQL its whole COPY line as UTF-8 bytes (the batch's
    columns appended, line break included: a chunk of new leads is written by joining them),
    on SQLite a tuple of its values (`import_sql.stage_tuple`). `domains` are the distinct
    email domains."""

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
        self.pg = is_pg()
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
                copy_line(values) if pg else stage_tuple(values),
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
                        relax_chunk_transaction()
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
            lock_lead_table()  # before any lookup
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
            incoming = {keys[i]: values_from_tuple(rows[i]) for i in keep if keys[i] in existing}
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
        now_db = now if is_pg() else connection.ops.adapt_datetimefield_value(now)
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
            merged = adapt_values(merged)
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
            ImportIssue.objects.bulk_create(
                [
                    ImportIssue(
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
    chunking = ctx.chunking
    if use_child(totals.rows_total or ctx.rows_expected, more_than=chunking.process_threshold):
        chunks = chunked(rows, chunking.rows, ramp=chunking.ramp())
        prepared_chunks = prepared_in_child(processor.prepare, chunks)
    else:
        prepared_chunks = (processor.prepare(records) for records in chunked(rows, chunking.rows))

    def passed() -> None:
        totals.rows_total = check.result().rows_total  # stored with the next counters
        pending.close()

    with closing(prepared_chunks):
        for prepared in prepared_chunks:
            totals.add(processor.run(prepared, totals))
            # With DEBUG on, Django keeps the last 9,000 queries with their parameters (a
            # chunk's lookups carry a key per row): a big import must not grow that log.
            reset_queries()
            if check is not None and check.done():
                passed()
                check = None
            if progress:
                progress(totals.rows_done, totals.rows_total)
        if check is not None:
            passed()
    return totals
