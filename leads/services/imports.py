"""The ways a file gets into a campaign. `lead_import()` imports a file now (CLI, tests, demo);
`import_batch_create()` stores an upload as a pending ImportBatch and runs it (in the
background by default, through `leads.services.runs`); `lead_import_preview()` shows the
mapping and the first rows with their problems before the operator confirms;
`leads_demo_import()` loads the demo's sample.

Contract: a closed campaign takes no file (`_refuse_closed_campaign`), a file already imported
into the campaign is refused unless forced (`AlreadyImportedError`), and a file-level problem
raises `FileProblem` before anything is written (small files are checked in full first; big
ones beside the first chunks, which commit only once the check passed). A dry run does all the
work and rolls it back. Running the rows, the lease and closing the batch are in
`leads.services.runs`; row-level work is `leads.importing` and the `leads.import_*` modules.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import uuid
from contextlib import ExitStack, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from leads.import_fork import FileCheck
from leads.import_rows import RowNormaliser
from leads.import_sql import fetch_people, fetch_suppressed
from leads.importing import DEFAULT_CHUNKING, Chunking, LeaseLost, ProgressCallback
from leads.models import (
    BatchState,
    ImportBatch,
    SourceChannel,
    import_lease_period,
)
from leads.parsing import (
    SourceFile,
    inspect_file,
    iter_rows,
    mapping_choices,
    mapping_remap,
    scan_file,
)
from leads.scoring import LeadScorer
from leads.services import runs
from leads.services.runs import (
    AlreadyImportedError,
    ImportLease,
    _header_mapping,
    _import_and_close,
    _import_rows,
    _refuse_reimport,
    file_rows,
)
from ventures.models import Campaign
from ventures.services import Actor, DomainError, actor_label

# Files bigger than this are checked in full by a second process beside the import's first
# chunks (`import_fork.FileCheck`); smaller ones are checked before it, which costs less than a
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


def _refuse_closed_campaign(campaign: Campaign) -> None:
    """Every file import starts here: a stopped or completed campaign takes no leads."""
    if not campaign.accepts_leads():
        raise DomainError(
            f"Campaign '{campaign.slug}' is {campaign.status}: it takes no new leads. "
            "Import into a draft, running or paused campaign."
        )


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
    chunking: Chunking = DEFAULT_CHUNKING,
) -> ImportOutcome:
    """Import a CSV/XLSX file into a campaign now.

    The whole file is checked (a big one beside the first chunks, which commit only once it
    passed); a file-level problem raises FileProblem and leaves nothing written. A dry run does all the work and rolls it back (counts are real, nothing stays).
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
                    batch=batch,
                    rows=file_rows(info),
                    mapping=mapping,
                    progress=progress,
                    chunking=chunking,
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
                    chunking=chunking,
                )
            except LeaseLost:
                raise DomainError(
                    f"Import #{batch.pk} stopped: it reported no progress for "
                    f"{settings.AICMO_IMPORT_LEASE_SECONDS} s and counted as interrupted."
                ) from None
    return _outcome(batch.pk, info, mapping, counts, started, dry_run=False)


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
    check_in_background: bool = False,
    choices: dict[str, str] | None = None,
) -> ImportBatch:
    """Store an upload, check the whole file, and create a pending batch for it.

    `source_path` is copied (the caller may delete it). With `background`, the import runs on
    the django-q2 cluster once this transaction commits; otherwise it runs before returning.
    A file-level problem raises FileProblem and leaves nothing behind. With
    `check_in_background` (a big upload confirmed in the admin, where a web request must not
    read a whole file) only the header is checked here; the worker checks the whole file
    before it writes a row, and a problem then fails the batch with the same message.
    `choices` are the operator's remapping of columns (`parsing.mapping_remap`), stored with
    the batch's mapping so every run of it reads the rows the same way.
    """
    _refuse_closed_campaign(campaign)
    stored = _upload_dir() / f"{uuid.uuid4().hex}-{_safe_name(file_name)}"
    shutil.copyfile(source_path, stored)
    try:
        info = inspect_file(stored, name=file_name)
        if background and check_in_background:
            mapping, rows_total = _header_mapping(info), 0
        else:
            scan = scan_file(info)
            mapping, rows_total = scan.mapping, scan.rows_total
        if choices:
            mapping = mapping_remap(mapping, choices)
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
        mapping=mapping.as_display(),
        rows_total=rows_total,
    )
    if background:
        transaction.on_commit(lambda: runs.import_batch_queue(batch.pk))
    else:
        runs.import_batch_run_now(batch_id=batch.pk)
        batch.refresh_from_db()
    return batch


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
    choices: dict[str, str] = field(default_factory=dict)  # column -> field, CUSTOM or SKIP
    projected: dict[str, int] | None = None  # a dry run's counts (ImportCounts.as_dict)
    projected_rows: int = 0  # of how many rows


def lead_import_preview(
    *,
    campaign: Campaign,
    path: Path | str,
    file_name: str = "",
    rows: int = 10,
    choices: dict[str, str] | None = None,
    project_rows: int = 0,
) -> ImportPreview:
    """What an import of this file would do: the mapping used (with the operator's `choices`
    applied), the first rows with their problems and outcome, and, with `project_rows`, the
    projected totals of a dry run of the first that many rows (all the work, rolled back).
    Raises FileProblem for a file that cannot be imported or a mapping that cannot be used,
    and DomainError for a campaign that takes no leads."""
    _refuse_closed_campaign(campaign)
    info = inspect_file(path, name=file_name)
    scan = scan_file(info)
    if choices:
        scan.mapping = mapping_remap(scan.mapping, choices)
    preview = ImportPreview(
        file_name=info.name,
        sha256=info.sha256,
        kind=info.kind,
        encoding=info.encoding if info.kind == "csv" else "xlsx",
        delimiter={",": "comma", ";": "semicolon", "\t": "tab"}.get(info.delimiter, "?"),
        rows_total=scan.rows_total,
        mapping=scan.mapping.as_display(),
        choices=mapping_choices(scan.mapping),
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
    if project_rows:
        preview.projected = _projection(campaign, info, scan.mapping, project_rows)
        preview.projected_rows = min(project_rows, scan.rows_total)
    return preview


def _projection(campaign: Campaign, info: SourceFile, mapping, max_rows: int) -> dict[str, int]:
    """The counts an import of the file's first `max_rows` rows would end with: the real
    import's work (dedup, suppression, policy, writes) in a transaction rolled back."""
    with transaction.atomic():
        batch = ImportBatch.objects.create(
            campaign=campaign,
            file_name=info.name[:255],
            file_sha256=info.sha256,
            mapping=mapping.as_display(),
            state=BatchState.RUNNING,
        )
        counts = _import_rows(
            batch=batch,
            rows=itertools.islice(file_rows(info), max_rows),
            mapping=mapping,
            progress=None,
            chunking=DEFAULT_CHUNKING,
        )
        transaction.set_rollback(True)
    return counts.as_dict()


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
