"""An admin upload between its preview and its confirmation.

The upload is staged under a random name in the artifact folder, previewed within a budget
(rows and seconds, so a web request stays short) with the projected totals of a dry run of
its first rows, previewed again as often as the operator remaps its columns (the ticket
carries their choices), and confirmed through a signed ticket that
names the staged file, the campaign, the user and the options and expires. Confirming turns it
into an import batch (`leads.services.imports.import_batch_create`); a big file runs on the
task cluster.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.core import signing

from leads.models import ImportBatch
from leads.parsing import read_limits
from leads.services.imports import ImportPreview, import_batch_create, lead_import_preview
from ventures.models import Campaign
from ventures.services import DomainError

logger = logging.getLogger(__name__)

STAGING_MAX_AGE = 3600  # seconds an operator has between the preview and the confirm
_TICKET_SALT = "leads.admin.import"
# What the preview may read inside the web request. Past these the preview shows the first
# rows and says the rest is checked when the import runs (which checks the whole file before
# writing anything, as it always does). Bytes: the size above which imports run in the
# background, so that a file imported in the request is also previewed in full.
PREVIEW_MAX_ROWS = 100_000
PREVIEW_MAX_SECONDS = 3.0
# The preview's projected totals come from a dry run (the import's work, rolled back) of at
# most this many rows; past them the page says the totals are those of the first rows.
PROJECTION_ROWS = 20_000


@dataclass
class StagedUpload:
    name: str  # file name inside the staging folder (random, never the operator's name)
    original_name: str
    size: int
    preview: ImportPreview
    checked_in_full: bool = True  # False: the preview stopped at its budget


def background_threshold() -> int:
    """Uploads larger than this many bytes run on the django-q2 cluster."""
    return settings.AICMO_IMPORT_BACKGROUND_BYTES


def _staging_dir() -> Path:
    path = Path(settings.AICMO_ARTIFACT_DIR) / "lead-import-staging"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _staged_path(name: str) -> Path:
    return _staging_dir() / Path(name).name  # basename: a ticket can never point elsewhere


def _clear_stale_staging() -> None:
    cutoff = time.time() - 2 * STAGING_MAX_AGE
    for path in _staging_dir().iterdir():
        with contextlib.suppress(OSError):
            if path.stat().st_mtime < cutoff:
                path.unlink()


def upload_preview(*, upload, campaign: Campaign) -> tuple[StagedUpload | None, str]:
    """Write the upload to the staging folder (streamed, never whole in memory) and preview
    it, reading at most the background threshold's bytes, PREVIEW_MAX_ROWS rows and
    PREVIEW_MAX_SECONDS (`checked_in_full` says whether it stopped short). Returns (staged
    upload, "") or (None, a message naming the file-level problem); on a problem the staged
    file is removed and nothing else exists."""
    _clear_stale_staging()
    # Random name; the extension is kept because openpyxl refuses files without one.
    suffix = Path(upload.name or "").suffix.lower()
    name = uuid.uuid4().hex + (suffix if re.fullmatch(r"\.[a-z0-9]{1,5}", suffix) else ".upload")
    path = _staged_path(name)
    with path.open("wb") as out:
        for chunk in upload.chunks():
            out.write(chunk)
    staged, error = staged_preview(name=name, original_name=upload.name, campaign=campaign)
    if staged is None:
        path.unlink(missing_ok=True)
    return staged, error


def staged_preview(
    *, name: str, original_name: str, campaign: Campaign, choices: dict[str, str] | None = None
) -> tuple[StagedUpload | None, str]:
    """Preview a staged file (again, after the operator remapped its columns: `choices`),
    with the projected totals of a dry run of its first PROJECTION_ROWS rows. Returns (staged
    upload, "") or (None, the problem with the file or the mapping); the file stays."""
    path = _staged_path(name)
    try:
        with read_limits(
            max_bytes=background_threshold(),
            max_rows=PREVIEW_MAX_ROWS,
            max_seconds=PREVIEW_MAX_SECONDS,
        ) as limits:
            preview = lead_import_preview(
                campaign=campaign,
                path=path,
                file_name=original_name,
                choices=choices,
                project_rows=PROJECTION_ROWS,
            )
    except DomainError as exc:
        logger.info("Preview of an uploaded lead file refused: %s", exc)
        return None, str(exc)
    except Exception:  # a bug, not the file: still a message, never a 500
        logger.exception("Preview of an uploaded lead file failed")
        return None, "The file could not be read as CSV or XLSX. Check its format and try again."
    size = path.stat().st_size
    return StagedUpload(name, original_name, size, preview, not limits.cut_short), ""


def staged_is_kept(ticket: dict) -> bool:
    return _staged_path(ticket["file"]).is_file()


def ticket_sign(
    *, user, campaign: Campaign, preview: StagedUpload, source: str, force: bool
) -> str:
    return signing.dumps(
        {
            "file": preview.name,
            "name": preview.original_name,
            "user": user.pk,
            "campaign": campaign.pk,
            "source": source,
            "force": force,
            "choices": preview.preview.choices,  # {column: field}, as the operator left it
        },
        salt=_TICKET_SALT,
    )


def ticket_read(value: str, *, user) -> dict | None:
    """The ticket's contents if it is authentic, fresh, this user's and its file still exists."""
    try:
        ticket = signing.loads(value, salt=_TICKET_SALT, max_age=STAGING_MAX_AGE)
    except signing.BadSignature:
        return None
    if ticket.get("user") != user.pk or not staged_is_kept(ticket):
        return None
    return ticket


def ticket_run(*, ticket: dict, campaign: Campaign, user) -> tuple[ImportBatch | None, str]:
    """Create the batch for a confirmed upload and run it (now, or in the background when the
    file is large). Returns (batch, "") or (None, message) for a refusal (already imported,
    file-level problem); the staged file is removed either way."""
    path = _staged_path(ticket["file"])
    try:
        batch = import_batch_create(
            campaign=campaign,
            source_path=path,
            file_name=ticket["name"],
            actor=user,
            source=ticket["source"],
            uploaded_by=user,
            force=ticket["force"],
            background=(big := path.stat().st_size > background_threshold()),
            check_in_background=big,
            choices=ticket.get("choices") or None,
        )
    except DomainError as exc:
        return None, str(exc)
    finally:
        path.unlink(missing_ok=True)
    batch.refresh_from_db()
    return batch, ""
