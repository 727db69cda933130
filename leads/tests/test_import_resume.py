"""Background imports finish correctly whatever happens to their worker: leases, time slices,
recovery of interrupted imports (automatic and by hand), on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db import OperationalError
from django.urls import reverse
from django.utils import timezone

from leads import tasks
from leads.importing import Chunking, LeaseLost
from leads.models import BatchState, ImportBatch, Lead
from leads.services import runs
from leads.services.imports import import_batch_create, lead_import
from leads.services.runs import import_batch_resume, import_batch_run_now, import_batches_recover
from leads.signals import IMPORT_RECOVERY_SCHEDULE
from leads.suppression import suppression_add
from leads.tests.outcomes import issues_of, leads_of
from tests.factories import CampaignFactory, ImportBatchFactory, VentureFactory
from ventures.models import AuditEvent
from ventures.services import DomainError

pytestmark = pytest.mark.usefixtures("plain_http")

CHUNK = 4
SMALL = Chunking(rows=CHUNK)

# 14 rows: duplicates within the file across chunk boundaries (rows 7 and 11 repeat rows 2 and
# 3), one invalid address, one lead already in the campaign (filled in), one suppressed domain.
ROWS = [
    "a0@acme.example,Ann,",
    "a1@acme.example,Bob,",
    "a2@acme.example,Cid,",
    "known@acme.example,Kay,Acme",
    "not-an-email,Nil,",
    "a1@acme.example,Bob,Again",
    "a5@blocked.example,Sup,",
    "a6@acme.example,Dee,",
    "a7@acme.example,Eve,",
    "A2@ACME.example,Cid,Later",
    "a9@acme.example,Fay,",
    "a10@acme.example,Gus,",
    "a11@acme.example,Hal,",
    "a12@acme.example,Ian,",
]
FILE_TEXT = "Email,First Name,Company\n" + "\n".join(ROWS) + "\n"


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch):
    """The imports here have chunks of CHUNK rows: the tests pass `chunking=SMALL` to the runs
    they start, and a run queued on the way (by the recovery, an upload, a resume from the
    admin) is the same task, queued through django-q2 with it. (`leads resume` in the
    foreground is the exception: the command takes no chunk size.)"""
    from django_q.tasks import async_task

    def queue(batch_id: int) -> None:
        async_task("leads.tasks.import_batch_run", batch_id, chunking=SMALL)

    monkeypatch.setattr(runs, "import_batch_queue", queue)


@pytest.fixture
def lead_file(write_csv) -> Path:
    return write_csv(FILE_TEXT, name="list.csv")


def _prepare(campaign):
    """What the campaign holds before the import: a known lead and a suppressed domain."""
    Lead.objects.create(
        campaign=campaign,
        venture=campaign.venture,
        email="known@acme.example",
        email_key="known@acme.example",
    )
    suppression_add(values=["@blocked.example"], actor="test", venture=campaign.venture)


def _pending(campaign, path: Path, monkeypatch) -> ImportBatch:
    """A stored upload whose task has not run yet (queued after a commit that, in a test
    transaction, never comes; with a real commit the queueing is held back here)."""
    with monkeypatch.context() as patch:
        patch.setattr(runs, "import_batch_queue", lambda batch_id: None)
        return import_batch_create(
            campaign=campaign, source_path=path, file_name=path.name, actor="op", source="Q4"
        )


class _Stop(BaseException):
    """Stands for the worker being stopped (django-q's timeout raises SystemExit likewise)."""


def _stop_after(chunks: int):
    seen = []

    def progress(done, total):
        seen.append(done)
        if len(seen) == chunks:
            raise _Stop

    return progress


def _interrupted(campaign, path: Path, monkeypatch, chunks: int = 1) -> ImportBatch:
    """A background import whose runner stopped after `chunks` committed chunks."""
    batch = _pending(campaign, path, monkeypatch)
    with pytest.raises(_Stop):
        import_batch_run_now(batch_id=batch.pk, progress=_stop_after(chunks), chunking=SMALL)
    batch.refresh_from_db()
    return batch


def _lapse(batch: ImportBatch) -> None:
    """Time passes: the lease of the stopped runner runs out."""
    ImportBatch.objects.filter(pk=batch.pk).update(
        lease_until=timezone.now() - dt.timedelta(seconds=1)
    )


def clean_import(path: Path, **kwargs) -> tuple[ImportBatch, CampaignFactory]:
    """The same file imported without interruption into a campaign of another venture."""
    other = CampaignFactory(venture=VentureFactory(name="Clean Co", slug="clean-co"))
    _prepare(other)
    outcome = lead_import(
        campaign=other, path=path, actor="test", source="Q4", chunking=SMALL, **kwargs
    )
    return ImportBatch.objects.get(pk=outcome.batch_id), other


def assert_same_import(batch: ImportBatch, campaign, path: Path) -> None:
    reference, other = clean_import(path)
    batch.refresh_from_db()
    assert batch.state == BatchState.DONE
    assert batch.counts() == reference.counts()
    assert leads_of(campaign) == leads_of(other)
    strip = [(r, c, k, t) for r, c, k, t in issues_of(reference.pk)]
    assert issues_of(batch.pk) == strip


# --- claim and lease -----------------------------------------------------------------------------


def test_a_claimed_batch_cannot_be_claimed_again_while_its_lease_is_live(
    campaign, lead_file, monkeypatch
):
    batch = _pending(campaign, lead_file, monkeypatch)
    first = runs.import_batch_claim(batch.pk)
    assert first is not None
    claimed, token = first
    assert claimed.state == BatchState.RUNNING and claimed.lease_token == token
    assert claimed.lease_until > timezone.now() + dt.timedelta(seconds=240)

    assert runs.import_batch_claim(batch.pk) is None
    assert import_batch_run_now(batch_id=batch.pk) is False
    assert tasks.import_batch_run(batch.pk) is False
    assert import_batches_recover() == []
    with pytest.raises(DomainError, match=r"still running \(row 0 of 14"):
        import_batch_resume(batch=batch, actor="op")
    assert Lead.objects.filter(campaign=campaign).count() == 0


def test_a_lapsed_lease_is_claimed_once_and_counts_as_a_resume(campaign, lead_file, monkeypatch):
    batch = _pending(campaign, lead_file, monkeypatch)
    _, old_token = runs.import_batch_claim(batch.pk)
    _lapse(batch)

    claimed, token = runs.import_batch_claim(batch.pk)
    assert token != old_token and claimed.resumes == 1 and claimed.slices == 2
    assert runs.import_batch_claim(batch.pk) is None
    # The stopped runner, if it ever wakes up, can no longer extend the lease: it stops.
    with pytest.raises(LeaseLost):
        runs.ImportLease(batch.pk, old_token)(4, 14)


def test_a_runner_that_lost_its_lease_mid_import_cannot_commit_another_chunk(
    campaign, lead_file, monkeypatch
):
    from leads import importing

    _prepare(campaign)
    batch = _pending(campaign, lead_file, monkeypatch)
    write = importing.ChunkProcessor._write
    chunks = []

    def taken_over_while_writing_the_second_chunk(self, prepared):
        chunks.append(1)
        counts = write(self, prepared)
        if len(chunks) == 2:
            # It stalled past its lease while writing; another runner claimed the batch.
            _lapse(batch)
            assert runs.import_batch_claim(batch.pk) is not None
        return counts

    monkeypatch.setattr(
        importing.ChunkProcessor, "_write", taken_over_while_writing_the_second_chunk
    )

    assert import_batch_run_now(batch_id=batch.pk, chunking=SMALL) is True

    batch.refresh_from_db()
    # Only the first chunk (rows 2-5) stays; the second rolled back with its counters, and the
    # batch is the new runner's to continue from there.
    assert batch.state == BatchState.RUNNING and batch.rows_done == CHUNK
    assert sorted(Lead.objects.filter(source_batch=batch).values_list("source_row", flat=True)) == [
        2,
        3,
        4,
    ]


# --- interruption and resume -----------------------------------------------------------------------


def test_an_interrupted_import_resumes_from_rows_done_with_the_counts_and_leads_of_a_clean_one(
    campaign, lead_file, monkeypatch
):
    _prepare(campaign)
    batch = _interrupted(campaign, lead_file, monkeypatch, chunks=2)
    assert batch.state == BatchState.RUNNING and batch.rows_done == 2 * CHUNK
    assert batch.lease_lapsed()
    assert batch.run_status == "Interrupted: its worker stopped; waiting to be resumed"
    assert Path(batch.stored_path).is_file()  # kept to resume

    assert import_batches_recover() == [batch.pk]  # runs inline with AICMO_Q_SYNC

    batch.refresh_from_db()
    assert batch.resumes == 1 and batch.slices == 2 and batch.lease_token == ""
    # Deleted once done, unless rows were rejected (kept for their download with the columns).
    assert Path(batch.stored_path).exists() == batch.issues.exists()
    assert_same_import(batch, campaign, lead_file)
    assert AuditEvent.objects.filter(action="leads.import", entity_id=str(batch.pk)).count() == 1


def test_an_import_stopped_twice_still_ends_exactly_like_a_clean_one(
    campaign, lead_file, monkeypatch
):
    _prepare(campaign)
    batch = _interrupted(campaign, lead_file, monkeypatch)
    with pytest.raises(_Stop):
        import_batch_run_now(batch_id=batch.pk, progress=_stop_after(2), chunking=SMALL)

    assert import_batch_run_now(batch_id=batch.pk, chunking=SMALL) is True

    batch.refresh_from_db()
    assert batch.resumes == 2 and batch.slices == 3
    assert_same_import(batch, campaign, lead_file)


def test_an_import_that_lost_its_database_connection_is_resumed_not_failed(
    campaign, lead_file, monkeypatch
):
    _prepare(campaign)
    batch = _pending(campaign, lead_file, monkeypatch)

    def connection_lost(done, total):
        if done == 2 * CHUNK:
            raise OperationalError("server closed the connection unexpectedly")

    with pytest.raises(OperationalError):
        import_batch_run_now(batch_id=batch.pk, progress=connection_lost, chunking=SMALL)
    batch.refresh_from_db()
    assert batch.state == BatchState.RUNNING and batch.lease_lapsed()
    assert Path(batch.stored_path).is_file()

    assert import_batches_recover() == [batch.pk]

    batch.refresh_from_db()
    assert batch.resumes == 1
    assert_same_import(batch, campaign, lead_file)


def test_an_import_interrupted_again_and_again_is_given_up_with_a_message(
    campaign, lead_file, monkeypatch
):
    batch = _interrupted(campaign, lead_file, monkeypatch)
    ImportBatch.objects.filter(pk=batch.pk).update(resumes=runs.MAX_RESUMES)
    batch.refresh_from_db()

    assert import_batch_run_now(batch_id=batch.pk, chunking=SMALL) is True

    batch.refresh_from_db()
    assert batch.state == BatchState.FAILED and batch.rows_done == CHUNK
    assert batch.error.startswith(
        f"The import was interrupted {runs.MAX_RESUMES + 1} times, the last time at row 4 "
        "of 14, and is not resumed again"
    )
    assert not Path(batch.stored_path).exists()


def test_an_interrupted_import_whose_upload_is_gone_fails_naming_the_cause(
    campaign, lead_file, monkeypatch
):
    batch = _interrupted(campaign, lead_file, monkeypatch)
    Path(batch.stored_path).unlink()

    assert import_batches_recover() == [batch.pk]

    batch.refresh_from_db()
    assert batch.state == BatchState.FAILED and batch.lease_token == ""
    assert batch.error.startswith("The import stopped at row 4 of 14 and cannot be resumed: its ")
    assert "stored upload" in batch.error and "is gone" in batch.error
    assert batch.created == 4  # what was imported stays


def test_a_changed_upload_is_not_resumed(campaign, lead_file, monkeypatch):
    batch = _interrupted(campaign, lead_file, monkeypatch)
    Path(batch.stored_path).write_text(FILE_TEXT + "x@acme.example,X,\n", encoding="utf-8")

    assert import_batch_run_now(batch_id=batch.pk, chunking=SMALL) is True

    batch.refresh_from_db()
    assert batch.state == BatchState.FAILED
    assert "stored upload changed since it was checked" in batch.error
    assert "stopped at row 4 of 14" in batch.error


def test_a_command_line_import_that_died_is_closed_with_a_message(campaign, lead_file):
    with pytest.raises(_Stop):
        lead_import(
            campaign=campaign,
            path=lead_file,
            actor="cli",
            progress=_stop_after(2),
            chunking=SMALL,
        )
    batch = ImportBatch.objects.get()
    assert batch.state == BatchState.RUNNING and not batch.lease_lapsed()
    assert import_batches_recover() == []
    _lapse(batch)

    assert import_batches_recover() == [batch.pk]

    batch.refresh_from_db()
    assert batch.state == BatchState.FAILED and batch.rows_done == 8
    assert "started from the command line, and such files are not kept" in batch.error


def test_recovery_picks_only_imports_whose_runner_stopped(campaign, monkeypatch):
    queued: list[int] = []
    monkeypatch.setattr(runs, "import_batch_queue", queued.append)
    now = timezone.now()
    past, future = now - dt.timedelta(seconds=5), now + dt.timedelta(seconds=60)
    old = now - dt.timedelta(hours=1)
    stopped = ImportBatchFactory(
        campaign=campaign, state="running", lease_token="t1", lease_until=past
    )
    handed_over_lost = ImportBatchFactory(
        campaign=campaign, state="running", lease_token="", lease_until=past
    )
    lost_task = ImportBatchFactory(campaign=campaign, state="pending", created_at=old)
    ImportBatchFactory(campaign=campaign, state="running", lease_token="t2", lease_until=future)
    ImportBatchFactory(campaign=campaign, state="running", lease_token="", lease_until=future)
    ImportBatchFactory(campaign=campaign, state="pending")  # its task is about to run
    ImportBatchFactory(campaign=campaign, state="done", lease_until=past)
    ImportBatchFactory(campaign=campaign, state="running")  # no lease: a form/API delivery
    ImportBatchFactory(
        campaign=campaign, state="running", channel="api", lease_token="t", lease_until=past
    )

    ids = import_batches_recover()

    assert ids == queued == [stopped.pk, handed_over_lost.pk, lost_task.pk]


def test_the_recovery_schedule_exists_after_migrate(db):
    from django_q.models import Schedule

    schedule = Schedule.objects.get(name=IMPORT_RECOVERY_SCHEDULE)
    assert schedule.func == "leads.tasks.import_batches_recover"
    assert schedule.schedule_type == Schedule.MINUTES and schedule.minutes == 1
    assert schedule.repeats == -1


# --- time slices -----------------------------------------------------------------------------------


def test_with_a_tiny_slice_an_import_completes_across_several_tasks_with_exact_counts(
    campaign, lead_file, settings, django_capture_on_commit_callbacks
):
    _prepare(campaign)
    settings.AICMO_IMPORT_SLICE_SECONDS = 0  # every chunk ends its slice
    with django_capture_on_commit_callbacks(execute=True):
        batch = import_batch_create(
            campaign=campaign, source_path=lead_file, file_name="list.csv", actor="op", source="Q4"
        )

    batch.refresh_from_db()
    assert batch.slices == 4 and batch.resumes == 0  # 14 rows, 4 per chunk
    assert_same_import(batch, campaign, lead_file)


def test_each_task_runs_one_slice_and_queues_the_next_on_a_real_cluster(
    campaign, lead_file, settings, monkeypatch
):
    _prepare(campaign)
    batch = _pending(campaign, lead_file, monkeypatch)
    settings.AICMO_IMPORT_SLICE_SECONDS = 0
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "sync": False}
    queued: list[int] = []
    monkeypatch.setattr(runs, "import_batch_queue", queued.append)

    seen = []
    while len(queued) < 10:
        assert tasks.import_batch_run(batch.pk, chunking=SMALL) is True
        batch.refresh_from_db()
        seen.append((batch.rows_done, batch.state, batch.lease_token))
        if batch.state == BatchState.DONE:
            break
        assert batch.run_status == "Running (queued to continue with the next rows)"
        # A duplicate delivery of the same continuation finds the batch claimed or done.
        assert queued[-1] == batch.pk

    assert seen == [
        (4, "running", ""),
        (8, "running", ""),
        (12, "running", ""),
        (14, "done", ""),
    ]
    assert len(queued) == 3 and tasks.import_batch_run(batch.pk, chunking=SMALL) is False
    assert_same_import(batch, campaign, lead_file)


