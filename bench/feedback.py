"""Benchmark: ESP feedback through the real webhook endpoint, on PostgreSQL.

    .venv/bin/python bench/feedback.py [--messages 1000000] [--events 100000] [--batch 500]
        [--runs 3] [--servers 2] [--clients 4] [--json]
        [--database-url postgres://postgres@127.0.0.1:5432/aicmo_bench_feedback]

Builds MESSAGES sent first-step emails of one running campaign (leads, enrolments and
messages with INSERT ... SELECT, once; sent over the last 30 days, four mailboxes), each with
the ESP's id and our Message-ID. Then, run by run, with the feedback and its effects reset:

- **feedback**: EVENTS SparkPost tracking events in SparkPost's batch form (a JSON array of
  `msys` events, BATCH a request) posted to `/anymail/sparkpost/tracking/` with the webhook
  secret, to SERVERS `manage.py runserver` processes (DEBUG off, behind a proxy's
  X-Forwarded-Proto) by CLIENTS threads. The mix: 55% deliveries, 26% opens, 10% clicks, 4%
  delays, 3% hard bounces, 1% soft bounces, 0.5% list-unsubscribes, 0.1% spam complaints (each
  bounce, complaint and unsubscribe for a different message). Events per second = EVENTS /
  wall time from the first post to the last answer; every answer must be 200, and afterwards
  every event must be stored once and matched, each hard-bounced lead bounced and suppressed,
  each unsubscriber unsubscribed.
- **replay**: the first batch posted again: nothing may be stored.
- **baseline**: the same rows written by a plain INSERT (psycopg's executemany, which
  pipelines the rows of a batch) with a commit per batch on one connection, into a copy of
  the events table with the same indexes: rows per second, and the ratio of the endpoint's
  rate to it.

Prints each run, then medians and the ratio (JSON with --json).
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import json
import os
import queue
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from admin_leads import create_database  # bench/ is the script's directory
from dispatch import ANALYZE_LEADS, ENROL_SQL, LEADS_SQL, MAILBOXES  # the dispatch benchmark's data

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.proc import clean_env  # noqa: E402

DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/aicmo_bench_feedback"
SLUG = "bench-feedback"
DOMAINS = 2000
SECRET = "hooks:bench-feedback-secret"  # noqa: S105 (the bench's own servers)
MIX = [  # (SparkPost event class, type, share, one per message)
    ("message_event", "delivery", 0.55, False),
    ("track_event", "open", 0.26, False),
    ("track_event", "click", 0.10, False),
    ("message_event", "delay", 0.04, False),
    ("message_event", "bounce:10", 0.03, True),
    ("message_event", "bounce:22", 0.01, True),
    ("unsubscribe_event", "list_unsubscribe", 0.005, True),
    ("message_event", "spam_complaint", 0.001, True),
]

SENT_SQL = """
INSERT INTO outreach_outboundmessage (
    idempotency_key, enrollment_id, lead_id, campaign_id, venture_id, step_id, mailbox_id, kind,
    state, due_at, sent_at, attempts, reason_code, reason, recipient, recipient_domain, subject,
    body_text, body_html, message_id, esp_message_id, in_reply_to, settled_by, lease_token,
    reserved, narrative_choice, created_at, updated_at
)
SELECT 'l' || e.lead_id || '-s' || %(step)s, e.id, e.lead_id, e.campaign_id, %(venture)s,
    %(step)s, e.mailbox_id, 'email', 'sent', s.at, s.at, 1, '', '', l.email,
    split_part(l.email, '@', 2), 'Quick question', 'Hi', '',
    '<b' || e.lead_id || '@bench.example>', 'sp' || e.lead_id, '', '', '', '[]'::jsonb, '{}'::jsonb,
    s.at, s.at
FROM outreach_enrollment e JOIN leads_lead l ON l.id = e.lead_id,
    LATERAL (SELECT now() - (e.lead_id %% 43200) * interval '1 minute' AS at) s
