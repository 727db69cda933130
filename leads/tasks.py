"""django-q2 tasks of the leads app."""

from __future__ import annotations

from leads.services import import_batch_run as _import_batch_run


def import_batch_run(batch_id: int) -> bool:
    """Run a stored upload in the background. Idempotent: the service claims the batch with a
    conditional UPDATE, so a second delivery of the task does nothing and returns False."""
    return _import_batch_run(batch_id=batch_id)
