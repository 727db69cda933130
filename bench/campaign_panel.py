"""Benchmark: the campaign page's Figures panel (`reporting.panel`) on PostgreSQL, against the
full report's figures, with the same campaign as `bench/report.py`.

    .venv/bin/python bench/campaign_panel.py [--leads 250000] [--runs 5]
        [--database-url postgres://postgres@127.0.0.1:5432/aicmo_cpage_bench]

The campaign is `bench/report_csv.py`'s (LEADS leads, 4 x LEADS messages, about 0.8 feedback
events per message; built once). Run by run: `campaign_glance` (the panel's figures) and its
queries, its chart (`timeline_chart`), `campaign_report`'s figures, and the baseline of
`bench/report.py` (the campaign's messages by state and its leads' events by kind). Prints each
run and the medians.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

from report import BASELINE_SQL, bench_campaign  # bench/ is the script's directory
from report_csv import sizes

DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/aicmo_cpage_bench"


def timed(work):
    """`work()`'s result and the seconds it took."""
    started = time.perf_counter()
    result = work()
    return result, time.perf_counter() - started


def baseline(campaign) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        for sql in BASELINE_SQL:
            cursor.execute(sql, [campaign.pk])
            cursor.fetchall()


def one_run(campaign) -> dict:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from reporting.charts import timeline_chart
    from reporting.figures import campaign_report
    from reporting.panel import DAYS, campaign_glance

    with CaptureQueriesContext(connection) as queries:
        glance, glance_s = timed(lambda: campaign_glance(campaign))
    series = {"Sends": glance.sent_by_day, "Replies": glance.replied_by_day}
    _svg, chart_s = timed(lambda: timeline_chart(glance.days, series, title=f"last {DAYS} days"))
    _report, report_s = timed(lambda: campaign_report(campaign))
    _none, baseline_s = timed(lambda: baseline(campaign))
    names = ("glance_s", "chart_s", "report_s", "baseline_s")
    times = dict(zip(names, (glance_s, chart_s, report_s, baseline_s), strict=True))
    return {**times, "queries": len(queries.captured_queries), "load": os.getloadavg()[0]}


def shown(n: int, run: dict) -> dict:
    """`run`, printed as it comes."""
    print(
        f"run {n + 1}: panel figures {run['glance_s']:.3f} s ({run['queries']} queries), "
        f"chart {run['chart_s']:.3f} s; full report figures {run['report_s']:.3f} s; "
        f"baseline scans {run['baseline_s']:.3f} s; load average {run['load']:.1f}",
        flush=True,
    )
    return run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for flag, kind, default in (("--leads", int, 250_000), ("--runs", int, 5),
                                ("--database-url", str, DEFAULT_DB)):  # fmt: skip
        parser.add_argument(flag, type=kind, default=default)
    args = parser.parse_args()

    campaign = bench_campaign(args.database_url, args.leads)
    print(f"campaign: {sizes(campaign)}", flush=True)
    runs = [shown(n, one_run(campaign)) for n in range(args.runs)]
    keys = ("glance_s", "chart_s", "report_s", "baseline_s")
    med = {k: statistics.median(r[k] for r in runs) for k in keys}
    print(
        f"median of {args.runs}: panel figures {med['glance_s']:.3f} s, chart "
        f"{med['chart_s']:.3f} s, full report figures {med['report_s']:.3f} s, baseline "
        f"{med['baseline_s']:.3f} s (panel / baseline {med['glance_s'] / med['baseline_s']:.2f}, "
        f"panel / report {med['glance_s'] / med['report_s']:.2f})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
