"""Benchmark: a campaign report's figures and its HTML and Markdown on PostgreSQL.

    .venv/bin/python bench/report.py [--leads 250000] [--runs 5] [--json] [--slowest N]
        [--parallel 0,2]
        [--database-url postgres://postgres@127.0.0.1:5432/aicmo_bench_report_csv]

Uses the CSV export benchmark's campaign (`bench/report_csv.py`: LEADS leads, 4 x LEADS
outbound messages, 1,000,000 by default, with about 0.8 feedback events per message, built
once and shared by both benchmarks). Then, run by run:
- `campaign_report` (every figure of the report), and the queries it runs;
- rendering its HTML (with the three SVG charts) and its Markdown;
- the baseline, in the same run: PostgreSQL counting the campaign's messages by state and the
  campaign's leads' events by kind (`SELECT state, count(*) ... GROUP BY state`, and the same
  over the events joined to the leads): the two scans any report must make at least.
Prints each run and the medians (JSON with --json). `--parallel 0,2` alternates PostgreSQL's
parallel workers per query run by run (RUNS runs of each) and prints each setting's medians. Target (issue 13): the HTML/Markdown
report in at most 1.5 s with a small, fixed number of queries.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

from admin_leads import create_database  # bench/ is the script's directory
from report_csv import DEFAULT_DB, audit_build, build, env_of, fixtures, sizes

BASELINE_SQL = (
    "SELECT state, count(*) FROM outreach_outboundmessage WHERE campaign_id = %s GROUP BY state",
    """SELECT e.kind, count(*) FROM outreach_feedbackevent e JOIN leads_lead l ON l.id = e.lead_id
       WHERE l.campaign_id = %s GROUP BY e.kind""",
)


def versions_set(campaign) -> None:
    """The CSV benchmark's messages name their template but not its version; a real send
    names both (narrative memory reads the version), so this sets each message's version to
    its template's (once)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            """UPDATE outreach_outboundmessage m SET template_version_id = v.id
               FROM templating_messagetemplateversion v
               WHERE v.template_id = m.template_id AND m.template_version_id IS NULL
                 AND m.campaign_id = %s""",
            [campaign.pk],
        )
        if cursor.rowcount:
            cursor.execute("VACUUM ANALYZE outreach_outboundmessage")


def bench_campaign(database_url: str, leads: int):
    """The CSV benchmark's campaign in `database_url` (created, migrated and built once)."""
    create_database(database_url)
    os.environ.update(env_of(database_url))
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    settings.DEBUG = False  # CaptureQueriesContext records queries anyway
    call_command("migrate", verbosity=0, interactive=False)
    campaign = fixtures()
    build(campaign, leads)
    audit_build(campaign)
    versions_set(campaign)
    return campaign


def one_run(campaign) -> dict:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from reporting.figures import campaign_report
    from reporting.render import render_html, render_markdown

    started = time.perf_counter()
    with CaptureQueriesContext(connection) as queries:
        report = campaign_report(campaign)
    figures = time.perf_counter() - started
    mark = time.perf_counter()
    html = render_html(report)
    html_s = time.perf_counter() - mark
    mark = time.perf_counter()
    markdown = render_markdown(report)
    md_s = time.perf_counter() - mark
    mark = time.perf_counter()
    with connection.cursor() as cursor:
        for sql in BASELINE_SQL:
            cursor.execute(sql, [campaign.pk])
            cursor.fetchall()
    baseline = time.perf_counter() - mark
    return {
        "figures_s": figures,
        "html_s": figures + html_s,
        "markdown_s": figures + md_s,
        "render_html_s": html_s,
        "render_markdown_s": md_s,
        "queries": len(queries.captured_queries),
        "html_bytes": len(html.encode()),
        "markdown_bytes": len(markdown.encode()),
        "baseline_s": baseline,
        "sent_to": report.funnel["sent"],
        "load": os.getloadavg()[0],
        "slowest": sorted(
            ((float(q["time"]), " ".join(q["sql"].split())) for q in queries.captured_queries),
            reverse=True,
        ),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--leads", type=int, default=250_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_DB))
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--parallel",
        help="Comma-separated max_parallel_workers_per_gather values to alternate run by run "
        "(default: the report's own setting).",
    )
    parser.add_argument(
        "--slowest", type=int, default=0, help="Print each run's N slowest queries and their time."
    )
    args = parser.parse_args()

    campaign = bench_campaign(args.database_url, args.leads)
    counts = sizes(campaign)
    print(f"campaign: {counts}", flush=True)
    from reporting import figures

    settings = [None] if not args.parallel else args.parallel.split(",")
    runs = []
    for n in range(args.runs * len(settings)):
        workers = settings[n % len(settings)]
        if workers is not None:
            figures.REPORT_PG_SETTINGS["max_parallel_workers_per_gather"] = workers
        run = one_run(campaign)
        run["parallel"] = figures.REPORT_PG_SETTINGS["max_parallel_workers_per_gather"]
        runs.append(run)
        print(
            f"run {n + 1} (parallel workers {run['parallel']}): figures {run['figures_s']:.3f} s ({run['queries']} queries), "
            f"HTML {run['html_s']:.3f} s ({run['html_bytes'] / 1024:.0f} KiB), Markdown "
            f"{run['markdown_s']:.3f} s; baseline scans {run['baseline_s']:.3f} s; "
            f"load average {run['load']:.1f}",
            flush=True,
        )
        for seconds, sql in run["slowest"][: args.slowest]:
            print(f"    {seconds:.3f} s  {sql[:160]}", flush=True)
    keys = ("figures_s", "html_s", "markdown_s", "render_html_s", "render_markdown_s", "baseline_s")
    if len(settings) > 1:
        for workers in settings:
            mine = [r for r in runs if r["parallel"] == workers]
            print(
                f"parallel workers {workers}: median HTML "
                f"{statistics.median(r['html_s'] for r in mine):.3f} s, baseline "
                f"{statistics.median(r['baseline_s'] for r in mine):.3f} s"
            )
    medians = {k: statistics.median(r[k] for r in runs) for k in keys}
    medians["queries"] = statistics.median(r["queries"] for r in runs)
    medians["baseline_ratio_html"] = medians["baseline_s"] / medians["html_s"]
    for run in runs:
        del run["slowest"]
    summary = {"sizes": counts, "runs": runs, "medians": medians}
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(
            f"median of {args.runs}: figures {medians['figures_s']:.3f} s, HTML "
            f"{medians['html_s']:.3f} s, Markdown {medians['markdown_s']:.3f} s, "
            f"{medians['queries']:.0f} queries; baseline scans {medians['baseline_s']:.3f} s "
            f"(ratio {medians['baseline_ratio_html']:.2f})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
