"""Background imports across real processes on PostgreSQL: a worker SIGKILLed in the middle of
an import, and claimers racing for one batch."""

from __future__ import annotations

import csv
import datetime as dt
import os
import signal
import subprocess
import sys
import time
from itertools import accumulate, chain, islice, repeat

import pytest
from django.utils import timezone

from leads.importing import DEFAULT_CHUNKING
from leads.models import BatchState, ImportBatch
from leads.samples import APOLLO_HEADERS, apollo_rows
from leads.services import imports, runs
from leads.services.imports import import_batch_create
from leads.services.runs import import_batch_resume, import_batch_run_now
from leads.tests.outcomes import issues_of, leads_of
from tests.factories import CampaignFactory, VentureFactory
from tests.proc import REPO, clean_env, running_database_url
from ventures.services import DomainError

ROWS = 40_000  # four chunks of 10,000


def _write_file(path):
    rows = list(apollo_rows(ROWS - 1_000, seed=11))
    # Repeats of earlier people in later chunks (duplicates within the file across a resume)
    # and rows with no usable email address.
    rows += rows[:900]
    rows += [[*r[:5], "not-an-email", *r[6:]] for r in rows[1000:1100]]
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(APOLLO_HEADERS)
        writer.writerows(rows)
    return path


def _pending(campaign, path, monkeypatch) -> ImportBatch:
    with monkeypatch.context() as patch:
        patch.setattr(runs, "import_batch_queue", lambda batch_id: None)  # started by hand below
        return import_batch_create(
            campaign=campaign, source_path=path, file_name=path.name, actor="op", source="list"
        )


def _worker(batch_id: int) -> subprocess.Popen:
    """A task-cluster worker running the import task, as django-q2 would."""
    code = (
        "import django; django.setup()\n"
        "from leads import tasks\n"
        f"tasks.import_batch_run({batch_id})\n"
    )
    return subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=REPO,
        env=clean_env(
            DATABASE_URL=running_database_url(), AICMO_ARTIFACT_DIR=os.environ["AICMO_ARTIFACT_DIR"]
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_rows(batch_id: int, proc: subprocess.Popen, at_least: int) -> int:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        done = ImportBatch.objects.filter(pk=batch_id).values_list("rows_done", flat=True)[0]
        if done >= at_least:
            return done
        if proc.poll() is not None:
            pytest.fail(f"the worker ended early: {proc.stderr.read()[-2000:]}")
        time.sleep(0.02)
    pytest.fail("the worker committed no chunk in 120 s")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_an_import_whose_worker_is_killed_is_resumed_to_the_result_of_a_clean_import(
    tmp_path, monkeypatch
):
    path = _write_file(tmp_path / "apollo.csv")
    campaign = CampaignFactory()
    batch = _pending(campaign, path, monkeypatch)
    worker = _worker(batch.pk)

    done = _wait_for_rows(batch.pk, worker, at_least=10_000)
    # While the worker lives, nobody else can take its batch.
    assert import_batch_run_now(batch_id=batch.pk) is False
    with pytest.raises(DomainError, match="is still running"):
        import_batch_resume(batch=batch, actor="op")
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=30)

    batch.refresh_from_db()
    assert worker.returncode == -signal.SIGKILL
    assert batch.state == BatchState.RUNNING and done <= batch.rows_done < ROWS
    # Whole chunks only: counters commit with their rows (the first chunks are the ramp's).
    sizes = chain(DEFAULT_CHUNKING.ramp(), repeat(DEFAULT_CHUNKING.rows))
    assert batch.rows_done in set(accumulate(islice(sizes, 200)))
    assert runs.import_batches_recover() == []  # the lease has not lapsed yet

    # The lease period passes without progress: the recovery schedule resumes the import.
    ImportBatch.objects.filter(pk=batch.pk).update(
        lease_until=timezone.now() - dt.timedelta(seconds=1)
    )
    assert runs.import_batches_recover() == [batch.pk]  # runs inline (AICMO_Q_SYNC)

    batch.refresh_from_db()
    assert batch.state == BatchState.DONE and batch.resumes == 1 and batch.rows_done == ROWS
    clean_campaign = CampaignFactory(venture=VentureFactory(name="Clean", slug="clean"))
    clean = ImportBatch.objects.get(
        pk=imports.lead_import(
            campaign=clean_campaign, path=path, actor="test", source="list"
        ).batch_id
    )
    assert batch.counts() == clean.counts()
    assert clean.duplicates_in_file == 900 and clean.invalid == 100
    assert leads_of(campaign) == leads_of(clean_campaign)
    assert issues_of(batch.pk) == issues_of(clean.pk)


CLAIM = """
import django; django.setup()
import sys, time
from leads.services import runs
start = float(sys.argv[1])
while time.time() < start:
    time.sleep(0.001)
claim = runs.import_batch_claim({batch_id})
print(claim[1] if claim else "-")
"""


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_of_claimers_racing_for_one_batch_exactly_one_wins(tmp_path, monkeypatch):
    path = tmp_path / "small.csv"
    path.write_text("Email\n" + "".join(f"p{i}@acme.example\n" for i in range(5)))
    batch = _pending(CampaignFactory(), path, monkeypatch)
    env = clean_env(DATABASE_URL=running_database_url())
    start = str(time.time() + 3)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CLAIM.format(batch_id=batch.pk), start],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-2000:]
        results.append(out.strip())

    winners = [r for r in results if r != "-"]
    assert len(winners) == 1
    batch.refresh_from_db()
    assert batch.lease_token == winners[0] and batch.slices == 1 and batch.resumes == 0
