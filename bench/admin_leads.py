"""Benchmark: the lead changelist of the admin with a million leads on PostgreSQL.

    .venv/bin/python bench/admin_leads.py [--rows 1000000] [--repeat 30] [--json]
        [--database-url postgres://postgres@127.0.0.1:5432/aicmo_bench_admin_leads]

Loads ROWS leads (once; re-runs reuse them) with one INSERT ... SELECT over generate_series,
then requests the lead changelist through Django's test client, as an Administrator and as an
Operator (member of the venture), unfiltered, filtered by campaign, by campaign and consent,
searched by email prefix, by last name, company, first name and last name, and by a term
that matches nothing (the search's worst case). For each page it prints the median and p90 server time over
REPEAT requests (after two warm-up requests) and the number of SQL queries of one request.
Targets (issue 3): median <= 150 ms and a fixed number of queries per page.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/aicmo_bench_admin_leads"
CAMPAIGNS = 4
SEGMENTS = 5
BATCHES = 40


def setup_django(database_url: str) -> None:
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("SECRET_KEY", "bench-only-" + "k3Jf9Qm2Lx7Rt5Vw8Zy1Bn4Cp6Dh0Gs" * 2)
    os.environ["DEBUG"] = "0"
    os.environ["SECURE_SSL_REDIRECT"] = "0"
    os.environ["ALLOWED_HOSTS"] = "testserver,localhost"
    os.environ["AICMO_ENV_FILE"] = os.devnull
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aicmo_site.settings")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def create_database(database_url: str) -> None:
    """Create the bench database if it does not exist (connecting to `postgres`)."""
    import psycopg

    base, _, name = database_url.rpartition("/")
    with psycopg.connect(base + "/postgres", autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')


def ensure_fixtures():
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    from leads.models import ImportBatch
    from ventures.models import Campaign, IcpSegment, Venture, VentureMembership

    venture, _ = Venture.objects.get_or_create(
        slug="bench-venture",
        defaults={"name": "Bench Venture", "owner_email": "owner@bench.example"},
    )
    campaigns = [
        Campaign.objects.get_or_create(
            slug=f"bench-campaign-{i}", defaults={"venture": venture, "name": f"Bench {i}"}
        )[0]
        for i in range(CAMPAIGNS)
    ]
    segments = [
        IcpSegment.objects.get_or_create(
            venture=venture, slug=f"bench-seg-{i}", defaults={"name": f"Segment {i}"}
        )[0]
        for i in range(SEGMENTS)
    ]
    batches = list(ImportBatch.objects.filter(campaign__venture=venture).order_by("pk"))
    for i in range(len(batches), BATCHES):
        batches.append(
            ImportBatch.objects.create(
                campaign=campaigns[i % CAMPAIGNS], file_name=f"bench-{i}.csv", state="done"
            )
        )
    user_model = get_user_model()
    admin_user, _ = user_model.objects.get_or_create(
        username="bench-admin", defaults={"is_staff": True}
    )
    admin_user.groups.add(Group.objects.get(name="Administrator"))
    operator, _ = user_model.objects.get_or_create(
        username="bench-operator", defaults={"is_staff": True}
    )
    operator.groups.add(Group.objects.get(name="Operator"))
    VentureMembership.objects.get_or_create(venture=venture, user=operator)
    return venture, campaigns, segments, batches, admin_user, operator


LOAD_SQL = """
INSERT INTO leads_lead (
    campaign_id, venture_id, status, email, email_key, identity_hash, first_name, last_name,
    title, company, company_domain, website, phone, linkedin_url, city, state, country,
    timezone, industry, company_size, segment_id, consent_status, consent_source,
    custom_fields, source_channel, source_list, source_batch_id, source_row,
    utm_source, utm_medium, utm_campaign, utm_content, fit_score, grade, score_explanation,
    created_at, updated_at
)
SELECT
    (%(campaigns)s::bigint[])[1 + n %% %(ncampaigns)s],
    %(venture)s,
    CASE WHEN n %% 50 = 0 THEN 'suppressed' ELSE 'active' END,
    'Lead' || n || '@company' || (n %% 5000) || '.example',
    'lead' || n || '@company' || (n %% 5000) || '.example',
    md5('email:' || n) || md5('x' || n),
    'First' || (n %% 997), 'Last' || (n %% 1009),
    (ARRAY['VP Sales','Head of Growth','CTO','Founder','Sales Manager'])[1 + n %% 5],
    'Company ' || (n %% 5000), 'company' || (n %% 5000) || '.example', '', '', '',
    'Berlin', '', 'Germany', 'Europe/Berlin', 'software', 10 + n %% 500,
    CASE WHEN n %% 3 = 0 THEN NULL ELSE (%(segments)s::bigint[])[1 + n %% %(nsegments)s] END,
    CASE WHEN n %% 33 = 0 THEN 'dnc' WHEN n %% 7 = 0 THEN 'consented' ELSE 'unknown' END,
    '', '{}'::jsonb,
    CASE WHEN n %% 20 = 0 THEN 'form' WHEN n %% 25 = 0 THEN 'api' ELSE 'import' END,
    'Bench list', (%(batches)s::bigint[])[1 + n %% %(nbatches)s], n,
    '', '', '', '', n %% 101, (ARRAY['A','B','C','D'])[1 + n %% 4], '',
    now() - (n || ' seconds')::interval, now()