WHERE e.campaign_id = %(campaign)s
"""

RESET_SQL = [
    "DELETE FROM outreach_feedbackevent",
    # The leads' facts as the sends left them: one email each, no event seen.
    "UPDATE outreach_leadfacts SET event_flags = 0 WHERE campaign_id = %(campaign)s",
    "DELETE FROM outreach_autopause",
    "DELETE FROM leads_suppressionentry WHERE venture_id = %(venture)s",
    "DELETE FROM leads_unsubscribe WHERE venture_id = %(venture)s",
    "UPDATE leads_lead SET status = 'active' WHERE campaign_id = %(campaign)s AND status <> 'active'",
    """UPDATE outreach_enrollment SET state = 'active', stop_reason = ''
        WHERE campaign_id = %(campaign)s AND state <> 'active'""",
    """UPDATE ventures_campaign SET status = 'running', health_checked_at = NULL
        WHERE id = %(campaign)s""",
    "UPDATE outreach_mailbox SET is_active = true WHERE venture_id = %(venture)s",
    "DROP TABLE IF EXISTS bench_feedback_plain",
    "CREATE TABLE bench_feedback_plain (LIKE outreach_feedbackevent INCLUDING ALL)",
]


def server_env(database_url: str, artifacts: Path) -> dict[str, str]:
    return clean_env(
        DATABASE_URL=database_url,
        DEBUG="0",
        ALLOWED_HOSTS="127.0.0.1,localhost",
        AICMO_ARTIFACT_DIR=str(artifacts),
        AICMO_SITE_URL="https://bench.example",
        ANYMAIL_WEBHOOK_SECRET=SECRET,
        LOG_LEVEL="WARNING",
    )


# --- Data ----------------------------------------------------------------------------------------


def fixtures():
    """The venture, the running campaign, its one-step sequence and four mailboxes."""
    from outreach.models import Mailbox, Sequence, SequenceStep
    from ventures.models import Campaign, CampaignStatus, Venture

    venture, _ = Venture.objects.get_or_create(
        slug=SLUG,
        defaults={"name": "Bench feedback", "timezone": "UTC",
                  "owner_email": "owner@bench.example", "daily_send_limit": 10**8},
    )  # fmt: skip
    campaign, created = Campaign.objects.get_or_create(
        slug=SLUG,
        defaults={"venture": venture, "name": "Bench feedback", "status": CampaignStatus.RUNNING,
                  "started_at": dt.datetime.now(dt.UTC) - dt.timedelta(days=31),
                  "daily_send_limit": 10**8, "sender_email": "sam@bench.example"},
    )  # fmt: skip
    if created:
        sequence = Sequence.objects.create(campaign=campaign, slug="main", name="Main",
                                           is_default=True)  # fmt: skip
        SequenceStep.objects.create(sequence=sequence, position=1)
        for n in range(MAILBOXES):
            box = Mailbox.objects.create(venture=venture, name=f"Box {n}",
                                         from_email=f"sam{n}@bench.example")  # fmt: skip
            box.campaigns.add(campaign)
    return campaign


def build(campaign, n: int) -> dict:
    """Exactly `n` sent messages (rebuilt when the count differs); the reset's parameters."""
    from django.db import connection

    from outreach.facts import lead_facts_rebuild
    from outreach.models import OutboundMessage

    step = campaign.sequences.get().steps.get(position=1)
    params = {
        "campaign": campaign.pk, "venture": campaign.venture_id, "step": step.pk,
        "sequence": step.sequence_id, "domains": DOMAINS, "nboxes": MAILBOXES, "n": n,
        "mailboxes": list(campaign.mailboxes.order_by("pk").values_list("pk", flat=True)),
    }  # fmt: skip
    if OutboundMessage.objects.filter(campaign=campaign).count() != n:
        started = time.perf_counter()
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM outreach_feedbackevent")
            cursor.execute("DELETE FROM outreach_leadfacts WHERE campaign_id = %s", [campaign.pk])
            for table in ("leads_unsubscribe", "leads_suppressionentry"):
                cursor.execute(f"DELETE FROM {table} WHERE venture_id = %s", [campaign.venture_id])
            for table in ("outreach_outboundmessage", "outreach_enrollment", "leads_lead"):
                cursor.execute(f"DELETE FROM {table} WHERE campaign_id = %s", [campaign.pk])
            for sql in (LEADS_SQL, ANALYZE_LEADS, ENROL_SQL, SENT_SQL):
                cursor.execute(sql, params)
        lead_facts_rebuild(campaign)  # the sends' facts, as the tick would have kept them
        print(f"built {n:,} sent messages in {time.perf_counter() - started:.1f} s", flush=True)
    return params


