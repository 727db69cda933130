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
from tests.proc import REPO, clean_env, running_database_url


def _write(path, rows):
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(APOLLO_HEADERS)
        writer.writerows(rows)
    return path


def _import_concurrently(campaign, *paths, extra=()):
    env = clean_env(DATABASE_URL=running_database_url())
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


@pytest.mark.postgres
def test_a_copy_that_collides_after_the_lookup_falls_back_and_merges_the_rows(
    run_import, write_csv, campaign, monkeypatch
):
    from leads import import_sql, importing

    run_import(write_csv("Email,First Name\na@x.example,\nb@x.example,Bee\n"))
    # The lookup misses the campaign's two leads, as if another import had inserted them just
    # after it: the direct COPY collides with the unique index and the chunk takes the slow way.
    real = import_sql.fetch_people
    monkeypatch.setattr(importing, "fetch_people", lambda v, c, h: ({}, real(v, c, h)[1]))
    fallbacks = []
    staged = import_sql.insert_leads_staged
    monkeypatch.setattr(
        importing, "insert_leads_staged", lambda *a: fallbacks.append(1) or staged(*a)
    )

    outcome = run_import(
        write_csv("Email,First Name\na@x.example,Ann\nb@x.example,Bob\nc@x.example,Cee\n")
    )

    assert fallbacks == [1]
    c = outcome.counts
    assert (c["created"], c["duplicates_in_campaign"], c["updated"], c["unchanged"]) == (1, 2, 1, 1)
    names = dict(Lead.objects.filter(campaign=campaign).values_list("email_key", "first_name"))
    assert names == {"a@x.example": "Ann", "b@x.example": "Bee", "c@x.example": "Cee"}


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_an_erasure_waits_for_the_import_chunk_being_written_and_holds_the_next_back():
    import time

    import psycopg

    from tests.proc import manage

    campaign = CampaignFactory()
    env = clean_env(DATABASE_URL=running_database_url())
    url = running_database_url()
    with psycopg.connect(url) as chunk:
        # A chunk in flight: it took the lock an import chunk takes first.
        chunk.execute("LOCK TABLE leads_lead IN ROW EXCLUSIVE MODE")
        erasure = subprocess.Popen(
            [sys.executable, str(REPO / "manage.py"), "leads", "erase", "ann@x.example"],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        waiting = False
        for _ in range(100):
            row = chunk.execute(
                "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                "WHERE c.relname = 'leads_lead' AND NOT l.granted AND l.mode = %s",
                ["ShareRowExclusiveLock"],
            ).fetchone()
            if row[0]:
                waiting = True
                break
            time.sleep(0.1)
        assert waiting and erasure.poll() is None
        chunk.rollback()
    _, err = erasure.communicate(timeout=60)
    assert erasure.returncode == 0, err
    # Done: the next chunk of an import now finds the person suppressed.
    path = REPO / "var" / "test-erasure.csv"
    path.parent.mkdir(exist_ok=True)
    path.write_text("Email\nann@x.example\nbob@x.example\n")
    try:
        result = manage("leads", "--json", "import", campaign.slug, str(path), env=env)
    finally:
        path.unlink()
    counts = json.loads(result.stdout)["counts"]
    assert counts["suppressed"] == 1 and counts["created"] == 1


@pytest.mark.postgres
def test_lookups_by_email_key_probe_the_unique_index_even_with_stale_statistics(campaign):
    from django.test.utils import CaptureQueriesContext

    from leads import import_sql

    # Statistics taken while the campaign was empty, as in the middle of a big first import:
    # a campaign-first index then looks as good, and would be scanned per key (53 s a chunk).
    with connection.cursor() as cur:
        cur.execute("ANALYZE leads_lead")
    Lead.objects.bulk_create(
        Lead(campaign=campaign, venture=campaign.venture, email_key=f"p{i}@x.example")
        for i in range(2000)
    )
    keys = [f"p{i}@x.example" for i in range(10)]
    with CaptureQueriesContext(connection) as queries:
        found = import_sql.fetch_existing(campaign.pk, keys)
    assert sorted(found) == sorted(keys)
    with connection.cursor() as cur:
        cur.execute("EXPLAIN " + queries.captured_queries[-1]["sql"])
        plan = "\n".join(row[0] for row in cur.fetchall())
    assert "Index Scan using uniq_lead_campaign_email_key" in plan, plan
