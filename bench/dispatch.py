"""Benchmark: the outbox's tick on PostgreSQL, in proof and live mode, and under SIGKILL.

    .venv/bin/python bench/dispatch.py [--messages 100000] [--runs 3] [--workers 1,2,4]
        [--live-messages 20000] [--batch 200] [--skip-live] [--json]
        [--database-url postgres://postgres@127.0.0.1:5432/aicmo_bench_dispatch]
    .venv/bin/python bench/dispatch.py --crash [--messages 100000] [--kills 50]
    .venv/bin/python bench/dispatch.py --phases [--messages 5000] [--variants 3]
    .venv/bin/python bench/dispatch.py --queries [--variants 3]
    .venv/bin/python bench/dispatch.py --enrol [--messages 100000]

Builds MESSAGES due first-step emails (leads, enrolments and messages with INSERT ... SELECT,
once; later runs reset them) of one running campaign, open all day, sending from 4 mailboxes
with no gap between sends, every daily cap far above MESSAGES. Then, alternating run by run:

- **proof**: W worker processes (1, 2, 4), each one pass of `outreach.dispatch.tick` from a
  common start signal (Django set up beforehand); guarded send decisions per second = messages
  decided / wall time until the last worker is done. Every decision is the full one: claim,
  every guardrail, render, cap slots, .eml written, recorded, next step planned.
- **baseline**: `pgbench -N` (simple updates, scale 10, its own database on the same server)
  with as many clients as workers, 5 s, in the same round: decisions/s over pgbench tps.
- **queries per batch**: one process, `CaptureQueriesContext` around one batch of each size
  (10, 50, 200, 500): the count must not grow with the batch.
- **live**: LIVE_MESSAGES messages sent over SMTP to an aiosmtpd server on 127.0.0.1 (in this
  process's thread: it idles while the workers run) by 2 workers; messages/s and the count
  received.

`--crash`: 4 `manage.py tick --loop` processes over MESSAGES messages with the venture capped
at 90% of them; at least KILLS times a random one is killed with SIGKILL and restarted (its
leases are made to lapse at once, as if its lease time had passed); then the workers stop,
every lease lapses and a final tick runs. Prints duplicates (an .eml written twice, or a
recipient twice), lost messages (not settled, or sent without its .eml) and cap overruns: all
must be 0.

`--phases`: one pass over MESSAGES in this process with each step of the tick timed; prints
milliseconds per message by step (where the time goes) and this process's CPU time per message. `--variants N` gives the first step a
pool of N templates (narrative variants; default 1), whose narrative memory starts empty in
each run. `--queries`: the queries per batch only. `--enrol`: MESSAGES leads new to the
running campaign enrolled by `campaign_enrol` (routing, enrolments, first steps), against the
same rows written by a plain INSERT ... SELECT in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from admin_leads import create_database  # bench/ is the script's directory

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.proc import clean_env  # noqa: E402

DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/aicmo_bench_dispatch"
PGBENCH_DB = "aicmo_bench_pgbench"
MAILBOXES = 4
DOMAINS = 2000
HIGH = "100000000"
BATCH_SIZES = (10, 50, 200, 500)
SLUG = "bench-dispatch"

BODY = (
    "Hi {{ first_name | default('there') }},\n\n{{ venture.offer_summary }}\n\n"
    "Best,\n{{ sender.name }}\n\n{{ venture.postal_address }}\nUnsubscribe: {{ unsubscribe_url }}\n"
)


def worker_env(database_url: str, artifacts: Path, **more: str) -> dict[str, str]:
    return clean_env(
        DATABASE_URL=database_url,
        AICMO_ARTIFACT_DIR=str(artifacts),
        AICMO_GLOBAL_DAILY_LIMIT=HIGH,
        AICMO_RECIPIENT_DOMAIN_DAILY_LIMIT=HIGH,
        AICMO_SITE_URL="https://bench.example",
        **more,
    )


def setup_django(database_url: str, artifacts: Path) -> None:
    os.environ.update(worker_env(database_url, artifacts))
    import django

    django.setup()


# --- Data ----------------------------------------------------------------------------------------


def fixtures():
    """The venture, campaign, two-step sequence and mailboxes (created once)."""
    import datetime as dt

    from outreach.models import Mailbox, Sequence, SequenceStep
    from templating.models import MessageTemplate
    from templating.services import template_save
    from ventures.models import Campaign, CampaignStatus, Venture

    venture, _ = Venture.objects.get_or_create(
        slug=SLUG,
        defaults={
            "name": "Bench dispatch",
            "timezone": "UTC",
            "owner_name": "Ada Owner",
            "owner_email": "owner@bench.example",
            "offer_summary": "Automated pipeline reporting for revenue teams.",
            "postal_address": "Musterstrasse 1, 10115 Berlin, Germany",
            "daily_send_limit": int(HIGH),
        },
    )
    campaign, created = Campaign.objects.get_or_create(
        slug=SLUG,
        defaults={
            "venture": venture,
            "name": "Bench dispatch",
            "status": CampaignStatus.RUNNING,
            "started_at": dt.datetime.now(dt.UTC) - dt.timedelta(days=1),
            "daily_send_limit": int(HIGH),
            "send_days": "1234567",
            "send_window_start": dt.time(0, 0),
            "send_window_end": dt.time(23, 59, 59),
            "timezone": "UTC",
            "sender_name": "Sam Sender",
            "sender_email": "sam@bench.example",
            "reply_to": "replies@bench.example",
        },
    )
    if created:
        sequence = Sequence.objects.create(
            campaign=campaign, slug="main", name="Main", is_default=True
        )
        for position, delay in ((1, 0), (2, 3)):
            step = SequenceStep.objects.create(
                sequence=sequence, position=position, delay_days=delay
            )
            step.templates.add(
                template_save(
                    template=MessageTemplate(
                        venture=venture,
                        campaign=campaign,
                        name=f"Step {position}",
                        slug=f"step-{position}",
                        subject="Quick question, {{ first_name }}",
                        body_text=BODY,
                    ),
                    actor="bench",
                )
            )
        for n in range(MAILBOXES):
            box = Mailbox.objects.create(
                venture=venture,
                name=f"Box {n}",
                from_name="Sam Sender",
                from_email=f"sam{n}@bench.example",
                daily_limit=int(HIGH),
                min_gap_seconds=0,
                gap_jitter_seconds=0,
            )
            box.campaigns.add(campaign)
    return campaign


def variants_set(campaign, n: int) -> None:
    """The first step's pool: its first template and n - 1 more, each its own narrative angle
    and variant label (made once, kept between runs)."""
    from templating.models import MessageTemplate
    from templating.services import template_save

    step = campaign.sequences.get().steps.get(position=1)
    first = MessageTemplate.objects.get(campaign=campaign, slug="step-1")
    pool = [first]
    for k in range(2, n + 1):
        template = MessageTemplate.objects.filter(campaign=campaign, slug=f"step-1-v{k}").first()
        pool.append(
            template
            or template_save(
                template=MessageTemplate(
                    venture=campaign.venture, campaign=campaign, name=f"Step 1 variant {k}",
                    slug=f"step-1-v{k}", subject=f"Question {k}, {{{{ first_name }}}}",
                    body_text=BODY, narrative_angle=f"angle {k}", variant_label=chr(64 + k),
                ),
                actor="bench",
            )
        )  # fmt: skip
    step.templates.set(pool)


def narrative_memory() -> bool:
    """Whether the code under test has narrative memory (the same script measures before it)."""
    from django.db import connection

    return "outreach_narrativestat" in connection.introspection.table_names()


LEADS_SQL = """
INSERT INTO leads_lead (
    campaign_id, venture_id, status, email, email_key, identity_hash, first_name, last_name,
    title, company, company_domain, website, phone, linkedin_url, city, state, country,
    timezone, industry, consent_status, consent_source, custom_fields, source_channel,
    source_list, utm_source, utm_medium, utm_campaign, utm_content, fit_score, grade,
    score_explanation, created_at, updated_at
)
SELECT %(campaign)s, %(venture)s, 'active',
    'lead' || n || '@d' || (n %% %(domains)s) || '.example',
    'lead' || n || '@d' || (n %% %(domains)s) || '.example',
    md5('bench:' || n) || md5('id:' || n), 'First' || (n %% 997), 'Last' || (n %% 1009),
    'VP Sales', 'Company ' || (n %% %(domains)s), 'd' || (n %% %(domains)s) || '.example',
    '', '', '', 'Berlin', '', 'Germany', '', 'software', 'unknown', '', '{}'::jsonb, 'import',
    'bench', '', '', '', '', 50, 'B', '', now(), now()