def reset(params: dict) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        for sql in RESET_SQL:
            cursor.execute(sql, params)
        for table in ("outreach_feedbackevent", "leads_lead", "outreach_enrollment",
                      "outreach_outboundmessage", "leads_suppressionentry"):  # fmt: skip
            cursor.execute(f"VACUUM ANALYZE {table}")


def events_of(campaign, count: int, seed: int = 7) -> tuple[list[dict], dict]:
    """`count` SparkPost events over the campaign's messages, and what they must leave."""
    from outreach.models import OutboundMessage

    rng = random.Random(seed)
    ids = list(OutboundMessage.objects.filter(campaign=campaign).values_list("id", flat=True))
    kinds = []
    for event_class, kind, share, _ in MIX:
        kinds += [(event_class, kind)] * round(count * share)
    kinds = (kinds + [("message_event", "delivery")] * count)[:count]
    rng.shuffle(kinds)
    once = rng.sample(ids, sum(1 for _, k in kinds if k.split(":")[0] in ONCE))
    picked = [once.pop() if k.split(":")[0] in ONCE else rng.choice(ids) for _, k in kinds]
    info = {
        pk: (recipient, esp)
        for pk, recipient, esp in OutboundMessage.objects.filter(pk__in=set(picked)).values_list(
            "pk", "recipient", "esp_message_id"
        )
    }
    stamp = str(int(time.time()) - 60)
    events, expect = [], {"hard_bounces": set(), "unsubscribes": set()}
    for i, ((event_class, kind), pk) in enumerate(zip(kinds, picked, strict=True)):
        recipient, esp = info[pk]
        event = {"type": kind.split(":")[0], "event_id": f"bench-{i}", "transmission_id": esp,
                 "rcpt_to": recipient, "raw_rcpt_to": recipient, "timestamp": stamp,
                 "message_id": "000443ee14578172be22", "customer_id": "1"}  # fmt: skip
        if kind.startswith("bounce"):
            event["bounce_class"] = kind.split(":")[1]
            event["reason"] = event["raw_reason"] = (
                "550 5.1.1 <x>: Recipient address rejected" if kind.endswith("10")
                else "452 4.2.2 Mailbox full"
            )  # fmt: skip
            if kind.endswith("10"):
                expect["hard_bounces"].add(pk)
        elif kind == "click":
            event["target_link_url"] = "https://bench.example/demo"
        elif kind == "list_unsubscribe":
            expect["unsubscribes"].add(pk)
        events.append({"msys": {event_class: event}})
    return events, expect


ONCE = {kind.split(":")[0] for _, kind, _, one in MIX if one}


# --- The servers and the clients -----------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_servers(count: int, env: dict, logs: Path) -> tuple[list[subprocess.Popen], list[str]]:
    """`count` runserver processes; their logs (warnings and errors) under `logs`."""
    import requests

    procs, urls = [], []
    for n in range(count):
        port = free_port()
        command = [sys.executable, str(ROOT / "manage.py"), "runserver", f"127.0.0.1:{port}"]
        with (logs / f"server-{n}.log").open("w") as log:
            procs.append(
                subprocess.Popen(
                    [*command, "--noreload"], cwd=ROOT, env=env, stdout=log, stderr=log
                )
            )
        urls.append(f"http://127.0.0.1:{port}")
    for url in urls:
        for _ in range(300):
            try:
                if requests.get(url + "/healthz", headers=PROXY, timeout=2).status_code < 500:
                    break
            except requests.ConnectionError:
                time.sleep(0.1)
        else:
            raise SystemExit(f"the server at {url} did not start")
    return procs, urls