def test_a_slice_is_not_ended_after_the_last_chunk(campaign, write_csv, settings, monkeypatch):
    path = write_csv("Email\n" + "".join(f"p{i}@acme.example\n" for i in range(8)))
    batch = _pending(campaign, path, monkeypatch)
    settings.AICMO_IMPORT_SLICE_SECONDS = 0
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "sync": False}
    queued: list[int] = []
    monkeypatch.setattr(runs, "import_batch_queue", queued.append)

    tasks.import_batch_run(batch.pk, chunking=SMALL)
    tasks.import_batch_run(batch.pk, chunking=SMALL)

    batch.refresh_from_db()
    assert batch.state == BatchState.DONE and batch.slices == 2 and queued == [batch.pk]


# --- by hand: the command and the admin ------------------------------------------------------------


def leads_cmd(*args) -> str:
    out = io.StringIO()
    call_command("leads", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_leads_resume_finishes_an_interrupted_import_and_is_audited(
    campaign, lead_file, monkeypatch
):
    _prepare(campaign)
    batch = _interrupted(campaign, lead_file, monkeypatch)

    # The command takes no chunk size: it resumes the other ten rows as one production chunk.
    text = leads_cmd("--actor", "ops", "resume", str(batch.pk), "--reason", "worker OOM")

    assert text.startswith(f"Import #{batch.pk}: done (14 of 14 rows done; resumed 1 time(s)).")
    event = AuditEvent.objects.get(action="leads.import_resume")
    assert event.entity_id == str(batch.pk) and event.actor == "cli:ops"
    assert event.reason == "worker OOM" and event.after["rows_done"] == 4
    assert_same_import(batch, campaign, lead_file)


def test_leads_resume_refuses_with_one_line_messages(campaign, lead_file, monkeypatch):
    batch = _pending(campaign, lead_file, monkeypatch)
    runs.import_batch_claim(batch.pk)
    with pytest.raises(CommandError, match=rf"Import #{batch.pk} is still running"):
        leads_cmd("resume", str(batch.pk))
    with pytest.raises(CommandError, match="ImportBatch matching query does not exist"):
        leads_cmd("resume", "999999")
    done = ImportBatchFactory(campaign=campaign, state="done")
    with pytest.raises(CommandError, match="has finished; there is nothing to resume"):
        leads_cmd("resume", str(done.pk))
    failed = ImportBatchFactory(campaign=campaign, state="failed", error="No email column.")
    with pytest.raises(CommandError, match=r"cannot be resumed \(No email column.\)"):
        leads_cmd("resume", str(failed.pk))
    assert not AuditEvent.objects.filter(action="leads.import_resume").exists()


def test_leads_resume_of_an_import_whose_upload_is_gone_fails_with_the_cause(
    campaign, lead_file, monkeypatch
):
    batch = _interrupted(campaign, lead_file, monkeypatch)
    Path(batch.stored_path).unlink()
    with pytest.raises(CommandError, match="stopped at row 4 of 14 and cannot be resumed"):
        leads_cmd("resume", str(batch.pk))


def test_admin_resume_asks_for_confirmation_then_resumes_and_audits(
    client, operator, campaign, lead_file, monkeypatch, django_capture_on_commit_callbacks
):
    _prepare(campaign)
    batch = _interrupted(campaign, lead_file, monkeypatch)
    client.force_login(operator)
    page = client.get(reverse("admin:leads_importbatch_change", args=[batch.pk]))
    url = reverse("admin:leads_importbatch_operation", args=[batch.pk, "resume"])
    body = page.content.decode()
    assert url in body and "Interrupted: its worker stopped" in body

    confirm = client.get(url)
    assert confirm.status_code == 200 and "Resume import: are you sure?" in confirm.content.decode()
    assert "4 of 14 rows done" in confirm.content.decode()
    batch.refresh_from_db()
    assert batch.state == BatchState.RUNNING  # a GET changes nothing

    with django_capture_on_commit_callbacks(execute=True) as queued:
        response = client.post(url, {"post": "yes", "reason": "worker restarted"})

    assert response.status_code == 302 and len(queued) == 1  # queued once the audit committed
    batch.refresh_from_db()
    assert batch.state == BatchState.DONE and batch.resumes == 1
    event = AuditEvent.objects.get(action="leads.import_resume")
    assert event.actor == operator.username and event.reason == "worker restarted"
    assert_same_import(batch, campaign, lead_file)


def test_admin_resume_of_a_live_import_is_refused_and_offers_no_button(
    client, operator, campaign, lead_file, monkeypatch
):
    batch = _pending(campaign, lead_file, monkeypatch)
    runs.import_batch_claim(batch.pk)
    client.force_login(operator)
    url = reverse("admin:leads_importbatch_operation", args=[batch.pk, "resume"])
    page = client.get(reverse("admin:leads_importbatch_change", args=[batch.pk]))
    assert url not in page.content.decode()

    response = client.post(url, {"post": "yes"}, follow=True)

    assert "is still running (row 0 of 14" in response.content.decode()
    batch.refresh_from_db()
    assert batch.state == BatchState.RUNNING and batch.rows_done == 0


def test_admin_resume_is_scoped_by_venture_and_needs_import_permission(
    client, operator, viewer, other_venture_campaign, campaign, lead_file, monkeypatch
):
    theirs = _interrupted(other_venture_campaign, lead_file, monkeypatch)
    client.force_login(operator)
    url = reverse("admin:leads_importbatch_operation", args=[theirs.pk, "resume"])
    assert client.post(url, {"post": "yes"}).status_code == 404
    assert client.get(url).status_code == 404

    ours = _interrupted(campaign, lead_file, monkeypatch)
    client.force_login(viewer)
    url = reverse("admin:leads_importbatch_operation", args=[ours.pk, "resume"])
    assert client.post(url, {"post": "yes"}).status_code == 403
    ours.refresh_from_db()
    assert ours.state == BatchState.RUNNING
    assert not AuditEvent.objects.filter(action="leads.import_resume").exists()


def test_admin_changelist_action_resumes_selected_imports(
    client, operator, campaign, lead_file, monkeypatch, django_capture_on_commit_callbacks
):
    batch = _interrupted(campaign, lead_file, monkeypatch)
    client.force_login(operator)
    changelist = reverse("admin:leads_importbatch_changelist")
    data = {"action": "resume_imports", "_selected_action": [batch.pk]}

    confirm = client.post(changelist, data)
    assert confirm.status_code == 200 and "are you sure?" in confirm.content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        client.post(changelist, {**data, "post": "yes", "reason": ""})

    batch.refresh_from_db()
    assert batch.state == BatchState.DONE and batch.rows_done == 14


def test_progress_endpoint_reports_interruption_resumes_and_last_progress(
    client, operator, campaign, lead_file, monkeypatch
):
    batch = _interrupted(campaign, lead_file, monkeypatch)
    client.force_login(operator)
    url = reverse("admin:leads_importbatch_progress", args=[batch.pk])

    data = client.get(url).json()
    assert data["interrupted"] is True and data["finished"] is False
    assert data["percent"] == 28 and data["rows_done"] == 4
    assert data["state_label"] == "Interrupted: its worker stopped; waiting to be resumed"
    assert 0 <= data["last_progress_seconds_ago"] < 60

    runs.import_batch_claim(batch.pk)
    data = client.get(url).json()
    assert data["interrupted"] is False and data["resumes"] == 1
    assert data["state_label"] == ("Running (resumed after an interruption); resumed 1 time")


def test_resumable_rule_is_the_same_for_a_row_and_for_the_query(campaign):
    now = timezone.now()
    lease = dt.timedelta(seconds=settings.AICMO_IMPORT_LEASE_SECONDS)
    cases = {
        "lapsed": {"state": BatchState.RUNNING, "lease_until": now - dt.timedelta(seconds=1)},
        "leased": {"state": BatchState.RUNNING, "lease_until": now + lease},
        "lost task": {"state": BatchState.PENDING},
        "fresh": {"state": BatchState.PENDING},
        "done": {"state": BatchState.DONE},
        "failed": {"state": BatchState.FAILED},
        "form": {"state": BatchState.RUNNING, "lease_until": now - lease, "channel": "form"},
        "api": {"state": BatchState.PENDING, "channel": "api"},
    }
    batches = {name: ImportBatchFactory(campaign=campaign, **kw) for name, kw in cases.items()}
    ImportBatch.objects.filter(pk__in=[batches["lost task"].pk, batches["api"].pk]).update(
        created_at=now - lease - dt.timedelta(seconds=1)
    )
    rows = {name: ImportBatch.objects.get(pk=b.pk).is_resumable(now) for name, b in batches.items()}
    by_query = set(ImportBatch.objects.resumable(now).values_list("pk", flat=True))

    assert {name for name, yes in rows.items() if yes} == {"lapsed", "lost task"}
    assert by_query == {batches["lapsed"].pk, batches["lost task"].pk}
