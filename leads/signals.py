"""Signals of the leads app.

`lead_erased` is sent by `leads.services.privacy.lead_erase()` inside its transaction, after the leads
are blanked, with keyword arguments:

- `lead_ids`: list[int], the ids of the erased leads (the rows stay, blanked, status ERASED);
- `identity_hash`: str, the SHA-256 identity of the person (kept in the suppression list).

Apps that keep their own copies of personal data (templating render logs, outreach messages)
connect a receiver that deletes or blanks those copies by lead id. A receiver that raises
rolls the whole erasure back, so a person is never half-erased.

`lead_unsubscribed` is sent by `leads.unsubscribes.lead_unsubscribe()` inside its transaction
when a person is newly unsubscribed from a venture (never for a repeated request), with
keyword arguments:

- `venture_id`: int, the venture they unsubscribed from (other ventures are not affected);
- `identity_hash`: str, the person's identity ("" for a lead without one: use `lead_ids`);
- `lead_ids`: list[int], every lead of the person in that venture, now all UNSUBSCRIBED;
- `source`: str, how they asked (`leads.models.UnsubscribeSource`).

The outbox connects a receiver that blocks the person's pending messages in the venture. A
receiver that raises rolls the unsubscribe back (the visitor sees an error and can retry).
"""

from __future__ import annotations

import django.dispatch

lead_erased = django.dispatch.Signal()
lead_unsubscribed = django.dispatch.Signal()


IMPORT_RECOVERY_SCHEDULE = "aicmo.lead-import-recovery"


def ensure_import_schedules(**kwargs) -> None:
    """After migrate: the schedule that resumes background imports whose worker stopped
    (`leads.tasks.import_batches_recover`, every minute). Idempotent."""
    from ventures.signals import ensure_minutely_schedule

    ensure_minutely_schedule(IMPORT_RECOVERY_SCHEDULE, "leads.tasks.import_batches_recover")
