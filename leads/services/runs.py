"""Writes of the leads app. The admin, the `leads` command and the tasks all call these.

Importing a file: `lead_import()` imports it now (CLI, tests, demo); `import_batch_create()`
stores an upload as a pending ImportBatch; `lead_import_preview()` shows the mapping and the
first rows with their problems before the operator confirms. Every way in ends with
`import_batch_finish()`. Suppression is in `leads.suppression`.

Import runs (a stored batch, in the foreground or on the cluster): a runner takes the batch
with `import_batch_claim()` (one conditional UPDATE), holds an `ImportLease` that it extends
after every committed chunk while its token still holds the batch (`LeaseLost` otherwise),
and imports `import_batch_slice()` by slice from `rows_done`. `import_batch_run_now()` runs
slices to the end in this process; `import_batch_run_sliced()` is the body of the django-q2
task `leads.tasks.import_batch_run` (one time slice, then it queues the rest);
`import_batches_recover()` (every minute) and `import_batch_resume()` (by hand) restart the
ones whose runner stopped (`ImportBatch.is_resumable`).

Personal data never goes into audit rows: they name batches, counts, ids and identity hashes.
"""

from __future__ import annotations

import csv
import datetime as dt
import itertools
import logging
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterable
from contextlib import ExitStack, nullcontext
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, TextIO

from django.conf import settings
from django.db import InterfaceError, OperationalError, connection, transaction
from django.db.models import Case, F, Q, QuerySet, Value, When
from django.db.models.functions import Coalesce
from django.utils import timezone

from leads.importing import (
    FileCheck,
    ImportContext,
    ImportCounts,
    LeaseLost,
    ProgressCallback,
    RowNormaliser,
    fetch_people,
    fetch_suppressed,
    run_chunks,
)
from leads.models import (
    PROFILE_FIELDS,
    BatchState,
    CampaignLeadPolicy,
    ConsentStatus,
    CrossCampaignPolicy,
    ImportBatch,
    Lead,
    LeadStatus,
    SourceChannel,
    SuppressionEntry,
    SuppressionKind,
    identity_hash_of,
    import_lease_period,
)
from leads.normalise import InvalidValue, email_key_of, email_normalise
from leads.parsing import (
    FileProblem,
    HeaderMapping,
    SourceFile,
    inspect_file,
    iter_rows,
    map_headers,
    scan_file,
)
from leads.scoring import LeadScorer
from leads.signals import lead_erased
from ventures.models import Campaign, Venture
from ventures.services import Actor, DomainError, actor_label, audit_record

logger = logging.getLogger(__name__)

# Files bigger than this are checked in full by a second process beside the import's first
# chunks (`importing.FileCheck`); smaller ones are checked before it, which costs less than a
# fork. Meanwhile their row count is estimated from the line length of their first
# SAMPLE_BYTES (EXPECTED_ROW_BYTES a row where that cannot be read, e.g. XLSX).
CHECK_BESIDE_BYTES = 2 * 1024 * 1024
EXPECTED_ROW_BYTES = 250
SAMPLE_BYTES = 256 * 1024


def _rows_expected(info: SourceFile) -> int:
    """About how many rows the file has, before it has been read through."""
    if info.kind == "csv":
        with info.path.open("rb") as fh:
            sample = fh.read(SAMPLE_BYTES)
        lines = sample.count(b"\n")  # also right for UTF-16 but for rare characters: a guess
        if lines > 1:
            return int(info.size * lines / len(sample))
    return info.size // EXPECTED_ROW_BYTES


class AlreadyImportedError(DomainError):
    pass


# --- policy ------------------------------------------------------------------------------------


def lead_policy_of(campaign: Campaign) -> str:
    """The campaign's cross-campaign policy (SKIP_ACTIVE unless set otherwise)."""
    found = CampaignLeadPolicy.objects.filter(campaign=campaign).values_list(
        "cross_campaign", flat=True
    )
    return next(iter(found), CrossCampaignPolicy.SKIP_ACTIVE)


def campaign_lead_policy_set(*, campaign: Campaign, cross_campaign: str, actor: Actor) -> None:
    if cross_campaign not in CrossCampaignPolicy.values:
        raise DomainError(f"Unknown cross-campaign policy {cross_campaign!r}.")
    with transaction.atomic():
        before = lead_policy_of(campaign)
        _policy, _ = CampaignLeadPolicy.objects.update_or_create(
            campaign=campaign, defaults={"cross_campaign": cross_campaign}
        )
        if before != cross_campaign:
            audit_record(
                actor=actor,
                action="leads.policy",
                entity=campaign,
                before={"cross_campaign": before},
                after={"cross_campaign": cross_campaign},
            )


# --- import ------------------------------------------------------------------------------------


@dataclass
class ImportOutcome:
    batch_id: int | None
    dry_run: bool
    file_name: str
    sha256: str
    encoding: str
    delimiter: str
    mapping: dict[str, str]
    counts: dict[str, int]
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "batch": self.batch_id,
            "dry_run": self.dry_run,
            "file": self.file_name,
            "sha256": self.sha256,
            "encoding": self.encoding,
            "delimiter": self.delimiter,
            "mapping": self.mapping,
            "counts": self.counts,
            "seconds": round(self.seconds, 3),
        }