FROM generate_series(1, %(n)s) AS n
"""

ENROL_SQL = """
INSERT INTO outreach_enrollment (
    route_reason, state, stop_reason, thread_message_id, thread_subject, created_at,
    campaign_id, lead_id, mailbox_id, sequence_id
)
SELECT 'bench', 'active', '', '', '', now(), l.campaign_id, l.id,
    (%(mailboxes)s::bigint[])[1 + l.id %% %(nboxes)s], %(sequence)s
FROM leads_lead l WHERE l.campaign_id = %(campaign)s
"""

# Between writing the leads and enrolling them: without the leads' statistics, the enrolments'
# foreign-key checks at commit ran for over ten minutes instead of seconds.
ANALYZE_LEADS = "ANALYZE leads_lead"

MESSAGES_SQL = """
INSERT INTO outreach_outboundmessage (
    idempotency_key, enrollment_id, lead_id, campaign_id, venture_id, step_id, mailbox_id, kind,
    state, due_at, attempts, reason_code, reason, recipient, recipient_domain, subject,
    body_text, body_html, message_id, esp_message_id, in_reply_to, settled_by, lease_token,
    reserved, created_at, updated_at
)
SELECT 'l' || e.lead_id || '-s' || %(step)s, e.id, e.lead_id, e.campaign_id, %(venture)s,
    %(step)s, e.mailbox_id, 'email', 'scheduled', now(), 0, '', '', l.email,
    split_part(l.email, '@', 2), '', '', '', '', '', '', '', '', '[]'::jsonb, now(), now()
