"""Import runs: how a stored batch is run, in the foreground or on the django-q2 cluster, and how
it survives the process that runs it. Every leased import (a background batch, and a `leads
import` from the command line) runs its rows through `_import_and_close()` here, and every way
in ends with `import_batch_finish()`. The ways in themselves are in `leads.services.imports`,
which builds on this module (never the other way round).

Why time slices. django-q2 (1.11) stops a task at the cluster `timeout` (240 s: a SIGALRM
raises `TimeoutException`, a `SystemExit`, inside the task, then the guard terminates the
worker; `django_q/worker.py`, `timeout.py`, `cluster.py`), and its ORM broker hands a task out
again once `retry` (360 s) passes without an acknowledgement (`brokers/orm.py`: `dequeue` sets
`lock = now + retry`; Koed00/django-q #307, #344), so a task that ran past `retry` would be
running twice. A per-task `timeout` could lift the first limit but not the second, and raising
`retry` as well would slow every retry and still leave a ceiling. So
`import_batch_run_sliced()`, the body of the task `leads.tasks.import_batch_run`, imports for
at most AICMO_IMPORT_SLICE_SECONDS (at most half the timeout): after each committed chunk
`ImportLease` checks the slice's budget and, once it is spent and rows remain, raises
`_SliceSpent`; the slice hands the batch over (token cleared, lease kept so recovery leaves it
alone) and queues a task for the rest with `import_batch_queue()`. With AICMO_Q_SYNC a queued
task would run nested inside this one, so the slices run one after another in the first task
instead.

Where a slice starts. Each chunk commits together with the batch's counters, so `rows_done` is
exactly the number of file rows whose leads, row issues and counts are stored. A slice skips
that many rows with `islice` before `run_chunks` sees them and starts its counters from the
stored ones (a lead whose `last_batch_id` is this batch still counts as a duplicate within the
file): the chunk boundaries, the final counters, leads and row issues are those of an
uninterrupted import (leads/tests/test_import_resume_processes.py checks that after a SIGKILL
on PostgreSQL).

Leases. `import_batch_claim()` takes a batch with one conditional UPDATE that matches a PENDING
batch, a RUNNING one waiting for its next slice (empty token, lease set), or a RUNNING one
whose lease lapsed; it sets a fresh `lease_token` and `lease_until`, so of two claimers (a task
delivered twice, the recovery schedule, an operator) exactly one wins. A claim of a batch that
had a token counts as a resume; after MAX_RESUMES the batch is closed FAILED instead of being
retried at the row that keeps killing its worker. The lease (AICMO_IMPORT_LEASE_SECONDS, the
cluster timeout + 60 s) outlasts the timeout, so a runner that stopped reporting progress has
been killed by django-q2 before anyone takes its batch over. A lapsed lease means the runner
died (SIGKILL, out of memory, restart); on `SystemExit`, `KeyboardInterrupt` or a lost database
connection the runner lets its lease lapse at once (`_lapse_now`).

Fencing. `ImportLease` extends the lease after each chunk only while the runner's token still
holds the batch (`_held`), and `importing.run_chunks` stores each chunk's counters with an
UPDATE that matches only that token: if it matches nothing the chunk's transaction rolls back
with `LeaseLost`. A runner that stalled past its lease (a `leads resume` in a suspended
terminal) therefore cannot commit another chunk after a new runner took over.

Recovery. `import_batches_recover()` (the schedule `aicmo.lead-import-recovery`, every minute)
queues every batch `ImportBatch.objects.resumable()` names: RUNNING with a lapsed lease, or
PENDING for longer than a lease (its task was lost). `import_batch_resume()` does it by hand
(`leads resume`, the admin's "Resume import"): refused for a finished, failed or form/API batch
and while its runner still reports progress, and audited as `leads.import_resume`. The stored
upload is deleted once the batch is FAILED, or DONE without rejected rows (with them it is kept
KEPT_UPLOAD_DAYS for the rejected-rows download, `import_uploads_forget`, and an erasure deletes
every kept one at once); if it is gone or changed (SHA-256)
when a run claims the batch, or the campaign no longer takes leads, the batch is closed FAILED
with a message naming the cause and the row it stopped at. A command-line import keeps no file,
so its recovery closes it that way.

Personal data never goes into audit rows: they name batches, counts and ids.
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import time
import uuid
from collections.abc import Iterable
from contextlib import ExitStack
from pathlib import Path

from django.conf import settings
from django.db import InterfaceError, OperationalError, transaction
from django.db.models import Case, F, Q, QuerySet, Value, When
from django.db.models.functions import Coalesce
from django.utils import timezone

from leads.import_fork import FileCheck
from leads.import_rows import RowNormaliser
from leads.importing import (
    DEFAULT_CHUNKING,
    Chunking,
    ImportContext,
    ImportCounts,
    LeaseLost,
    ProgressCallback,
    run_chunks,
)
from leads.models import (
    BatchState,
    ImportBatch,
    ImportIssue,
    import_lease_period,
)
from leads.parsing import (
    FileProblem,
    HeaderMapping,
    SourceFile,
    inspect_file,
    iter_rows,
    map_headers,
    mapping_from_display,
    scan_file,
)
from leads.scoring import LeadScorer
from leads.selectors import lead_policy_of
from ventures.models import Campaign
from ventures.services import Actor, DomainError, audit_record

logger = logging.getLogger(__name__)


class AlreadyImportedError(DomainError):
    pass


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


def file_rows(info: SourceFile) -> Iterable[tuple[int, list[str]]]:
    rows = iter_rows(info)
    next(rows)  # the header
    return rows


def _header_mapping(info: SourceFile) -> HeaderMapping:
    """The mapping of a file already scanned in full by the batch's first run."""
    header = next(iter_rows(info), None)
    if header is None:
        raise FileProblem("The file is empty.")
    return map_headers(header[1])


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
    chunking: Chunking,
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
        chunking=chunking,
    )
    return run_chunks(ctx=ctx, rows=rows, progress=progress, check=check, pending=pending)


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
    chunking: Chunking,
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
            chunking=chunking,
        )
    except (LeaseLost, _SliceSpent):
        raise
    except Exception as exc:
        if resumable and isinstance(exc, OperationalError | InterfaceError):
            raise  # the database went away: the chunk rolled back; resumed from rows_done
        message = str(exc) if isinstance(exc, DomainError) else f"{type(exc).__name__}: {exc}"
        _close_failed(batch.pk, token, message)
        if isinstance(exc, DomainError):  # a refusal of the file: its reason, no traceback
            logger.warning("Import batch %s refused: %s", batch.pk, exc)
        else:
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