def _refuse_reimport(campaign: Campaign, sha256: str, *, force: bool, exclude: int | None = None):
    if force:
        return
    earlier = (
        ImportBatch.objects.filter(campaign=campaign, file_sha256=sha256)
        .exclude(state=BatchState.FAILED)
        .exclude(pk=exclude)
        .order_by("created_at")
        .first()
    )
    if earlier:
        raise AlreadyImportedError(
            f"This file was already imported into campaign '{campaign.slug}' (import "
            f"#{earlier.pk}, {earlier.created_at:%Y-%m-%d %H:%M} UTC). Use force to import it again."
        )


def _refuse_closed_campaign(campaign: Campaign) -> None:
    """Every file import starts here: a stopped or completed campaign takes no leads."""
    if not campaign.accepts_leads():
        raise DomainError(
            f"Campaign '{campaign.slug}' is {campaign.status}: it takes no new leads. "
            "Import into a draft, running or paused campaign."
        )


def file_rows(info: SourceFile) -> Iterable[tuple[int, list[str]]]:
    rows = iter_rows(info)
    next(rows)  # the header
    return rows


def _import_rows(
    *,
    batch: ImportBatch,
    rows: Iterable,
    mapping,
    progress: ProgressCallback | None,
    token: str | None = None,
    check: FileCheck | None = None,
    pending: ExitStack | None = None,
    rows_expected: int = 0,
) -> ImportCounts:
    """Import `rows` into the batch. The running counters start from the batch's committed
    ones: a resumed import passes only the rows after `rows_done` and carries on counting."""
    campaign = batch.campaign
    scorer = LeadScorer.for_venture(campaign.venture)
    ctx = ImportContext(
        batch=batch,
        normaliser=RowNormaliser(mapping=mapping, scorer=scorer),
        policy=lead_policy_of(campaign),
        source_list=batch.source or batch.file_name,
        channel=batch.channel,
        counts=ImportCounts(**batch.counts()),
        lease_token=token,
        lease_period=import_lease_period(),
        rows_expected=rows_expected,
    )
    return run_chunks(ctx=ctx, rows=rows, progress=progress, check=check, pending=pending)


def lead_import(
    *,
    campaign: Campaign,
    path: Path | str,
    actor: Actor,
    file_name: str = "",
    source: str = "",
    uploaded_by=None,
    dry_run: bool = False,
    force: bool = False,
    progress: ProgressCallback | None = None,
) -> ImportOutcome:
    """Import a CSV/XLSX file into a campaign now.

    The whole file is checked first; a file-level problem raises FileProblem and writes
    nothing. A dry run does all the work and rolls it back (counts are real, nothing stays).
    """
    _refuse_closed_campaign(campaign)
    started = timezone.now()
    info = inspect_file(path, name=file_name)
    if dry_run or info.size <= CHECK_BESIDE_BYTES or not hasattr(os, "fork"):
        scan = scan_file(info)
        mapping, rows_total, check = scan.mapping, scan.rows_total, None
    else:
        # A big file is checked in full by a second process while the first chunks are
        # written in a transaction that commits only once the check has passed.
        mapping, rows_total = _header_mapping(info), 0
        check = FileCheck(info)
    with check or nullcontext():
        _refuse_reimport(campaign, info.sha256, force=force)
        fields = {
            "campaign": campaign,
            "channel": SourceChannel.IMPORT,
            "source": source[:200],
            "file_name": info.name[:255],
            "file_sha256": info.sha256,
            "file_size": info.size,
            "uploaded_by": uploaded_by,
            "actor": actor_label(actor)[:200],
            "forced": force,
            "mapping": mapping.as_display(),
            "state": BatchState.RUNNING,
            "started_at": started,
            "rows_total": rows_total,
        }
        if dry_run:
            with transaction.atomic():
                batch = ImportBatch.objects.create(**fields)
                counts = _import_rows(
                    batch=batch, rows=file_rows(info), mapping=mapping, progress=progress
                )
                transaction.set_rollback(True)
            return _outcome(None, info, mapping, counts, started, dry_run=True)
        # Leased like a background import, so that if this process dies the batch shows as
        # interrupted and the recovery closes it with a message (its file is not kept to resume).
        token = uuid.uuid4().hex
        with ExitStack() as pending:
            if check is not None:
                pending.enter_context(transaction.atomic())
            batch = ImportBatch.objects.create(
                **fields,
                lease_token=token,
                lease_until=started + import_lease_period(),
                heartbeat_at=started,
                slices=1,
            )
            try:
                counts = _import_and_close(
                    batch,
                    file_rows(info),
                    mapping,
                    ImportLease(batch.pk, token, progress),
                    token,
                    check=check,
                    pending=pending if check is not None else None,
                    rows_expected=_rows_expected(info),
                )
            except LeaseLost:
                raise DomainError(
                    f"Import #{batch.pk} stopped: it reported no progress for "
                    f"{settings.AICMO_IMPORT_LEASE_SECONDS} s and counted as interrupted."
                ) from None
    return _outcome(batch.pk, info, mapping, counts, started, dry_run=False)


