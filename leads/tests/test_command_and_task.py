"""The `leads` management command and the background import task."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

from leads import tasks
from leads.importing import Chunking
from leads.models import BatchState, ImportBatch, Lead, LeadStatus, SuppressionEntry
from leads.parsing import FileProblem
from leads.services.imports import import_batch_create
from leads.services.runs import import_batch_run_now


def leads_cmd(*args) -> str:
    out = io.StringIO()
    call_command("leads", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_import_prints_a_summary_and_json(sample_dir, campaign):
    text = leads_cmd("import", campaign.slug, str(sample_dir / "lemlist_export_sample.csv"))
    assert "28 created" in text and "1 invalid" in text and "1 duplicates in the file" in text

    data = json.loads(
        leads_cmd(
            "import",
            str(campaign.pk),
            str(sample_dir / "hubspot_export_sample.csv"),
            "--source",
            "HubSpot October",
            "--json",
        )
    )
    assert data["counts"]["created"] == 39 and data["encoding"] == "cp1252"
    assert Lead.objects.filter(source_list="HubSpot October").count() == 39


def test_import_dry_run_writes_nothing(sample_dir, campaign):
    data = json.loads(
        leads_cmd(
            "--json",
            "import",
            campaign.slug,
            str(sample_dir / "apollo_export_sample.csv"),
            "--dry-run",
        )
    )
    assert data["dry_run"] is True and data["counts"]["created"] == 51
    assert Lead.objects.count() == 0 and ImportBatch.objects.count() == 0


def test_import_failures_are_one_line_command_errors(sample_dir, campaign, write_csv):
    with pytest.raises(CommandError, match="No campaign"):
        leads_cmd("import", "nope", str(sample_dir / "apollo_export_sample.csv"))
    with pytest.raises(CommandError, match="No such file"):
        leads_cmd("import", campaign.slug, "/nonexistent.csv")
    with pytest.raises(CommandError, match="No email column"):
        leads_cmd("import", campaign.slug, str(write_csv("Name\nAnn\n")))
    leads_cmd("import", campaign.slug, str(sample_dir / "apollo_export_sample.csv"))
    with pytest.raises(CommandError, match="already imported"):
        leads_cmd("import", campaign.slug, str(sample_dir / "apollo_export_sample.csv"))
    text = leads_cmd(
        "import", campaign.slug, str(sample_dir / "apollo_export_sample.csv"), "--force"
    )
    assert "51 already in the campaign" in text


def test_export_suppress_and_erase(sample_dir, campaign, tmp_path, write_csv):
    leads_cmd("import", campaign.slug, str(sample_dir / "lemlist_export_sample.csv"))
    out = tmp_path / "out.csv"
    assert "Exported 28 leads" in leads_cmd("export", campaign.slug, "--out", str(out))
    assert out.read_text(encoding="utf-8").count("\n") == 29
    assert leads_cmd("export", campaign.slug).startswith("id,email,")

    target = Lead.objects.filter(campaign=campaign).order_by("pk").first()
    text = leads_cmd("suppress", target.email, "--reason", "complained")
    assert "Suppressed 1 new entry" in text and "1 active lead(s) marked suppressed" in text
    target.refresh_from_db()
    assert target.status == LeadStatus.SUPPRESSED

    file_text = leads_cmd(
        "--json",
        "suppress",
        str(write_csv("@hooli.example\nbad value\n")),
        "--venture",
        campaign.venture.slug,
    )
    assert json.loads(file_text)["added"] == 1
    assert SuppressionEntry.objects.get(kind="domain").venture == campaign.venture
    with pytest.raises(CommandError, match="Nothing suppressed"):
        leads_cmd("suppress", "not-an-email")

    erased = json.loads(leads_cmd("--json", "erase", target.email))
    assert erased["lead_ids"] == [target.pk]
    target.refresh_from_db()
    assert target.status == LeadStatus.ERASED and target.email == ""


def _pending_batch(campaign, path: Path, **kwargs) -> ImportBatch:
    return import_batch_create(
        campaign=campaign,
        source_path=path,
        file_name=path.name,
        actor="op",
        background=not kwargs.pop("now", False),
        **kwargs,
    )


def test_background_import_runs_once_after_commit_and_is_idempotent(
    sample_dir, campaign, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        batch = _pending_batch(campaign, sample_dir / "apollo_export_sample.csv")
        assert batch.state == BatchState.PENDING and batch.rows_total == 60
    assert len(callbacks) == 1

    batch.refresh_from_db()
    assert batch.state == BatchState.DONE and batch.created == 51 and batch.rows_done == 60
    # 9 of the 60 rows were rejected: the upload is kept for the rejected-rows download.
    assert Path(batch.stored_path).exists() == batch.issues.exists()

    assert tasks.import_batch_run(batch.pk) is False  # a second delivery does nothing
    batch.refresh_from_db()
    assert batch.created == 51 and Lead.objects.count() == 51


def test_a_running_batch_is_not_claimed_again(sample_dir, campaign):
    batch = _pending_batch(campaign, sample_dir / "lemlist_export_sample.csv")
    ImportBatch.objects.filter(pk=batch.pk).update(state=BatchState.RUNNING)

    assert import_batch_run_now(batch_id=batch.pk) is False
    assert Lead.objects.count() == 0


def test_upload_with_a_file_problem_creates_no_batch_and_keeps_no_file(campaign, write_csv):
    uploads = Path(settings.AICMO_ARTIFACT_DIR) / "lead-imports"
    before = set(uploads.iterdir()) if uploads.exists() else set()
    with pytest.raises(FileProblem, match="header row but no data"):
        _pending_batch(campaign, write_csv("Email\n"))
    assert ImportBatch.objects.count() == 0
    assert set(uploads.iterdir()) == before


def test_synchronous_upload_runs_immediately_with_progress(sample_dir, campaign):
    batch = _pending_batch(campaign, sample_dir / "lemlist_export_sample.csv", now=True)
    assert batch.state == BatchState.DONE and batch.created == 28


def test_progress_callback_reports_rows_done_out_of_total(run_import, write_csv):
    seen = []
    rows = "".join(f"p{i}@acme.example\n" for i in range(10))

    run_import(
        write_csv("Email\n" + rows),
        progress=lambda done, total: seen.append((done, total)),
        chunking=Chunking(rows=4),
    )

    assert seen == [(4, 10), (8, 10), (10, 10)]


def test_the_terminal_progress_bar_counts_rows_until_the_file_check_gives_the_total():
    import io

    from leads.management.commands.leads import _ProgressBar

    out = io.StringIO()
    bar = _ProgressBar(out)
    bar(30_000, 0)
    assert out.getvalue().endswith("\r30000 rows done (the file is still being checked)")
    bar.last = 0.0
    bar(50_000, 100_000)
    assert "\r[###############...............]  50% 50000/100000" in out.getvalue()


def test_a_whole_file_check_left_to_the_worker_fails_the_batch_before_any_row(campaign, write_csv):
    """The admin confirms a big upload without reading it whole (check_in_background): the
    worker's check refuses the file with the same message and writes nothing."""
    path = write_csv("Email,Name\na@x.example,Ann\n" + 'b@x.example,"Bob\nc@x.example,Cy\n')
    with pytest.raises(FileProblem, match="quote"):
        _pending_batch(campaign, path)  # checked now, as before: refused up front
    batch = _pending_batch(campaign, path, check_in_background=True)
    assert batch.state == BatchState.PENDING and batch.rows_total == 0

    import_batch_run_now(batch_id=batch.pk)

    batch.refresh_from_db()
    assert batch.state == BatchState.FAILED and "quote" in batch.error
    assert not Lead.objects.exists()
    assert not Path(batch.stored_path).exists()


def test_a_good_file_checked_by_the_worker_gets_its_row_count(campaign, sample_dir):
    batch = _pending_batch(
        campaign, sample_dir / "apollo_export_sample.csv", check_in_background=True
    )
    import_batch_run_now(batch_id=batch.pk)
    batch.refresh_from_db()
    assert (batch.state, batch.rows_total, batch.rows_done) == (BatchState.DONE, 60, 60)