def import_batch_slice(
    batch_id: int,
    *,
    budget: float | None,
    progress: ProgressCallback | None,
    chunking: Chunking = DEFAULT_CHUNKING,
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
                batch.rows_total = scan_file(info).rows_total
                ImportBatch.objects.filter(pk=batch.pk).update(rows_total=batch.rows_total)
            _refuse_reimport(batch.campaign, info.sha256, force=batch.forced, exclude=batch.pk)
        mapping = _header_mapping(info)
        if batch.mapping:  # as stored, with the operator's remapping of columns if any
            mapping = mapping_from_display(mapping, batch.mapping)
        rows = itertools.islice(file_rows(info), batch.rows_done, None)
        lease = ImportLease(batch.pk, token, progress, budget, started)
        _import_and_close(batch, rows, mapping, lease, token, resumable=True, chunking=chunking)
        # Kept for the rejected-rows download, which gives those rows whole (until it expires).
        keep_file = ImportIssue.objects.filter(batch_id=batch.pk).exists()
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


def import_batch_queue(batch_id: int) -> None:
    """Queue a run of the batch on the django-q2 cluster (the task `leads.tasks.
    import_batch_run`). Every queueing goes through here: tests replace it to keep a batch
    pending, to see what was queued, or to queue the task with small chunks."""
    from django_q.tasks import async_task

    async_task("leads.tasks.import_batch_run", batch_id)


def import_batch_run_now(
    *,
    batch_id: int,
    progress: ProgressCallback | None = None,
    chunking: Chunking = DEFAULT_CHUNKING,
) -> bool:
    """Run a batch to its end in this process, if it can be claimed: pending, waiting for its
    next slice, or interrupted (its lease lapsed). A batch that another runner holds is left
    alone (a task may be delivered more than once). Returns whether this call ran it."""
    outcome = import_batch_slice(batch_id, budget=None, progress=progress, chunking=chunking)
    return outcome is not None


def import_batch_run_sliced(*, batch_id: int, chunking: Chunking = DEFAULT_CHUNKING) -> bool:
    """The background task: run one time slice of AICMO_IMPORT_SLICE_SECONDS, then queue a
    task for the rest, so that no task comes near the cluster's timeout. With AICMO_Q_SYNC a
    queued task would run nested inside this one, so the slices run one after another here.
    Returns whether this call ran anything. `chunking` holds for the slices run by this call;
    a task queued for the rest runs with the default."""
    ran = False
    while True:
        outcome = import_batch_slice(
            batch_id,
            budget=settings.AICMO_IMPORT_SLICE_SECONDS,
            progress=None,
            chunking=chunking,
        )
        if outcome is None:
            return ran
        ran = True
        if outcome != PAUSED:
            return True
        if not _tasks_run_inline():
            import_batch_queue(batch_id)
            return True


KEPT_UPLOAD_DAYS = 7  # a finished import's upload is kept this long for its rejected rows


def import_uploads_forget(*, before: dt.datetime | None = None) -> int:
    """Delete the kept uploads of finished imports (DONE or FAILED) that finished before
    `before` (every one, without it), and clear their `stored_path`; returns how many. Called
    with a cut-off by the recovery schedule, and without one by an erasure, since any kept
    file may hold the erased person's row. Running imports keep theirs."""
    finished = ImportBatch.objects.filter(state__in=(BatchState.DONE, BatchState.FAILED)).exclude(
        stored_path=""
    )
    if before is not None:
        finished = finished.filter(finished_at__lt=before)
    forgotten = 0
    for pk, stored in finished.values_list("pk", "stored_path"):
        Path(stored).unlink(missing_ok=True)
        forgotten += ImportBatch.objects.filter(pk=pk, stored_path=stored).update(stored_path="")
    return forgotten


def import_batches_recover(*, now: dt.datetime | None = None) -> list[int]:
    """Queue a run of every background import whose runner stopped: RUNNING with a lapsed
    lease, or PENDING for longer than a lease (its task was lost). Run every minute by the
    django-q2 schedule, which also forgets finished imports' uploads kept past
    KEPT_UPLOAD_DAYS; returns the ids queued."""
    import_uploads_forget(before=(now or timezone.now()) - dt.timedelta(days=KEPT_UPLOAD_DAYS))
    stale = ImportBatch.objects.resumable(now)
    ids = list(stale.order_by("pk").values_list("pk", flat=True))
    for batch_id in ids:
        logger.warning("Import batch %s stopped reporting progress; queued to resume", batch_id)
        import_batch_queue(batch_id)
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
        transaction.on_commit(lambda: import_batch_queue(batch.pk))
        return True
    return import_batch_run_now(batch_id=batch.pk, progress=progress)