def _import_and_close(
    batch: ImportBatch,
    rows: Iterable,
    mapping,
    progress,
    token: str,
    *,
    resumable: bool = False,
    check: FileCheck | None = None,
    pending: ExitStack | None = None,
    rows_expected: int = 0,
) -> ImportCounts:
    """Run the rows and close the batch (DONE with its audit row, or FAILED with why). When
    `resumable`, losing the database connection leaves it RUNNING, to be resumed."""
    try:
        counts = _import_rows(
            batch=batch,
            rows=rows,
            mapping=mapping,
            progress=progress,
            token=token,
            check=check,
            pending=pending,
            rows_expected=rows_expected,
        )
    except (LeaseLost, _SliceSpent):
        raise
    except Exception as exc:
        if resumable and isinstance(exc, OperationalError | InterfaceError):
            raise  # the database went away: the chunk rolled back; resumed from rows_done
        message = str(exc) if isinstance(exc, DomainError) else f"{type(exc).__name__}: {exc}"
        _close_failed(batch.pk, token, message)
        logger.exception("Import batch %s failed", batch.pk)
        raise
    with transaction.atomic():
        import_batch_finish(batch=batch, counts=counts, actor=batch.actor or "system", token=token)
    return counts


def import_batch_finish(
    *, batch: ImportBatch, counts: ImportCounts, actor: Actor, token: str | None = None
) -> None:
    """Close a batch DONE with its final counts and audit it (`leads.import`), in the caller's
    transaction: every way in (files, the capture form, the API) ends here. With a lease
    `token`, only while that token still holds the batch; LeaseLost otherwise."""
    closed = _held(batch.pk, token).update(
        state=BatchState.DONE,
        finished_at=timezone.now(),
        lease_token="",
        lease_until=None,
        **counts.as_dict(),
    )
    if not closed:
        raise LeaseLost
    batch.refresh_from_db()
    audit_record(
        actor=actor,
        action="leads.import",
        entity=batch,
        after={
            "channel": batch.channel,
            "file_sha256": batch.file_sha256,
            "forced": batch.forced,
            **counts.as_dict(),
        },
    )


def _outcome(batch_id, info, mapping, counts, started, *, dry_run) -> ImportOutcome:
    return ImportOutcome(
        batch_id=batch_id,
        dry_run=dry_run,
        file_name=info.name,
        sha256=info.sha256,
        encoding=info.encoding if info.kind == "csv" else "xlsx",
        delimiter={",": "comma", ";": "semicolon", "\t": "tab"}.get(info.delimiter, "?"),
        mapping=mapping.as_display(),
        counts=counts.as_dict(),
        seconds=(timezone.now() - started).total_seconds(),
    )


def _upload_dir() -> Path:
    path = Path(settings.AICMO_ARTIFACT_DIR) / "lead-imports"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name).name)[-100:] or "upload"


def import_batch_create(
    *,
    campaign: Campaign,
    source_path: Path | str,
    file_name: str,
    actor: Actor,
    source: str = "",
    uploaded_by=None,
    force: bool = False,
    background: bool = True,
) -> ImportBatch:
    """Store an upload, check the whole file, and create a pending batch for it.

    `source_path` is copied (the caller may delete it). With `background`, the import runs on
    the django-q2 cluster once this transaction commits; otherwise it runs before returning.
    A file-level problem raises FileProblem and leaves nothing behind.
    """
    _refuse_closed_campaign(campaign)
    stored = _upload_dir() / f"{uuid.uuid4().hex}-{_safe_name(file_name)}"
    shutil.copyfile(source_path, stored)
    try:
        info = inspect_file(stored, name=file_name)
        scan = scan_file(info)
        _refuse_reimport(campaign, info.sha256, force=force)
    except Exception:
        stored.unlink(missing_ok=True)
        raise
    batch = ImportBatch.objects.create(
        campaign=campaign,
        source=source[:200],
        file_name=info.name[:255],
        file_sha256=info.sha256,
        file_size=info.size,
        stored_path=str(stored),
        uploaded_by=uploaded_by,
        actor=actor_label(actor)[:200],
        forced=force,
        mapping=scan.mapping.as_display(),
        rows_total=scan.rows_total,
    )
    if background:
        transaction.on_commit(lambda: _queue_run(batch.pk))
    else:
        import_batch_run_now(batch_id=batch.pk)
        batch.refresh_from_db()
    return batch


