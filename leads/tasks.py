"""django-q2 tasks of the leads app."""

from __future__ import annotations

from leads.importing import DEFAULT_CHUNKING, Chunking
from leads.services import runs


def import_batch_run(batch_id: int, *, chunking: Chunking = DEFAULT_CHUNKING) -> bool:
    """Run a stored upload in the background, one time slice per task (the next slice is queued
    by this one). Idempotent: the service claims the batch with a conditional UPDATE, so a
    second delivery of the task, or one for a batch another worker holds, does nothing and
    returns False."""
    return runs.import_batch_run_sliced(batch_id=batch_id, chunking=chunking)


def import_batches_recover() -> list[int]:
    """Every minute (schedule made on migrate): re-queue imports whose worker stopped."""
    return runs.import_batches_recover()