FROM generate_series(%(start)s, %(stop)s) AS n
"""


def load_leads(rows: int, venture, campaigns, segments, batches) -> float:
    from django.db import connection

    from leads.models import Lead

    have = Lead.objects.filter(venture=venture).count()
    if have >= rows:
        return 0.0
    started = time.perf_counter()
    params = {
        "campaigns": [c.pk for c in campaigns],
        "ncampaigns": len(campaigns),
        "venture": venture.pk,
        "segments": [s.pk for s in segments],
        "nsegments": len(segments),
        "batches": [b.pk for b in batches],
        "nbatches": len(batches),
    }
    step = 250_000
    with connection.cursor() as cursor:
        for start in range(have + 1, rows + 1, step):
            stop = min(rows, start + step - 1)
            cursor.execute(LOAD_SQL, {**params, "start": start, "stop": stop})
            print(f"  loaded {stop:,} leads", flush=True)
        cursor.execute("ANALYZE leads_lead")
    return time.perf_counter() - started


def measure(client, url: str, params: dict, repeat: int) -> dict:
    from django.db import connection

    for _ in range(2):
        response = client.get(url, params)
        assert response.status_code == 200, (url, params, response.status_code)
    executed: list[str] = []

    def count(execute, sql, params, many, context):
        executed.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(count):
        client.get(url, params)
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        client.get(url, params)
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return {
        "median_ms": round(statistics.median(times), 1),
        "p90_ms": round(times[int(len(times) * 0.9) - 1], 1),
        "queries": len(executed),
    }


def parse_args(description: str, *, repeat: int) -> argparse.Namespace:
    """The options of a bench on these leads: --rows, --repeat, --database-url, --json."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=repeat)
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_DB))
    parser.add_argument("--json", action="store_true")
    return parser.parse_args()


def prepare(args: argparse.Namespace) -> tuple[tuple, float]:
    """Create, set up, migrate and fill the bench database: the fixtures (as ensure_fixtures
    returns them) and how long loading the leads took (0 when reused)."""
    create_database(args.database_url)
    setup_django(args.database_url)
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)
    fixtures = ensure_fixtures()
    venture, campaigns, segments, batches, *_ = fixtures
    return fixtures, load_leads(args.rows, venture, campaigns, segments, batches)


def main() -> int:
    args = parse_args(__doc__.split("\n\n")[0], repeat=30)
    fixtures, load_seconds = prepare(args)
    venture, campaigns, _segments, _batches, admin_user, operator = fixtures
    from django.test import Client
    from django.urls import reverse

    url = reverse("admin:leads_lead_changelist")
    pages = {
        "unfiltered": {},
        "campaign": {"campaign": campaigns[1].pk},
        "campaign+consent": {"campaign": campaigns[1].pk, "consent_status__exact": "consented"},
        "email prefix 'lead12345'": {"q": "lead12345"},
        "email prefix 'lead9'": {"q": "lead9"},
        "last name 'last100'": {"q": "last100"},
        "company 'company 4999'": {"q": "company 4999"},
        "first + last 'first5 last1'": {"q": "first5 last1"},
        "no match 'zzz'": {"q": "zzz"},
        "page 50": {"p": "50"},
    }
    results = []
    for role, user in (("administrator", admin_user), ("operator", operator)):
        client = Client()
        client.force_login(user)
        # Baseline, same run and role: the admin index, which renders the same frame (session,
        # auth, permissions, app list) and touches no lead. Ratios against it cancel out how busy
        # the shared machine is at the moment.
        baseline = measure(client, reverse("admin:index"), {}, args.repeat)
        results.append({"role": role, "page": "baseline: admin index", **baseline, "ratio": 1.0})
        for name, params in pages.items():
            figures = measure(client, url, params, args.repeat)
            ratio = round(figures["median_ms"] / baseline["median_ms"], 1)
            results.append({"role": role, "page": name, **figures, "ratio": ratio})
    from leads.models import Lead

    summary = {
        "leads": Lead.objects.filter(venture=venture).count(),
        "load_seconds": round(load_seconds, 1),
        "repeat": args.repeat,
        "results": results,
    }
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(f"{summary['leads']:,} leads (load took {summary['load_seconds']} s, 0 = reused)")
    print(
        f"{'role':<14} {'page':<30} {'median ms':>10} {'p90 ms':>8} {'x baseline':>10} "
        f"{'queries':>8}"
    )
    for r in results:
        print(
            f"{r['role']:<14} {r['page']:<30} {r['median_ms']:>10} {r['p90_ms']:>8} "
            f"{r['ratio']:>10} {r['queries']:>8}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