# --- background imports: claimed, leased, time-sliced, resumable --------------------------------
#
# A batch is run by whoever claims it with one conditional UPDATE: a PENDING batch, a RUNNING
# one waiting for its next time slice (lease token empty), or a RUNNING one whose lease lapsed
# (its runner stopped: killed, out of memory, machine restarted). The claim sets a fresh token;
# the runner extends its lease after every committed chunk, only while the token is still its
# own, and stops if it is not. Skipped rows are filtered out before run_chunks sees them:
# each chunk commits with the batch's counters, so `rows_done` is exactly the number of rows
# whose leads, row issues and counts are in the database.

PAUSED = "paused"
MAX_RESUMES = 5  # an import whose worker dies at the same place every time stops being resumed
DONE = "done"
FAILED = "failed"
LOST = "lost"


class _SliceSpent(Exception):
    """Raised by the progress callback after a committed chunk once the slice's time is up."""


def _held(batch_id: int, token: str | None) -> QuerySet[ImportBatch]:
    """The batch, if `token` still holds it (None: no lease, e.g. a dry run)."""
    qs = ImportBatch.objects.filter(pk=batch_id)
    return qs if token is None else qs.filter(state=BatchState.RUNNING, lease_token=token)


class ImportLease:
    """The progress callback of a leased import: after each committed chunk, extend the lease
    (or stop if it is gone), report progress, and end the time slice once `budget` is spent."""

    def __init__(
        self,
        batch_id: int,
        token: str,
        progress: ProgressCallback | None = None,
        budget: float | None = None,
        started: float | None = None,
    ) -> None:
        self.batch_id = batch_id
        self.token = token
        self.progress = progress
        self.budget = budget
        self.started = time.monotonic() if started is None else started

    def __call__(self, done: int, total: int) -> None:
        now = timezone.now()
        kept = _held(self.batch_id, self.token).update(
            heartbeat_at=now, lease_until=now + import_lease_period()
        )
        if not kept:
            raise LeaseLost
        if self.progress:
            self.progress(done, total)
        if (
            self.budget is not None
            and done < total
            and time.monotonic() - self.started >= self.budget
        ):
            raise _SliceSpent


def _close_failed(batch_id: int, token: str | None, message: str) -> int:
    return _held(batch_id, token).update(
        state=BatchState.FAILED,
        error=message[:2000],
        finished_at=timezone.now(),
        lease_token="",
        lease_until=None,
    )


def import_batch_claim(batch_id: int) -> tuple[ImportBatch, str] | None:
    """Take the batch if nobody runs it: one conditional UPDATE, so of two claimers (a task
    delivered twice, the recovery schedule and an operator) exactly one wins."""
    now = timezone.now()
    token = uuid.uuid4().hex
    claimable = (
        Q(state=BatchState.PENDING)
        | Q(state=BatchState.RUNNING, lease_token="", lease_until__isnull=False)
        | Q(state=BatchState.RUNNING, lease_until__lt=now)
    )
    interrupted = Q(state=BatchState.RUNNING) & ~Q(lease_token="")
    claimed = ImportBatch.objects.filter(claimable, pk=batch_id).update(
        state=BatchState.RUNNING,
        lease_token=token,
        lease_until=now + import_lease_period(),
        heartbeat_at=now,
        started_at=Coalesce(F("started_at"), Value(now)),
        slices=F("slices") + 1,
        resumes=F("resumes") + Case(When(interrupted, then=Value(1)), default=Value(0)),
    )
    if not claimed:
        return None
    return ImportBatch.objects.select_related("campaign__venture").get(pk=batch_id), token


def _upload_gone_message(batch: ImportBatch) -> str:
    where = f"row {batch.rows_done} of {batch.rows_total}"
    if not batch.stored_path:
        cause = "it was started from the command line, and such files are not kept"
    else:
        cause = f"its stored upload {batch.stored_path} is gone"
    return (
        f"The import stopped at {where} and cannot be resumed: {cause}. The rows imported so "
        "far stay; import the file again (with force) to bring in the rest."
    )


def _header_mapping(info: SourceFile) -> HeaderMapping:
    """The mapping of a file already scanned in full by the batch's first run."""
    header = next(iter_rows(info), None)
    if header is None:
        raise FileProblem("The file is empty.")
    return map_headers(header[1])