PROXY = {"X-Forwarded-Proto": "https"}
HEADERS = {
    **PROXY,
    "Content-Type": "application/json",
    "Authorization": "Basic " + base64.b64encode(SECRET.encode()).decode(),
}


def post_all(urls: list[str], bodies: list[bytes], clients: int) -> dict:
    """Every body posted once by `clients` threads (spread over the servers); wall time and
    each request's latency."""
    import requests

    work: queue.Queue = queue.Queue()
    for body in bodies:
        work.put(body)
    latencies, failures = [], []

    def client(n: int) -> None:
        session = requests.Session()
        url = urls[n % len(urls)] + "/anymail/sparkpost/tracking/"
        while True:
            try:
                body = work.get_nowait()
            except queue.Empty:
                return
            started = time.perf_counter()
            response = session.post(url, data=body, headers=HEADERS, timeout=120)
            latencies.append(time.perf_counter() - started)
            if response.status_code != 200:
                failures.append((response.status_code, response.text[:200]))

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"seconds": time.perf_counter() - started, "latencies": latencies, "failures": failures}


# --- The baseline ---------------------------------------------------------------------------------


def plain_insert(database_url: str, campaign, events: list[dict], batch: int) -> float:
    """The events' rows written by a plain INSERT, a batch a statement and a commit, into a
    copy of the events table; seconds."""
    import psycopg

    from outreach.models import FeedbackEvent, OutboundMessage

    by_esp = dict(
        OutboundMessage.objects.filter(campaign=campaign).values_list("esp_message_id", "id")
    )
    columns = [f.column for f in FeedbackEvent._meta.concrete_fields if f.column != "id"]
    now = dt.datetime.now(dt.UTC)
    rows = []
    for raw in events:
        ((_, e),) = raw["msys"].items()
        values = {
            "source": "sparkpost", "event_id": e["event_id"], "kind": e["type"],
            "occurred_at": now, "received_at": now, "recipient": e["rcpt_to"],
            "esp_message_id": e["transmission_id"], "thread_ids": "[]",
            "reason": e.get("reason", ""), "url": e.get("target_link_url", ""), "subject": "",
            "text": "", "reply_text": "", "objection": "", "reliable": e["type"] != "open",
            "sentiment": "", "notes": "", "message_id": by_esp[e["transmission_id"]],
            "lead_id": None, "venture_id": campaign.venture_id, "matched_by": "esp_message_id",
            "effect": "recorded", "handled_at": None, "handled_by": "", "escalated_at": None,
            "escalated_to": "",
        }  # fmt: skip
        rows.append([values[c] for c in columns])
    names = ", ".join(columns)
    one = "(" + ", ".join(["%s"] * len(columns)) + ")"
    with psycopg.connect(database_url) as conn:
        started = time.perf_counter()
        with conn.cursor() as cursor:
            for start in range(0, len(rows), batch):
                # psycopg sends the rows of executemany in one pipeline: no round trip each.
                cursor.executemany(
                    f"INSERT INTO bench_feedback_plain ({names}) VALUES {one}",
                    rows[start : start + batch],
                )
                conn.commit()
        return time.perf_counter() - started


# --- A run ----------------------------------------------------------------------------------------