FROM outreach_enrollment e JOIN leads_lead l ON l.id = e.lead_id
WHERE e.campaign_id = %(campaign)s
"""

RESET_SQL = [
    "DELETE FROM outreach_dispatchdecision",
    "UPDATE outreach_outboundmessage SET run_id = NULL WHERE run_id IS NOT NULL",
    "DELETE FROM outreach_dispatchrun",
    "DELETE FROM outreach_sendledger",
    "DELETE FROM templating_renderlog",
    "DELETE FROM outreach_leadfacts WHERE campaign_id = %(campaign)s",
    "DELETE FROM outreach_outboundmessage WHERE campaign_id = %(campaign)s AND step_id <> %(step)s",
    """UPDATE outreach_outboundmessage SET state = 'scheduled', due_at = now() - interval '1 minute',
        attempts = 0, reason_code = '', reason = '', template_id = NULL,
        template_version_id = NULL, subject = '', body_text = '', body_html = '',
        message_id = '', esp_message_id = '', in_reply_to = '', sent_at = NULL,
        lease_token = '', lease_until = NULL, reserved = '[]'::jsonb
        WHERE campaign_id = %(campaign)s""",
    """UPDATE outreach_enrollment SET state = 'active', thread_message_id = '',
        thread_subject = '', finished_at = NULL WHERE campaign_id = %(campaign)s""",
    "UPDATE leads_lead SET status = 'active' WHERE campaign_id = %(campaign)s AND status <> 'active'",
    "DELETE FROM leads_suppressionentry WHERE venture_id = %(venture)s",
]


def build(campaign, n: int) -> None:
    """Exactly `n` due first-step messages (rebuilt when the count differs), then reset."""
    from django.db import connection

    from outreach.models import OutboundMessage

    step = campaign.sequences.get().steps.get(position=1)
    params = {
        "campaign": campaign.pk,
        "venture": campaign.venture_id,
        "step": step.pk,
        "sequence": step.sequence_id,
        "domains": DOMAINS,
        "mailboxes": list(campaign.mailboxes.order_by("pk").values_list("pk", flat=True)),
        "nboxes": MAILBOXES,
        "n": n,
    }
    if OutboundMessage.objects.filter(campaign=campaign, step=step).count() != n:
        started = time.perf_counter()
        with connection.cursor() as cursor:
            for sql in RESET_SQL[:6]:  # through the lead facts, which hold the leads
                cursor.execute(sql, params)
            cursor.execute(
                "DELETE FROM outreach_outboundmessage WHERE campaign_id = %s", [campaign.pk]
            )
            cursor.execute("DELETE FROM outreach_enrollment WHERE campaign_id = %s", [campaign.pk])
            cursor.execute("DELETE FROM leads_lead WHERE campaign_id = %s", [campaign.pk])
            messages_sql = MESSAGES_SQL
            if narrative_memory():
                messages_sql = messages_sql.replace(
                    "reserved, created_at", "reserved, narrative_choice, created_at"
                ).replace("'[]'::jsonb, now()", "'[]'::jsonb, '{}'::jsonb, now()")
            for sql in (LEADS_SQL, ANALYZE_LEADS, ENROL_SQL, messages_sql):
                cursor.execute(sql, params)
        print(f"built {n:,} due messages in {time.perf_counter() - started:.1f} s", flush=True)
    reset(params)
    campaign.params = params


NARRATIVE_RESET_SQL = [
    "DELETE FROM outreach_narrativestat",
    """UPDATE outreach_outboundmessage SET narrative_choice = '{}'::jsonb, segment_id = NULL
        WHERE campaign_id = %(campaign)s""",
]


def reset(params: dict) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        for sql in RESET_SQL + (NARRATIVE_RESET_SQL if narrative_memory() else []):
            cursor.execute(sql, params)
    vacuum()


def vacuum() -> None:
    from django.db import connection

    tables = (
        "outreach_outboundmessage",
        "outreach_enrollment",
        "outreach_sendledger",
        "outreach_dispatchdecision",
        "templating_renderlog",
        "leads_lead",
    )
    with connection.cursor() as cursor:
        for table in tables:
            cursor.execute(f"VACUUM ANALYZE {table}")


# --- Workers -------------------------------------------------------------------------------------


def worker_process() -> None:
    """One tick pass in this process, started by a line on stdin; its counts on stdout."""
    import django

    django.setup()
    from django.db import connection

    from outreach.dispatch import tick

    connection.ensure_connection()
    print("ready", flush=True)
    sys.stdin.readline()
    started = time.perf_counter()
    run = tick(worker=f"bench:{os.getpid()}")
    print(json.dumps({"counts": run.counts, "seconds": time.perf_counter() - started}), flush=True)


def run_workers(count: int, env: dict[str, str]) -> dict:
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, "--worker-process"],
            env=env,
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(count)
    ]
    for proc in procs:
        assert proc.stdout.readline().strip() == "ready"
    started = time.perf_counter()
    for proc in procs:
        proc.stdin.write("go\n")
        proc.stdin.flush()
    outputs = [json.loads(proc.stdout.readline()) for proc in procs]
    elapsed = time.perf_counter() - started
    for proc in procs:
        proc.wait(timeout=60)
        assert proc.returncode == 0
    counts = Counter()
    for out in outputs:
        counts.update({k: v for k, v in out["counts"].items() if not k.startswith("recovered")})
    decided = sum(counts.values())
    return {
        "decided": decided,
        "seconds": elapsed,
        "per_second": decided / elapsed,
        "counts": dict(counts),
    }


def pgbench_tps(clients: int, seconds: int = 5) -> float:
    out = subprocess.run(
        [
            "pgbench",
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-N",
            "-n",
            "-c",
            str(clients),
            "-j",
            str(clients),
            "-T",
            str(seconds),
            PGBENCH_DB,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return float(re.search(r"tps = ([0-9.]+)", out).group(1))


def pgbench_init() -> None:
    create_database(f"postgres://postgres@127.0.0.1:5432/{PGBENCH_DB}")
    subprocess.run(
        ["pgbench", "-h", "127.0.0.1", "-U", "postgres", "-i", "-q", "-s", "10", PGBENCH_DB],
        capture_output=True,
        check=True,
    )


def queries_per_batch(campaign) -> dict[int, int]:
    import secrets

    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from outreach import dispatch
    from outreach.models import DispatchRun

    counts = {}
    for size in BATCH_SIZES:
        reset(campaign.params)
        run = DispatchRun.objects.create(worker="bench-queries", mode="proof")
        folder = Path(tempfile.mkdtemp(prefix="bench-queries-"))
        state = dispatch.RunState(run=run, token=secrets.token_hex(16), folder=folder)
        dispatch._batch(state, size, None)  # warm: ledger rows exist, versions are current
        with CaptureQueriesContext(connection) as captured:
            assert dispatch._batch(state, size, None)
        assert state.counts["sent"] == 2 * size, state.counts
        counts[size] = len(captured.captured_queries)
        shutil.rmtree(folder)
    return counts


# The tick's steps timed by `--phases`: (module, class or "", functions). Nested: a step's
# time includes the steps it calls.
PHASES = [
    ("outreach.dispatch", "", ["_claim", "_load", "_decide", "_settle_decisions", "_admit",
                               "_deliver", "_lock_rules", "_suppressed", "_save_decisions",
                               "lead_recipient", "version_render", "plan_next_steps",
                               "stable_pick", "narrative_sends_record"]),
    ("outreach.dispatch", "Renderer", ["render"]),
    ("outreach.narrative", "NarrativeBoard", ["load", "pick"]),
    ("outreach.dispatch", "Outcomes", ["record"]),
    ("outreach.sending", "ProofBackend", ["send"]),
    ("outreach.sending", "", ["build_email"]),
]  # fmt: skip


def phases(campaign, n: int) -> dict:
    """One `tick()` pass over `n` messages in this process, each step of it timed: ms per
    message, and decisions/s (a little slower than a worker's: the timers cost too)."""
    import functools
    import importlib

    from outreach import dispatch

    spent: Counter = Counter()

    def timed(owner, name: str, label: str) -> None:
        original = getattr(owner, name)

        @functools.wraps(original)
        def wrapper(*args, **kwargs):
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                spent[label] += time.perf_counter() - started

        setattr(owner, name, wrapper)

    for module, cls, names in PHASES:
        try:
            owner = importlib.import_module(module)
        except ImportError:  # code from before that module
            continue
        owner = getattr(owner, cls) if cls else owner
        for name in names:
            if hasattr(owner, name):
                timed(owner, name, f"{cls}.{name}" if cls else name)
    reset(campaign.params)
    started, cpu = time.perf_counter(), time.process_time()
    run = dispatch.tick(worker="bench-phases")
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    assert run.counts == {"sent": n}, run.counts
    per_message = {label: round(seconds * 1000 / n, 3) for label, seconds in spent.most_common()}
    return {
        "decisions_per_s": round(n / elapsed),
        # This process's CPU time (not the database's): steadier than wall time on a busy machine.
        "cpu_ms_per_message": round(cpu * 1000 / n, 3),
        "ms_per_message": per_message,
    }


def enrol_run(campaign, n: int) -> dict:
    """Enrolment of `n` leads new to a running campaign (what the next tick does after an
    import): `campaign_enrol` against the same rows written by plain INSERT ... SELECT."""
    from django.db import connection

    from outreach.enrollment import campaign_enrol

    def unenrol() -> None:
        with connection.cursor() as cursor:
            for sql in RESET_SQL[:5]:
                cursor.execute(sql, campaign.params)
            cursor.execute(
                "DELETE FROM outreach_outboundmessage WHERE campaign_id = %s", [campaign.pk]
            )
            cursor.execute("DELETE FROM outreach_enrollment WHERE campaign_id = %s", [campaign.pk])
        vacuum()

    unenrol()
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(ENROL_SQL, campaign.params)
        cursor.execute(MESSAGES_SQL, campaign.params)
    plain = time.perf_counter() - started
    unenrol()
    started = time.perf_counter()
    enrolled = campaign_enrol(campaign=campaign)
    seconds = time.perf_counter() - started
    assert enrolled == n, enrolled
    return {
        "leads": n,
        "leads_per_s": round(n / seconds),
        "insert_select_per_s": round(n / plain),
        "ratio": round(plain / seconds, 3),
    }


def live_run(campaign, workers: int, n: int, database_url: str) -> dict:
    from outreach.models import Mailbox
    from tests.smtp import SmtpSink
    from ventures.models import Campaign

    reset(campaign.params)
    with SmtpSink() as sink:
        Mailbox.objects.filter(campaigns=campaign).update(connection_url=sink.url)
        Campaign.objects.filter(pk=campaign.pk).update(mode="live")
        # Only the first n messages are due.
        from outreach.models import OutboundMessage

        later = OutboundMessage.objects.filter(campaign=campaign).order_by("pk")[n:]
        import datetime as dt

        from django.utils import timezone

        OutboundMessage.objects.filter(pk__in=later.values("pk")).update(
            due_at=timezone.now() + dt.timedelta(days=30)
        )
        artifacts = Path(tempfile.mkdtemp(prefix="bench-live-"))
        try:
            env = worker_env(database_url, artifacts, AICMO_SEND_MODE="live", EMAIL_URL=sink.url)
            result = run_workers(workers, env)
        finally:
            Campaign.objects.filter(pk=campaign.pk).update(mode="proof")
            Mailbox.objects.filter(campaigns=campaign).update(connection_url="")
            shutil.rmtree(artifacts)
        recipients = sink.recipients()
        result.update(
            received=len(recipients),
            duplicates=len(recipients) - len(set(recipients)),
            connections=sink.connections,
        )
    return result


# --- Crash run -----------------------------------------------------------------------------------

SETTLED = {"sent", "blocked", "failed", "deferred", "unknown"}


def crash_run(campaign, n: int, kills: int, database_url: str) -> dict:
    from django.db.models import Count

    from outreach.models import OutboundMessage, SendLedger
    from ventures.models import Venture

    cap = n * 9 // 10
    Venture.objects.filter(pk=campaign.venture_id).update(daily_send_limit=cap)
    artifacts = Path(tempfile.mkdtemp(prefix="bench-crash-"))
    env = worker_env(database_url, artifacts, AICMO_TICK_BATCH="50")
    command = [sys.executable, str(ROOT / "manage.py"), "tick", "--loop", "--interval", "0.2"]

    def start() -> subprocess.Popen:
        return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)

    first = OutboundMessage.objects.filter(campaign=campaign, step__position=1)
    waiting = ["scheduled", "claimed", "sending"]
    rng = random.Random()
    procs = [start() for _ in range(4)]
    started = time.perf_counter()
    done, held = 0, 0
    try:
        while not first.exclude(state="scheduled").exists():
            time.sleep(0.05)
        while done < kills or first.filter(state__in=waiting).exists():
            time.sleep(rng.uniform(0.05, 0.5))
            if done >= kills:
                continue
            i = rng.randrange(len(procs))
            procs[i].send_signal(signal.SIGKILL)
            procs[i].wait()
            held += lapse(first.filter(run__worker__endswith=f":{procs[i].pid}"))
            procs[i] = start()
            done += 1
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(timeout=120)
    lapse(first)
    final = subprocess.run(command[:3], cwd=ROOT, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    assert final.returncode == 0, final.stderr

    states = Counter(first.values_list("state", flat=True))
    written = Counter(p.stem for p in artifacts.glob("runs/*/eml/*.eml"))
    keys = dict(first.values_list("idempotency_key", "state"))
    to_of = dict(first.values_list("idempotency_key", "recipient"))
    recipients = Counter(to_of[k] for k in written)
    sent = {k for k, s in keys.items() if s == "sent"}
    lost = (
        sum(v for s, v in states.items() if s not in SETTLED)
        + len(sent - set(written))
        + first.filter(reason="").exclude(state="sent").count()
        + sum(1 for k in written if keys[k] not in ("sent", "unknown"))
    )
    ledger = SendLedger.objects.get(scope="venture", key=str(campaign.venture_id)).count
    taken = states["sent"] + states["unknown"]
    twice = first.values("lead").annotate(n=Count("id")).filter(n__gt=1).count()
    shutil.rmtree(artifacts)
    Venture.objects.filter(pk=campaign.venture_id).update(daily_send_limit=int(HIGH))
    return {
        "messages": n,
        "kills": done,
        "kills_holding_messages": held,
        "seconds": round(elapsed, 1),
        "states": dict(states),
        "duplicates": sum(v - 1 for v in written.values() if v > 1)
        + sum(v - 1 for v in recipients.values() if v > 1)
        + twice,
        "lost": lost,
        "cap": cap,
        "cap_overruns": max(0, ledger - cap) + max(0, taken - cap),
        "ledger": ledger,
        "ledger_mismatch": ledger - taken,  # slots counted against sent + unknown: 0
    }


def lapse(messages) -> int:
    import datetime as dt

    from django.utils import timezone

    held = messages.filter(state__in=["claimed", "sending"])
    return int(held.update(lease_until=timezone.now() - dt.timedelta(seconds=1)) > 0)


# --- Main ----------------------------------------------------------------------------------------


def main() -> int:
    if "--worker-process" in sys.argv:
        worker_process()
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--live-messages", type=int, default=20_000)
    parser.add_argument("--skip-live", action="store_true")
    parser.add_argument("--only-live", action="store_true", help="Skip the proof runs.")
    parser.add_argument("--crash", action="store_true")
    parser.add_argument("--kills", type=int, default=50)
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_DB))
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--phases", action="store_true", help="Time each step of one pass, in this process."
    )
    parser.add_argument("--enrol", action="store_true", help="Time enrolling MESSAGES leads.")
    parser.add_argument("--queries", action="store_true", help="Only the queries per batch.")
    parser.add_argument(
        "--variants", type=int, default=1, help="Templates in the first step's pool (default 1)."
    )
    args = parser.parse_args()

    create_database(args.database_url)
    scratch = Path(tempfile.mkdtemp(prefix="bench-dispatch-"))
    setup_django(args.database_url, scratch)
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)
    campaign = fixtures()
    variants_set(campaign, args.variants)
    build(campaign, args.messages)
    if args.enrol:
        print(json.dumps(enrol_run(campaign, args.messages), indent=2))
        return 0
    if args.phases:
        print(json.dumps(phases(campaign, args.messages), indent=2))
        return 0
    if args.queries:
        print(json.dumps(queries_per_batch(campaign), indent=2))
        return 0
    if args.crash:
        result = crash_run(campaign, args.messages, args.kills, args.database_url)
        print(json.dumps(result, indent=2))
        bad = (
            result["duplicates"],
            result["lost"],
            result["cap_overruns"],
            result["ledger_mismatch"],
        )
        return 1 if any(bad) else 0

    pgbench_init()
    workers = [] if args.only_live else [int(w) for w in args.workers.split(",")]
    proof = {w: [] for w in workers}
    baseline = {w: [] for w in workers}
    for r in range(args.runs):
        for w in workers:
            reset(campaign.params)
            baseline[w].append(pgbench_tps(w))
            artifacts = scratch / f"proof-{w}-{r}"
            env = worker_env(args.database_url, artifacts, AICMO_TICK_BATCH=str(args.batch))
            result = run_workers(w, env)
            shutil.rmtree(artifacts, ignore_errors=True)
            assert result["counts"] == {"sent": args.messages}, result["counts"]
            proof[w].append(result["per_second"])
            print(
                f"run {r + 1}, {w} workers: {result['per_second']:,.0f} decisions/s, "
                f"pgbench -N -c {w}: {baseline[w][-1]:,.0f} tps",
                flush=True,
            )
    summary = {
        "messages": args.messages,
        "batch": args.batch,
        "runs": args.runs,
        "proof": {
            w: {
                "decisions_per_s": round(statistics.median(proof[w])),
                "pgbench_tps": round(statistics.median(baseline[w])),
                "ratio": round(statistics.median(proof[w]) / statistics.median(baseline[w]), 2),
                "all": [round(x) for x in proof[w]],
            }
            for w in workers
        },
        "queries_per_batch": {} if args.only_live else queries_per_batch(campaign),
    }
    if not args.skip_live:
        live = []
        for _ in range(args.runs):
            live.append(
                live_run(campaign, 2, min(args.live_messages, args.messages), args.database_url)
            )
            print(f"live: {live[-1]['per_second']:,.0f} msg/s", flush=True)
        summary["live"] = {
            "workers": 2,
            "messages": live[0]["decided"],
            "messages_per_s": round(statistics.median(r["per_second"] for r in live)),
            "all": [round(r["per_second"]) for r in live],
            "received": [r["received"] for r in live],
            "duplicates": [r["duplicates"] for r in live],
            "connections": [r["connections"] for r in live],
        }
    shutil.rmtree(scratch, ignore_errors=True)
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