def import_batch_slice(
    batch_id: int, *, budget: float | None, progress: ProgressCallback | None
) -> str | None:
    """Claim the batch and import from its first unprocessed row until the end or until
    `budget` seconds are spent. None if it could not be claimed, else DONE, FAILED, PAUSED
    (more rows remain; the lease is handed on) or LOST (another runner took it over)."""
    started = time.monotonic()  # the budget covers checking and skipping rows too
    claim = import_batch_claim(batch_id)
    if claim is None:
        return None
    batch, token = claim
    logger.info("Import batch %s: run %s starts at row %s", batch.pk, batch.slices, batch.rows_done)
    if batch.resumes > MAX_RESUMES:
        _close_failed(
            batch.pk,
            token,
            f"The import was interrupted {batch.resumes} times, the last time at row "
            f"{batch.rows_done} of {batch.rows_total}, and is not resumed again: something "
            "stops its worker there each time (see the worker's log; memory?). The rows "
            "imported so far stay.",
        )
        if batch.stored_path:
            Path(batch.stored_path).unlink(missing_ok=True)
        return FAILED
    stored = Path(batch.stored_path) if batch.stored_path else None
    if stored is None or not stored.is_file():
        _close_failed(batch.pk, token, _upload_gone_message(batch))
        return FAILED
    if not batch.campaign.accepts_leads():
        _close_failed(
            batch.pk,
            token,
            f"Campaign '{batch.campaign.slug}' was {batch.campaign.status} before the import "
            f"finished: it takes no new leads. The import stopped at row {batch.rows_done} of "
            f"{batch.rows_total}; the rows imported before stay.",
        )
        stored.unlink(missing_ok=True)
        return FAILED
    keep_file = False
    try:
        info = inspect_file(stored, name=batch.file_name)
        if info.sha256 != batch.file_sha256:
            raise FileProblem(
                f"The stored upload changed since it was checked (its SHA-256 is no longer "
                f"{batch.file_sha256[:12]}…); the import stopped at row {batch.rows_done} of "
                f"{batch.rows_total}. Import the file again (with force) to bring in the rest."
            )
        if batch.rows_done == 0:
            # Nothing written yet. The upload was checked in full when it was stored (that is
            # where rows_total comes from) and its SHA-256 is unchanged: only a batch without
            # that check is read twice.
            if batch.rows_total == 0:
                scan_file(info)
            _refuse_reimport(batch.campaign, info.sha256, force=batch.forced, exclude=batch.pk)
        mapping = _header_mapping(info)
        rows = itertools.islice(file_rows(info), batch.rows_done, None)
        lease = ImportLease(batch.pk, token, progress, budget, started)
        _import_and_close(batch, rows, mapping, lease, token, resumable=True)
        return DONE
    except _SliceSpent:
        # Hand over: the token is cleared (the next claim is not a resume) and the lease is
        # kept for the queued continuation, so the recovery schedule leaves it alone.
        keep_file = True
        _held(batch.pk, token).update(
            lease_token="", lease_until=timezone.now() + import_lease_period()
        )
        return PAUSED
    except LeaseLost:
        keep_file = True
        logger.warning("Import batch %s was taken over by another runner; stopping", batch.pk)
        return LOST
    except (OperationalError, InterfaceError):
        # The database went away (restart, network): like a worker that died, the lease lapses
        # and the import is resumed. Best effort: the database may still be unreachable.
        keep_file = True
        _lapse_now(batch.pk, token)
        logger.exception("Import batch %s interrupted by a database error", batch.pk)
        raise
    except DomainError as exc:
        _close_failed(batch.pk, token, str(exc))
        return FAILED
    except Exception as exc:
        # Closed by _import_and_close if it got that far (then this is a no-op); the task fails loudly.
        if _close_failed(batch.pk, token, f"{type(exc).__name__}: {exc}"):
            logger.exception("Import batch %s failed", batch.pk)
        raise
    except BaseException:
        # SystemExit (django-q's task timeout) or KeyboardInterrupt: the chunk in flight rolled
        # back. Let the lease lapse now so the recovery resumes the import without waiting.
        keep_file = True
        _lapse_now(batch.pk, token)
        raise
    finally:
        if not keep_file:
            stored.unlink(missing_ok=True)


def _lapse_now(batch_id: int, token: str) -> None:
    """Let a stopped runner's lease lapse at once, so the import is resumed without waiting."""
    try:
        _held(batch_id, token).update(lease_until=timezone.now())
    except Exception:  # the lease then lapses by itself
        logger.warning("Could not release the lease of import batch %s", batch_id)


def _tasks_run_inline() -> bool:
    return bool(settings.Q_CLUSTER.get("sync"))


def _queue_run(batch_id: int) -> None:
    from django_q.tasks import async_task

    async_task("leads.tasks.import_batch_run", batch_id)


def import_batch_run_now(*, batch_id: int, progress: ProgressCallback | None = None) -> bool:
    """Run a batch to its end in this process, if it can be claimed: pending, waiting for its
    next slice, or interrupted (its lease lapsed). A batch that another runner holds is left
    alone (a task may be delivered more than once). Returns whether this call ran it."""
    return import_batch_slice(batch_id, budget=None, progress=progress) is not None


def import_batch_run_sliced(*, batch_id: int) -> bool:
    """The background task: run one time slice of AICMO_IMPORT_SLICE_SECONDS, then queue a
    task for the rest, so that no task comes near the cluster's timeout. With AICMO_Q_SYNC a
    queued task would run nested inside this one, so the slices run one after another here.
    Returns whether this call ran anything."""
    ran = False
    while True:
        outcome = import_batch_slice(
            batch_id, budget=settings.AICMO_IMPORT_SLICE_SECONDS, progress=None
        )
        if outcome is None:
            return ran
        ran = True
        if outcome != PAUSED:
            return True
        if not _tasks_run_inline():
            _queue_run(batch_id)
            return True


