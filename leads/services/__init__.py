"""Writes of the leads app, one module per job. The admin, the `leads` command, the tasks and
the inbound channels call these; reads are `leads.selectors`, suppression `leads.suppression`.

- `imports`: the ways a file gets into a campaign (import now, stored upload, preview, demo).
- `runs`: running a stored batch under a lease, in time slices, and recovering it.
- `privacy`: erasure and data access requests about one person.
- `exports`: a campaign's leads as CSV.
- `rules`: re-scoring leads and the campaign's cross-campaign policy.
- `bulk`: set-wise writes on an operator's selection (mark DNC, move to a segment).
- `uploads`: an admin upload between its preview and its confirmation (staging, tickets).

The names below are re-exported so that `from leads.services import X` keeps working (the two
reads, `lead_policy_of` and `lead_counts`, live in `leads.selectors`); new code imports from
the module that owns the name.
"""

from __future__ import annotations

from leads.selectors import lead_counts, lead_policy_of
from leads.services.exports import EXPORT_COLUMNS, leads_export, spreadsheet_safe
from leads.services.imports import (
    ImportOutcome,
    ImportPreview,
    PreviewRow,
    import_batch_create,
    lead_import,
    lead_import_preview,
    leads_demo_import,
)
from leads.services.privacy import PERSONAL_FIELDS, ErasureResult, lead_data_export, lead_erase
from leads.services.rules import campaign_lead_policy_set, lead_rescore
from leads.services.runs import (
    AlreadyImportedError,
    ImportLease,
    file_rows,
    import_batch_claim,
    import_batch_finish,
    import_batch_queue,
    import_batch_resume,
    import_batch_run_now,
    import_batch_run_sliced,
    import_batch_slice,
    import_batches_recover,
)

__all__ = [
    "EXPORT_COLUMNS",
    "PERSONAL_FIELDS",
    "AlreadyImportedError",
    "ErasureResult",
    "ImportLease",
    "ImportOutcome",
    "ImportPreview",
    "PreviewRow",
    "campaign_lead_policy_set",
    "file_rows",
    "import_batch_claim",
    "import_batch_create",
    "import_batch_finish",
    "import_batch_queue",
    "import_batch_resume",
    "import_batch_run_now",
    "import_batch_run_sliced",
    "import_batch_slice",
    "import_batches_recover",
    "lead_counts",
    "lead_data_export",
    "lead_erase",
    "lead_import",
    "lead_import_preview",
    "lead_policy_of",
    "lead_rescore",
    "leads_demo_import",
    "leads_export",
    "spreadsheet_safe",
]
