"""Signals of the leads app.

`lead_erased` is sent by `leads.services.privacy.lead_erase()` inside its transaction, after the leads
are blanked, with keyword arguments:

- `lead_ids`: list[int], the ids of the erased leads (the rows stay, blanked, status ERASED);
- `identity_hash`: str, the SHA-256 identity of the person (kept in the suppression list).

Apps that keep their own copies of personal data (templating render logs, outreach messages)
connect a receiver that deletes or blanks those copies by lead id. A receiver that raises
rolls the whole erasure back, so a person is never half-erased.
"""

from __future__ import annotations

import django.dispatch

lead_erased = django.dispatch.Signal()


IMPORT_RECOVERY_SCHEDULE = "aicmo.lead-import-recovery"


def ensure_import_schedules(**kwargs) -> None:
    """After migrate: the schedule that resumes background imports whose worker stopped
    (`leads.tasks.import_batches_recover`, every minute). Idempotent."""
    from ventures.signals import ensure_minutely_schedule

    ensure_minutely_schedule(IMPORT_RECOVERY_SCHEDULE, "leads.tasks.import_batches_recover")