def import_batches_recover(*, now: dt.datetime | None = None) -> list[int]:
    """Queue a run of every background import whose runner stopped: RUNNING with a lapsed
    lease, or PENDING for longer than a lease (its task was lost). Run every minute by the
    django-q2 schedule; returns the ids queued."""
    stale = ImportBatch.objects.resumable(now)
    ids = list(stale.order_by("pk").values_list("pk", flat=True))
    for batch_id in ids:
        logger.warning("Import batch %s stopped reporting progress; queued to resume", batch_id)
        _queue_run(batch_id)
    return ids


def import_batch_resume(
    *,
    batch: ImportBatch,
    actor: Actor,
    reason: str = "",
    background: bool = True,
    progress: ProgressCallback | None = None,
) -> bool:
    """Resume an import by hand (admin button, `leads resume`): queued on the cluster, or run
    now in this process. Refused (DomainError) when it finished, failed, or its runner is
    still reporting progress. Audited. Returns whether it was queued or run here."""
    batch.refresh_from_db()
    now = timezone.now()
    if batch.state == BatchState.DONE:
        raise DomainError(f"Import #{batch.pk} has finished; there is nothing to resume.")
    if batch.state == BatchState.FAILED:
        raise DomainError(
            f"Import #{batch.pk} failed and cannot be resumed ({batch.error or 'no reason'}). "
            "Import the file again instead."
        )
    if batch.is_delivery:
        raise DomainError(f"Import #{batch.pk} is a {batch.get_channel_display()} delivery.")
    if batch.state == BatchState.RUNNING and batch.lease_token and not batch.lease_lapsed(now):
        ago = int((now - (batch.heartbeat_at or now)).total_seconds())
        raise DomainError(
            f"Import #{batch.pk} is still running (row {batch.rows_done} of {batch.rows_total}, "
            f"last progress {ago} s ago). It counts as interrupted, and can be resumed, if it "
            f"reports no progress until {batch.lease_until:%Y-%m-%d %H:%M:%S} UTC."
        )
    audit_record(
        actor=actor,
        action="leads.import_resume",
        entity=batch,
        after={
            "rows_done": batch.rows_done,
            "rows_total": batch.rows_total,
            "state": batch.state,
            "resumes": batch.resumes,
            "background": background,
        },
        reason=reason,
    )
    if background:
        transaction.on_commit(lambda: _queue_run(batch.pk))
        return True
    return import_batch_run_now(batch_id=batch.pk, progress=progress)


# --- preview -----------------------------------------------------------------------------------


@dataclass
class PreviewRow:
    row_number: int
    values: dict[str, Any]
    problems: list[str]
    outcome: str


@dataclass
class ImportPreview:
    file_name: str
    sha256: str
    kind: str
    encoding: str
    delimiter: str
    rows_total: int
    mapping: dict[str, str]
    already_imported: str = ""
    rows: list[PreviewRow] = field(default_factory=list)


def lead_import_preview(
    *, campaign: Campaign, path: Path | str, file_name: str = "", rows: int = 10
) -> ImportPreview:
    """What an import of this file would do: the mapping used and the first rows with their
    problems and outcome. Raises FileProblem for a file that cannot be imported, and
    DomainError for a campaign that takes no leads."""
    _refuse_closed_campaign(campaign)
    info = inspect_file(path, name=file_name)
    scan = scan_file(info)
    preview = ImportPreview(
        file_name=info.name,
        sha256=info.sha256,
        kind=info.kind,
        encoding=info.encoding if info.kind == "csv" else "xlsx",
        delimiter={",": "comma", ";": "semicolon", "\t": "tab"}.get(info.delimiter, "?"),
        rows_total=scan.rows_total,
        mapping=scan.mapping.as_display(),
    )
    try:
        _refuse_reimport(campaign, info.sha256, force=False)
    except AlreadyImportedError as exc:
        preview.already_imported = str(exc)
    normalise = RowNormaliser(mapping=scan.mapping, scorer=LeadScorer.for_venture(campaign.venture))
    sample = iter_rows(info)
    next(sample)
    seen: dict[str, int] = {}
    results = []
    for number, row in sample:
        if len(results) >= rows:
            break
        results.append((number, normalise(number, row)))
    good = [r for _, r in results if isinstance(r, dict)]
    hashes = [r["identity_hash"] for r in good]
    existing, elsewhere = fetch_people(campaign.venture_id, campaign.pk, hashes)
    hit_hashes, hit_domains = fetch_suppressed(
        campaign.venture_id, hashes, [r["email_key"].rpartition("@")[2] for r in good]
    )
    for number, result in results:
        if isinstance(result, list):
            preview.rows.append(
                PreviewRow(number, {}, [f"{i.column}: {i.reason}" for i in result], "invalid")
            )
            continue
        key = result["email_key"]
        if key in seen:
            outcome = f"duplicate of row {seen[key]}"
        elif result["identity_hash"] in hit_hashes or key.rpartition("@")[2] in hit_domains:
            outcome = "suppressed"
        elif key in existing:
            outcome = "already in campaign (blanks filled)"
        elif result["identity_hash"] in elsewhere:
            outcome = "active in another campaign"
        else:
            outcome = "new"
        seen.setdefault(key, number)
        shown = {k: v for k, v in result.items() if k not in ("identity_hash", "source_row")}
        preview.rows.append(PreviewRow(number, shown, [], outcome))
    return preview


