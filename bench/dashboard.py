"""Benchmark: the operator's dashboard (the admin's front page) on a million messages.

    .venv/bin/python bench/dashboard.py [--leads 250000] [--runs 5] [--json]
        [--database-url postgres://postgres@127.0.0.1:5432/aicmo_bench_report_csv]

Uses the CSV export benchmark's campaign (`bench/report_csv.py`: LEADS leads, 4 x LEADS
outbound messages, 1,000,000 by default, about 0.8 feedback events per message, built once and
shared with `bench/report.py`). Run by run, as a superuser sees it:
- `aicmo_site.dashboard.dashboard_for` (every figure of the page), and its queries;
- the baseline, in the same run: PostgreSQL counting the campaign's messages by state
  (`SELECT state, count(*) ... GROUP BY state`), the one scan a "messages by state" panel makes.
Prints each run and the medians (JSON with --json).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

from report import bench_campaign  # bench/ is the script's directory
from report_csv import DEFAULT_DB, sizes

BASELINE_SQL = (
    "SELECT state, count(*) FROM outreach_outboundmessage WHERE campaign_id = %s GROUP BY state"
)


def one_run(campaign) -> dict:
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import RequestFactory
    from django.test.utils import CaptureQueriesContext

    from aicmo_site.dashboard import dashboard_for

    request = RequestFactory().get("/admin/")
    request.user = get_user_model()(username="bench", is_superuser=True, is_staff=True)
    started = time.perf_counter()
    with CaptureQueriesContext(connection) as queries:
        board = dashboard_for(request)
    dashboard = time.perf_counter() - started
    mark = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(BASELINE_SQL, [campaign.pk])
        cursor.fetchall()
    baseline = time.perf_counter() - mark
    row = next(c for c in board.campaigns if c.campaign.pk == campaign.pk)
    return {
        "dashboard_s": dashboard,
        "queries": len(queries.captured_queries),
        "baseline_s": baseline,
        "queued": row.queued,
        "unknown": row.unknown,
        "campaigns": len(board.campaigns),
        "load": os.getloadavg()[0],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--leads", type=int, default=250_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_DB))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    campaign = bench_campaign(args.database_url, args.leads)
    print(f"campaign: {sizes(campaign)}", flush=True)
    runs = []
    for n in range(args.runs):
        run = one_run(campaign)
        runs.append(run)
        print(
            f"run {n + 1}: dashboard {run['dashboard_s']:.3f} s ({run['queries']} queries, "
            f"{run['campaigns']} campaigns, {run['queued']:,} queued); baseline scan "
            f"{run['baseline_s']:.3f} s; load average {run['load']:.1f}",
            flush=True,
        )
    medians = {k: statistics.median(r[k] for r in runs) for k in ("dashboard_s", "baseline_s")}
    medians["queries"] = statistics.median(r["queries"] for r in runs)
    medians["ratio"] = medians["dashboard_s"] / medians["baseline_s"]
    if args.json:
        print(json.dumps({"runs": runs, "medians": medians}, indent=2))
    else:
        print(
            f"median of {args.runs}: dashboard {medians['dashboard_s']:.3f} s, "
            f"{medians['queries']:.0f} queries; baseline scan {medians['baseline_s']:.3f} s "
            f"(dashboard / baseline {medians['ratio']:.2f})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
