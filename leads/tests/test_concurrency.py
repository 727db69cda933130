"""Two real processes importing overlapping lists into one campaign (PostgreSQL only)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest
from django.db import connection
from django.db.models import Count

from leads.models import BatchState, ImportBatch, Lead
from leads.samples import APOLLO_HEADERS, apollo_rows
from tests.factories import CampaignFactory
from tests.proc import REPO, clean_env


def _database_url() -> str:
    s = connection.settings_dict
    auth = s["USER"] + (f":{s['PASSWORD']}" if s["PASSWORD"] else "")
    return f"postgres://{auth}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


def _write(path, rows):
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(APOLLO_HEADERS)
        writer.writerows(rows)
    return path


def _import_concurrently(campaign, *paths, extra=()):
    env = clean_env(DATABASE_URL=_database_url())
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                str(REPO / "manage.py"),
                "leads",
                "--json",
                "import",
                campaign.slug,
                str(path),
                *extra,
            ],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for path in paths
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-2000:]
        results.append(json.loads(out))
    return results


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_processes_importing_overlapping_lists_leave_no_duplicate_leads(tmp_path):
    campaign = CampaignFactory()
    rows = list(apollo_rows(30_000, seed=5))
    first = _write(tmp_path / "first.csv", rows[:20_000])
    second = _write(tmp_path / "second.csv", list(reversed(rows[10_000:])))

    results = _import_concurrently(campaign, first, second)

    leads = Lead.objects.filter(campaign=campaign)
    assert leads.count() == 30_000
    assert not leads.values("email_key").annotate(n=Count("id")).filter(n__gt=1).exists()
    assert sum(r["counts"]["created"] for r in results) == 30_000
    for r in results:
        c = r["counts"]
        assert c["created"] + c["duplicates_in_campaign"] == 20_000
    assert set(ImportBatch.objects.values_list("state", flat=True)) == {BatchState.DONE}


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_same_file_forced_twice_at_once_is_imported_once(tmp_path):
    campaign = CampaignFactory()
    path = _write(tmp_path / "same.csv", list(apollo_rows(12_000, seed=9)))

    results = _import_concurrently(campaign, path, path, extra=["--force"])

    assert Lead.objects.filter(campaign=campaign).count() == 12_000
    assert sum(r["counts"]["created"] for r in results) == 12_000
    assert sum(r["counts"]["duplicates_in_campaign"] for r in results) == 12_000