# --- erasure -----------------------------------------------------------------------------------

# Every field of a lead that can identify or describe the person. Erasure blanks them all.
PERSONAL_FIELDS: dict[str, Any] = {
    "email": "",
    "email_key": "",
    "identity_hash": "",
    "first_name": "",
    "last_name": "",
    "title": "",
    "company": "",
    "company_domain": "",
    "website": "",
    "phone": "",
    "linkedin_url": "",
    "city": "",
    "state": "",
    "country": "",
    "timezone": "",
    "industry": "",
    "company_size": None,
    "value_estimate": None,
    "custom_fields": {},
    "consent_at": None,
    "consent_source": "",
    "utm_source": "",
    "utm_medium": "",
    "utm_campaign": "",
    "utm_content": "",
    "score_explanation": "",
    "source_row": None,
}


@dataclass
class ErasureResult:
    identity_hash: str
    lead_ids: list[int]


def _same_identity(identity: str) -> Q:
    """Leads with this identity hash in any venture: one probe of the identity index (its
    field's lookup adds the index's key)."""
    return Q(identity_hash=identity)


def lead_erase(*, email: str, actor: Actor, reason: str = "") -> ErasureResult:
    """GDPR erasure of a person, everywhere in every venture.

    Every lead with this address is blanked (status ERASED, consent DNC) and a global
    identity-hash suppression entry is kept so the person is never imported or contacted
    again. `leads.signals.lead_erased` is sent inside the transaction with the lead ids and the
    identity hash: receivers in later apps erase their own copies, and if one fails the whole
    erasure rolls back (nothing is half-erased).
    """
    try:
        key = email_key_of(email_normalise(email))
    except InvalidValue:
        key = email.strip().lower()
    if not key or "@" not in key:
        raise DomainError("Give the email address of the person to erase.")
    identity = identity_hash_of(email_key=key)
    with transaction.atomic():
        if connection.vendor == "postgresql":
            # Waits for the import chunks being written and holds new ones back until this
            # commits (they take ROW EXCLUSIVE first thing): a chunk never looks the person up
            # before the erasure and writes them back after it. Readers are not blocked.
            with connection.cursor() as cur:
                cur.execute(f"LOCK TABLE {Lead._meta.db_table} IN SHARE ROW EXCLUSIVE MODE")
        leads = Lead.objects.select_for_update().filter(Q(email_key=key) | _same_identity(identity))
        lead_ids = sorted(leads.values_list("pk", flat=True))
        Lead.objects.filter(pk__in=lead_ids).update(
            **PERSONAL_FIELDS,
            status=LeadStatus.ERASED,
            consent_status=ConsentStatus.DNC,
            updated_at=timezone.now(),
        )
        SuppressionEntry.objects.filter(kind=SuppressionKind.EMAIL, value=key).delete()
        entry, _ = SuppressionEntry.objects.get_or_create(
            kind=SuppressionKind.IDENTITY,
            value=identity,
            venture=None,
            defaults={"identity_hash": identity, "reason": "GDPR erasure", "source": "erasure"},
        )
        audit_record(
            actor=actor,
            action="leads.erase",
            entity=entry,
            after={"identity_hash": identity, "lead_ids": lead_ids},
            reason=reason,
        )
        lead_erased.send(sender=Lead, lead_ids=lead_ids, identity_hash=identity)
    return ErasureResult(identity_hash=identity, lead_ids=lead_ids)


# --- exports -----------------------------------------------------------------------------------

EXPORT_COLUMNS = (
    "id",
    "email",
    *PROFILE_FIELDS,
    "status",
    "consent_status",
    "consent_at",
    "consent_source",
    "value_estimate",
    "fit_score",
    "grade",
    "score_explanation",
    "source_channel",
    "source_list",
    "source_batch_id",
    "source_row",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "utm_content",
    "first_touch_at",
    "last_touch_at",
)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value: Any) -> str:
    """A cell value a spreadsheet will show as text: one that would start a formula (=, +, -,
    @, tab, CR) gets a leading apostrophe (the OWASP CSV-injection advice)."""
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.isoformat()
    text = str(value)
    if text.startswith(_FORMULA_START):
        return "'" + text
    return text


