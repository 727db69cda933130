"""Benchmark: what the check after a template save costs, with a million leads on PostgreSQL.

    .venv/bin/python bench/template_save.py [--rows 1000000] [--repeat 15] [--json]
        [--database-url postgres://postgres@127.0.0.1:5432/aicmo_bench_admin_leads]

Uses bench/admin_leads.py's data (ROWS leads over four campaigns, loaded once). An Operator
saves a template through the admin's change form (the subject changes every time, so each
save writes a new version), REPEAT times after one warm-up, in two cases measured in the same
run and alternating: the template's campaign is a draft (baseline: the save checks nothing) and the same
campaign is running (the save renders the template for its first SAVE_CHECK_SAMPLE active
leads and counts them all). Prints the median and p90 request time and the ratio of medians.
"""

from __future__ import annotations

import html
import json
import re
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from admin_leads import parse_args, prepare

SUBJECT = "{{ icebreaker }}, {{ company }}, round %d?"
BODY = "Hi {{ first_name }}, {{ icebreaker }}.\n{{ unsubscribe_url }}"


def form(template, n: int) -> dict:
    return {
        "venture": template.venture_id,
        "campaign": template.campaign_id,
        "channel": "email",
        "name": template.name,
        "slug": template.slug,
        "is_active": "on",
        "narrative_angle": "",
        "variant_label": "",
        "subject": SUBJECT % n,
        "body_text": BODY,
        "body_html": "",
        "versions-TOTAL_FORMS": "0",
        "versions-INITIAL_FORMS": "0",
        "versions-MIN_NUM_FORMS": "0",
        "versions-MAX_NUM_FORMS": "1000",
    }


def save(client, url: str, template, n: int) -> tuple[float, str]:
    """One save through the change form: its time in ms and the warning it showed."""
    started = time.perf_counter()
    response = client.post(url, form(template, n), follow=True)
    elapsed = (time.perf_counter() - started) * 1000
    assert response.status_code == 200, response.status_code
    found = re.search(r"This template now blocks [^<]*", html.unescape(response.content.decode()))
    return elapsed, found.group(0) if found else ""


def summary(times: list[float]) -> dict:
    times = sorted(times)
    return {
        "median_ms": round(statistics.median(times), 1),
        "p90_ms": round(times[int(len(times) * 0.9) - 1], 1),
    }


def main() -> int:
    args = parse_args(__doc__.split("\n\n")[0], repeat=15)
    fixtures, _ = prepare(args)
    venture, campaigns, _segments, _batches, _admin, operator = fixtures
    from django.test import Client
    from django.urls import reverse

    from leads.models import Lead
    from templating.models import MessageTemplate
    from templating.services import SAVE_CHECK_SAMPLE, template_save
    from ventures.models import Campaign, CampaignStatus

    campaign = campaigns[0]
    template = MessageTemplate.objects.filter(campaign=campaign, slug="bench-save").first()
    if template is None:
        template = MessageTemplate(
            venture=venture, campaign=campaign, name="Bench save", slug="bench-save",
            subject=SUBJECT % 0, body_text=BODY,
        )  # fmt: skip
        template_save(template=template, actor="bench")
    client = Client()
    client.force_login(operator)
    url = reverse("admin:templating_messagetemplate_change", args=[template.pk])
    active = Lead.objects.filter(campaign=campaign, status="active").count()

    # The two cases alternate, so that the machine's other load weighs on both alike.
    times: dict[str, list[float]] = {CampaignStatus.DRAFT: [], CampaignStatus.RUNNING: []}
    warnings: dict[str, str] = {}
    round_base = int(time.time())  # a subject no earlier run saved: each save is a new version
    for n in range(args.repeat + 1):
        for i, status in enumerate(times):
            Campaign.objects.filter(pk=campaign.pk).update(status=status)
            elapsed, warnings[status] = save(client, url, template, round_base + 2 * n + i)
            if n:  # the first round is a warm-up
                times[status].append(elapsed)
    Campaign.objects.filter(pk=campaign.pk).update(status=CampaignStatus.DRAFT)
    results = {status: summary(values) for status, values in times.items()}
    assert warnings["draft"] == "" and warnings["running"], warnings
    results["running"]["warning"] = warnings["running"][:160]
    ratio = results["running"]["median_ms"] / results["draft"]["median_ms"]
    report = {
        "rows": args.rows,
        "campaign_active_leads": active,
        "checked_leads": SAVE_CHECK_SAMPLE,
        "repeat": args.repeat,
        "save_draft_campaign": results["draft"],
        "save_running_campaign": results["running"],
        "ratio_of_medians": round(ratio, 2),
    }
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"{args.rows:,} leads; the campaign has {active:,} active, {SAVE_CHECK_SAMPLE} checked")
    for label, key in (("draft (no check)", "draft"), ("running (checked)", "running")):
        r = results[key]
        print(f"  save, campaign {label}: median {r['median_ms']} ms, p90 {r['p90_ms']} ms")
    print(f"  ratio of medians: {ratio:.2f}")
    print(f"  warning: {results['running']['warning']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