def check(expect: dict, count: int) -> dict:
    from leads.models import Lead, LeadStatus, SuppressionEntry
    from outreach.models import FeedbackEvent, OutboundMessage

    bounced_leads = set(
        OutboundMessage.objects.filter(pk__in=expect["hard_bounces"]).values_list(
            "lead_id", flat=True
        )
    )
    found = {
        "stored": FeedbackEvent.objects.count(),
        "unmatched": FeedbackEvent.objects.filter(message__isnull=True).count(),
        "hard_bounced_leads": Lead.objects.filter(
            pk__in=bounced_leads, status=LeadStatus.BOUNCED
        ).count(),
        "suppressed_by_bounce": SuppressionEntry.objects.filter(source="bounce").count(),
        "unsubscribed_leads": Lead.objects.filter(status=LeadStatus.UNSUBSCRIBED).count(),
    }
    wanted = {"stored": count, "unmatched": 0, "hard_bounced_leads": len(bounced_leads),
              "suppressed_by_bounce": len(bounced_leads),
              "unsubscribed_leads": len(expect["unsubscribes"])}  # fmt: skip
    found["ok"] = all(found[k] == v for k, v in wanted.items())
    found["wanted"] = wanted
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--servers", type=int, default=2)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_DB))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    create_database(args.database_url)
    scratch = Path(tempfile.mkdtemp(prefix="bench-feedback-"))
    env = server_env(args.database_url, scratch)
    os.environ.update(env)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)
    campaign = fixtures()
    params = build(campaign, args.messages)
    events, expect = events_of(campaign, args.events)
    bodies = [
        json.dumps(events[i : i + args.batch]).encode() for i in range(0, len(events), args.batch)
    ]
    procs, urls = start_servers(args.servers, env, scratch)
    runs = []
    try:
        for r in range(args.runs):
            reset(params)
            posted = post_all(urls, bodies, args.clients)
            if posted["failures"]:
                logs = "".join(p.read_text()[-3000:] for p in scratch.glob("server-*.log"))
                failed = posted["failures"]
                raise SystemExit(f"{len(failed)} batches failed: {failed[:3]}\n{logs}")
            checked = check(expect, len(events))
            replay = post_all(urls, bodies[:1], 1)
            replayed = check(expect, len(events))["stored"] - checked["stored"]
            plain = plain_insert(args.database_url, campaign, events, args.batch)
            lat = sorted(posted["latencies"])
            run = {
                "events_per_s": len(events) / posted["seconds"],
                "plain_rows_per_s": len(events) / plain,
                "batch_ms_p50": 1000 * lat[len(lat) // 2],
                "batch_ms_p95": 1000 * lat[int(len(lat) * 0.95) - 1],
                "replay_stored": replayed,
                "replay_failures": len(replay["failures"]),
                "checks": checked,
            }
            runs.append(run)
            print(
                f"run {r + 1}: {run['events_per_s']:,.0f} events/s through the endpoint, "
                f"plain INSERT {run['plain_rows_per_s']:,.0f} rows/s; batch p50 "
                f"{run['batch_ms_p50']:.0f} ms, p95 {run['batch_ms_p95']:.0f} ms; replay "
                f"stored {replayed}; checks {'ok' if checked['ok'] else checked}",
                flush=True,
            )
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=30)
    median = statistics.median
    summary = {
        "messages": args.messages, "events": args.events, "batch": args.batch,
        "servers": args.servers, "clients": args.clients, "runs": args.runs,
        "events_per_s": round(median(r["events_per_s"] for r in runs)),
        "plain_insert_rows_per_s": round(median(r["plain_rows_per_s"] for r in runs)),
        "ratio": round(median(r["events_per_s"] / r["plain_rows_per_s"] for r in runs), 2),
        "batch_ms_p50": round(median(r["batch_ms_p50"] for r in runs)),
        "batch_ms_p95": round(median(r["batch_ms_p95"] for r in runs)),
        "replay_stored": [r["replay_stored"] for r in runs],
        "all_events_per_s": [round(r["events_per_s"]) for r in runs],
        "checks_ok": all(r["checks"]["ok"] for r in runs),
    }  # fmt: skip
    print(json.dumps(summary, indent=2) if args.json else summary)
    ok = summary["checks_ok"] and not any(summary["replay_stored"])
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