def leads_export(*, campaign: Campaign, out: TextIO, leads: QuerySet[Lead] | None = None) -> int:
    """Write the campaign's leads as CSV (custom fields as extra columns); returns the count.
    Streams in chunks; every cell is formula-escaped."""
    qs = (leads if leads is not None else Lead.objects.filter(campaign=campaign)).order_by("pk")
    custom_names: list[str] = []
    seen: set[str] = set()
    for custom in qs.values_list("custom_fields", flat=True).iterator(chunk_size=5000):
        for name in custom or {}:
            if name not in seen:
                seen.add(name)
                custom_names.append(name)
    writer = csv.writer(out)
    writer.writerow([spreadsheet_safe(c) for c in (*EXPORT_COLUMNS, *custom_names)])
    count = 0
    for row in qs.values_list(*EXPORT_COLUMNS, "custom_fields").iterator(chunk_size=5000):
        custom = row[-1] or {}
        writer.writerow(
            [spreadsheet_safe(v) for v in row[:-1]]
            + [spreadsheet_safe(custom.get(n, "")) for n in custom_names]
        )
        count += 1
    return count


def _jsonable(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


def lead_data_export(*, lead: Lead, actor: Actor) -> dict[str, Any]:
    """Everything held about the person behind `lead` (all their leads across campaigns and
    ventures, by identity hash), for a data access request. Audited by lead id only."""
    same = Lead.objects.filter(pk=lead.pk)
    if lead.identity_hash:
        same = Lead.objects.filter(Q(pk=lead.pk) | _same_identity(lead.identity_hash))
    records = []
    for other in same.select_related("campaign", "venture", "segment", "source_batch").order_by(
        "pk"
    ):
        data = {f.attname: _jsonable(getattr(other, f.attname)) for f in Lead._meta.concrete_fields}
        data.pop("last_batch_id", None)
        data["campaign"] = other.campaign.slug
        data["venture"] = other.venture.slug
        data["segment"] = other.segment.name if other.segment else None
        data["source_file"] = other.source_batch.file_name if other.source_batch else None
        records.append(data)
    suppressed = SuppressionEntry.objects.filter(
        identity_hash=lead.identity_hash or "-"
    ).values_list("kind", "reason", "created_at")
    audit_record(
        actor=actor,
        action="leads.data_export",
        entity=lead,
        after={"lead_ids": [r["id"] for r in records]},
    )
    return {
        "generated_at": timezone.now().isoformat(),
        "identity_hash": lead.identity_hash,
        "leads": records,
        "suppression": [{"kind": k, "reason": r, "since": c.isoformat()} for k, r, c in suppressed],
    }


# --- scoring -----------------------------------------------------------------------------------


def lead_rescore(*, leads: QuerySet[Lead], actor: Actor) -> int:
    """Re-match segments and re-score the given leads (one venture at a time, in chunks) with
    the venture's current rules; returns how many changed."""
    changed = 0
    venture_ids = list(leads.order_by().values_list("venture_id", flat=True).distinct())
    for venture in Venture.objects.filter(pk__in=venture_ids):
        scorer = LeadScorer.for_venture(venture)
        batch: list[Lead] = []
        fields = ("segment_id", "fit_score", "grade", "score_explanation")
        for lead in (
            leads.filter(venture=venture)
            .exclude(status=LeadStatus.ERASED)
            .only("title", "industry", "country", "company_size", "custom_fields", *fields)
            .iterator(chunk_size=5000)
        ):
            score = scorer.score(
                title=lead.title,
                industry=lead.industry,
                country=lead.country,
                company_size=lead.company_size,
                signals=scorer.signals_present(lead.custom_fields or {}),
            )
            new = (score.segment_id, score.fit_score, score.grade, score.explanation)
            if new != tuple(getattr(lead, f) for f in fields):
                lead.segment_id, lead.fit_score, lead.grade, lead.score_explanation = new
                batch.append(lead)
            if len(batch) >= 2000:
                changed += _save_scores(batch, fields)
                batch = []
        changed += _save_scores(batch, fields)
        audit_record(
            actor=actor, action="leads.rescore", entity=venture, after={"changed": changed}
        )
    return changed


def _save_scores(batch: list[Lead], fields: tuple[str, ...]) -> int:
    if batch:
        Lead.objects.bulk_update(batch, fields, batch_size=1000)
    return len(batch)


# --- demo --------------------------------------------------------------------------------------


def leads_demo_import(*, campaign: Campaign, actor: Actor = "demo") -> ImportOutcome:
    """Import the Apollo sample (../shared/data) into the demo campaign; without the shared
    folder, a generated file of 60 leads in the same layout. Idempotent: a second call
    re-imports nothing new (the file hash is known, so it is forced and only fills blanks)."""
    sample = Path(settings.BASE_DIR).parent / "shared" / "data" / "apollo_export_sample.csv"
    if not sample.is_file():
        from leads.samples import write_apollo_file

        sample = write_apollo_file(_upload_dir() / "demo_apollo_export.csv", 60)
    return lead_import(
        campaign=campaign,
        path=sample,
        actor=actor,
        source="Demo Apollo export",
        force=True,
    )


def lead_counts(campaign: Campaign) -> dict[str, int]:
    """Small summary used by commands and the demo."""
    qs = Lead.objects.filter(campaign=campaign)
    return {
        "total": qs.count(),
        "active": qs.filter(status=LeadStatus.ACTIVE).count(),
        "dnc": qs.filter(consent_status=ConsentStatus.DNC).count(),
    }
