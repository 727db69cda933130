"""Benchmark: a campaign's streamed CSV exports (`reporting.exports`) on PostgreSQL.

    .venv/bin/python bench/report_csv.py [--leads 250000] [--runs 3] [--kinds outcomes,...]
        [--json] [--database-url postgres://postgres@127.0.0.1:5432/aicmo_bench_report_csv]

Builds, once (later runs reuse it while the lead count is the same), one campaign of LEADS
leads, each enrolled in a four-step sequence (email, email, LinkedIn task, email), so 4 x
LEADS outbound messages (1,000,000 by default) in a realistic mix: most emails sent, some
blocked (suppressed, replied, bounced, stopped), some unknown, tasks done, skipped and open,
last steps half scheduled; feedback events for the sent emails (92% delivered, 35% opened,
6% clicked, 3% of leads replied, 2% bounced, 0.5% unsubscribed with an Unsubscribe row,
0.1% complained: about 0.8 events per message), leads' statuses to match, a third of them in
ICP segments, and the audit trail: a row per settled task (what `manual_task_settle` writes)
and as many about another venture's campaigns, for the filter to leave out. Everything with
INSERT ... SELECT.

Then, run by run, for each export kind: a new process (Django set up, connected) runs
`export_write(kind, campaign, /dev/null)`; rows/s = rows / the export's own wall time, with
the CPU time it took (the machine may be shared: the load average is printed with each run).
Memory: the process's high-water mark (VmHWM) at its end, next to its RSS before the export
began (what Django and the code cost on their own), and the kernel's ru_maxrss of the child
(`os.wait4`), which can include the forked parent's pages before the exec. The baseline, in
the same run: PostgreSQL writing the messages' own columns as CSV, `COPY (SELECT ... FROM
outreach_outboundmessage WHERE campaign_id = C ORDER BY id) TO STDOUT WITH CSV` read through
psycopg's copy (into nothing), rows/s; the ratio is the messages export's rate over COPY's.
Prints each run, then medians (JSON with --json). Targets (issue 13): >= 30,000 rows/s and
under 150 MB, whatever the size.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from admin_leads import create_database  # bench/ is the script's directory
from dispatch import (  # the dispatch benchmark's leads
    ANALYZE_LEADS,
    ENROL_SQL,
    LEADS_SQL,
    MAILBOXES,
)

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.proc import clean_env  # noqa: E402

DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/aicmo_bench_report_csv"
SLUG = "bench-report-csv"
DOMAINS = 2000
KINDS = ("outcomes", "messages", "events", "audit")
BODY = (
    "Hi {{ first_name | default('there') }},\n\n{{ venture.offer_summary }}\n\n"
    "Best,\n{{ sender.name }}\n\n{{ venture.postal_address }}\nUnsubscribe: {{ unsubscribe_url }}\n"
)
# What a sent email's row holds (the export reads none of it, but it makes the table as wide
# as a real outbox's).
SENT_BODY = (
    "Hi Lena,\n\nAutomated pipeline reporting for revenue teams: your Monday numbers without "
    "the spreadsheet. Teams like yours save four hours a week.\n\nBest,\nSam Sender\n\n"
    "Musterstrasse 1, 10115 Berlin, Germany\nUnsubscribe: https://bench.example/u/token/\n"
)

# r = lead id % 100 decides each lead's story; s = the step's position.
MESSAGES_SQL = """
INSERT INTO outreach_outboundmessage (
    idempotency_key, enrollment_id, lead_id, campaign_id, venture_id, step_id, mailbox_id, kind,
    state, due_at, sent_at, attempts, reason_code, reason, recipient, recipient_domain, subject,
    body_text, body_html, message_id, esp_message_id, in_reply_to, settled_at, settled_by,
    lease_token, reserved, narrative_choice, template_id, run_id, segment_id, created_at,
    updated_at
)
SELECT 'l' || e.lead_id || '-s' || st.id, e.id, e.lead_id, e.campaign_id, %(venture)s, st.id,
    e.mailbox_id, st.kind, x.state, x.due, CASE WHEN x.state = 'sent' THEN x.due END,
    CASE WHEN x.state IN ('sent', 'unknown') THEN 1 ELSE 0 END,
    CASE WHEN x.state = 'blocked' THEN x.code ELSE '' END,
    CASE WHEN x.state = 'blocked' THEN 'blocked: ' || x.code
         WHEN x.state = 'sent' THEN 'sent by the ESP' ELSE '' END,
    l.email, split_part(l.email, '@', 2),
    CASE WHEN st.kind = 'email' THEN 'Quick question, ' || l.first_name ELSE '' END,
    CASE WHEN x.state = 'sent' THEN %(body)s ELSE '' END, '',
    CASE WHEN x.state IN ('sent', 'unknown') THEN '<m' || e.lead_id || '.' || st.position
        || '@bench.example>' ELSE '' END,
    CASE WHEN x.state = 'sent' THEN 'sp-' || e.lead_id || '-' || st.position ELSE '' END,
    CASE WHEN x.state = 'sent' AND st.position > 1 THEN '<m' || e.lead_id || '.1@bench.example>'
        ELSE '' END,
    CASE WHEN x.state IN ('task_done', 'task_skipped') THEN x.due + interval '2 hours'
        END,
    CASE WHEN x.state IN ('task_done', 'task_skipped') THEN 'op-otto' ELSE '' END,
    '', '[]'::jsonb,
    CASE WHEN st.position = 1 THEN jsonb_build_object('method', 'thompson', 'arm', x.arm)
        ELSE '{}'::jsonb END,
    CASE WHEN st.position = 1 AND x.arm = 'B' THEN %(template_b)s ELSE st.template_id END,
    CASE WHEN x.state IN ('sent', 'unknown', 'task_open', 'task_done', 'task_skipped')
        THEN %(run)s END,
    l.segment_id, x.due, x.due
FROM outreach_enrollment e
JOIN leads_lead l ON l.id = e.lead_id
CROSS JOIN (
    SELECT s.id, s.position, s.kind, min(t.messagetemplate_id) AS template_id
    FROM outreach_sequencestep s
    LEFT JOIN outreach_sequencestep_templates t ON t.sequencestep_id = s.id
    WHERE s.sequence_id = %(sequence)s GROUP BY s.id
) st,
LATERAL (SELECT e.lead_id %% 100 AS r) k,
LATERAL (
    SELECT now() - interval '30 days' + (e.lead_id %% 43200) * interval '1 minute'
        + (st.position - 1) * interval '3 days' AS due,
        CASE WHEN e.lead_id %% 2 = 0 THEN 'A' ELSE 'B' END AS arm,
        CASE
            WHEN k.r < 2 THEN 'blocked'
            WHEN k.r = 2 AND st.position = 1 THEN 'unknown'
            WHEN k.r = 2 THEN 'scheduled'
            WHEN st.position = 1 THEN 'sent'
            WHEN k.r BETWEEN 3 AND 9 THEN 'blocked'
            WHEN st.position = 2 THEN 'sent'
            WHEN st.position = 3 THEN CASE k.r %% 3 WHEN 0 THEN 'task_done'
                WHEN 1 THEN 'task_skipped' ELSE 'task_open' END
            WHEN k.r < 55 THEN 'sent'
            ELSE 'scheduled'
        END AS state,
        CASE
            WHEN k.r < 2 AND st.position = 1 THEN 'suppressed'
            WHEN k.r < 2 THEN 'sequence_stopped'
            WHEN k.r BETWEEN 3 AND 5 THEN 'replied'
            WHEN k.r BETWEEN 6 AND 7 THEN 'bounced'
            ELSE 'unsubscribed'
        END AS code
) x
WHERE e.campaign_id = %(campaign)s
"""

# Events of the sent emails; (kind, which emails, extra columns).
EVENT_SQL = """
INSERT INTO outreach_feedbackevent (
    source, event_id, kind, occurred_at, received_at, recipient, esp_message_id, thread_ids,
    reason, url, subject, text, reply_text, objection, reliable, sentiment, notes, message_id,
    lead_id, venture_id, matched_by, effect, handled_at, handled_by, escalated_to
)
SELECT 'sparkpost', %(kind)s || '-' || m.id, %(kind)s, m.sent_at + interval '1 hour',
    m.sent_at + interval '1 hour', m.recipient, m.esp_message_id, '[]'::jsonb,
    {reason}, {url}, {subject}, {text}, {text}, {objection}, %(kind)s <> 'opened', {sentiment},
    '', m.id, m.lead_id, m.venture_id, 'esp_message_id', 'recorded', NULL, '', ''
FROM outreach_outboundmessage m
WHERE m.campaign_id = %(campaign)s AND m.kind = 'email' AND m.state = 'sent' AND ({where})
"""
EVENTS = [
    ("delivered", "m.id %% 100 < 92", {}),
    ("opened", "(m.id * 7) %% 100 < 35", {}),
    ("clicked", "(m.id * 13) %% 100 < 6", {"url": "'https://bench.example/demo'"}),
    ("replied", "m.in_reply_to = '' AND m.lead_id %% 100 BETWEEN 3 AND 5", {
        "subject": "'Re: Quick question'", "text": "'Sounds interesting, call me Tuesday.'",
        "sentiment": "CASE m.lead_id %% 100 WHEN 3 THEN 'positive' WHEN 4 THEN 'neutral' "
                     "ELSE 'objection' END",
        "objection": "CASE WHEN m.lead_id %% 100 = 5 THEN 'price' ELSE '' END",
    }),
    ("bounced", "m.in_reply_to = '' AND m.lead_id %% 100 BETWEEN 6 AND 7",
     {"reason": "'550 5.1.1 <x>: Recipient address rejected'"}),
    ("unsubscribed", "m.in_reply_to = '' AND m.lead_id %% 200 = 9", {}),
    ("complained", "m.in_reply_to = '' AND m.lead_id %% 1000 = 8", {}),
]  # fmt: skip

AFTER_SQL = [
    # Leads whose story the events tell, and their enrolments.
    """UPDATE leads_lead SET status = 'replied' WHERE campaign_id = %(campaign)s
        AND id %% 100 BETWEEN 3 AND 5""",
    """UPDATE leads_lead SET status = 'bounced' WHERE campaign_id = %(campaign)s
        AND id %% 100 BETWEEN 6 AND 7""",
    """UPDATE leads_lead SET status = 'unsubscribed' WHERE campaign_id = %(campaign)s
        AND id %% 200 = 9""",
    """UPDATE outreach_enrollment SET state = 'stopped', stop_reason = 'bench'
        WHERE campaign_id = %(campaign)s AND lead_id %% 100 BETWEEN 3 AND 9""",
    """INSERT INTO leads_unsubscribe (identity_hash, source, reason, comment, created_at,
        reason_at, campaign_id, lead_id, venture_id)
        SELECT l.identity_hash, 'esp', CASE WHEN l.id %% 400 = 9 THEN 'too_many' ELSE '' END,
            '', now(), NULL, l.campaign_id, l.id, l.venture_id
        FROM leads_lead l WHERE l.campaign_id = %(campaign)s AND l.id %% 200 = 9""",
    """UPDATE leads_lead SET segment_id = (%(segments)s::bigint[])[1 + id %% 3]
        WHERE campaign_id = %(campaign)s AND id %% 3 = 0""",
]


def env_of(database_url: str) -> dict[str, str]:
    return clean_env(DATABASE_URL=database_url, LOG_LEVEL="WARNING")


# --- Data ----------------------------------------------------------------------------------------


def fixtures():
    """The venture, campaign, segments, four-step sequence, templates and mailboxes (once)."""
    import datetime as dt

    from outreach.models import DispatchRun, Mailbox, Sequence, SequenceStep
    from templating.models import MessageTemplate
    from templating.services import template_save
    from ventures.models import Campaign, CampaignStatus, IcpSegment, Venture

    venture, _ = Venture.objects.get_or_create(
        slug=SLUG,
        defaults={"name": "Bench report CSV", "timezone": "UTC", "owner_name": "Ada Owner",
                  "owner_email": "owner@bench.example", "daily_send_limit": 10**8,
                  "offer_summary": "Automated pipeline reporting for revenue teams.",
                  "postal_address": "Musterstrasse 1, 10115 Berlin, Germany"},
    )  # fmt: skip
    campaign, created = Campaign.objects.get_or_create(
        slug=SLUG,
        defaults={"venture": venture, "name": "Bench report CSV", "status": CampaignStatus.RUNNING,
                  "started_at": dt.datetime.now(dt.UTC) - dt.timedelta(days=31),
                  "daily_send_limit": 10**8, "sender_name": "Sam Sender",
                  "sender_email": "sam@bench.example"},
    )  # fmt: skip
    if created:
        for n in range(3):
            IcpSegment.objects.create(venture=venture, name=f"Segment {n}", slug=f"seg-{n}")
        sequence = Sequence.objects.create(
            campaign=campaign, slug="main", name="Main", is_default=True
        )
        for position, kind in ((1, "email"), (2, "email"), (3, "linkedin_connect"), (4, "email")):
            step = SequenceStep.objects.create(
                sequence=sequence, position=position, kind=kind, delay_days=3
            )
            labels = ("A", "B") if position == 1 else ("",)
            for label in labels:
                step.templates.add(
                    template_save(
                        template=MessageTemplate(
                            venture=venture, campaign=campaign, name=f"Step {position}{label}",
                            slug=f"step-{position}{label.lower()}", subject="Quick question",
                            body_text=BODY, narrative_angle="cost" if label else "",
                            variant_label=label,
                        ),
                        actor="bench",
                    )
                )  # fmt: skip
        for n in range(MAILBOXES):
            box = Mailbox.objects.create(venture=venture, name=f"Box {n}",
                                         from_email=f"sam{n}@bench.example")  # fmt: skip
            box.campaigns.add(campaign)
        DispatchRun.objects.create(worker="bench", mode="proof", campaign=campaign)
    return campaign


def build(campaign, leads: int) -> None:
    """Exactly `leads` leads and their messages, events and audit rows (rebuilt when the
    count differs)."""
    from django.db import connection

    from leads.models import Lead
    from outreach.facts import lead_facts_rebuild
    from outreach.models import DispatchRun
    from templating.models import MessageTemplate
    from ventures.models import IcpSegment

    if Lead.objects.filter(campaign=campaign).count() == leads:
        return
    sequence = campaign.sequences.get()
    params = {
        "campaign": campaign.pk, "venture": campaign.venture_id, "sequence": sequence.pk,
        "domains": DOMAINS, "nboxes": MAILBOXES, "n": leads, "body": SENT_BODY,
        "mailboxes": list(campaign.mailboxes.order_by("pk").values_list("pk", flat=True)),
        "template_b": MessageTemplate.objects.get(campaign=campaign, variant_label="B").pk,
        "run": DispatchRun.objects.filter(campaign=campaign).first().pk,
        "segments": list(IcpSegment.objects.filter(venture=campaign.venture_id)
                         .order_by("pk").values_list("pk", flat=True)),
    }  # fmt: skip
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM outreach_feedbackevent")
        for table in ("outreach_leadfacts", "leads_unsubscribe", "outreach_outboundmessage",
                      "outreach_enrollment", "leads_lead"):  # fmt: skip
            cursor.execute(f"DELETE FROM {table} WHERE campaign_id = %s", [campaign.pk])
        for sql in (LEADS_SQL, AFTER_SQL[-1], ANALYZE_LEADS, ENROL_SQL, MESSAGES_SQL):
            cursor.execute(sql, params)
        for kind, where, extra in EVENTS:
            columns = {"reason": "''", "url": "''", "subject": "''", "text": "''",
                       "objection": "''", "sentiment": "''", **extra}  # fmt: skip
            cursor.execute(EVENT_SQL.format(where=where, **columns), {**params, "kind": kind})
        for sql in AFTER_SQL[:-1]:
            cursor.execute(sql, params)
    # The leads' facts, as the tick and the feedback would have kept them.
    lead_facts_rebuild(campaign)
    with connection.cursor() as cursor:
        for table in ("leads_lead", "outreach_enrollment", "outreach_outboundmessage",
                      "outreach_feedbackevent", "leads_unsubscribe", "outreach_leadfacts"):  # fmt: skip
            cursor.execute(f"VACUUM ANALYZE {table}")
    print(f"built {leads:,} leads and their data in {time.perf_counter() - started:.1f} s",
          flush=True)  # fmt: skip


# The audit trail: one row per settled task (what `manual_task_settle` writes, against the
# campaign), and as many about another venture's campaigns, for the filter to leave out.
AUDIT_SQL = [
    """INSERT INTO ventures_auditevent (created_at, actor, action, entity_type, entity_id,
        entity_repr, venture_id, before, after, reason)
        SELECT m.settled_at, 'op-otto',
            CASE m.state WHEN 'task_done' THEN 'outreach.task_done' ELSE 'outreach.task_skipped'
            END, 'ventures.campaign', %(campaign)s::text, 'Bench report CSV', %(venture)s, NULL,
            jsonb_build_object('message', m.id, 'step', 3, 'kind', m.kind), 'called'
        FROM outreach_outboundmessage m
        WHERE m.campaign_id = %(campaign)s AND m.state IN ('task_done', 'task_skipped')""",
    """INSERT INTO ventures_auditevent (created_at, actor, action, entity_type, entity_id,
        entity_repr, venture_id, before, after, reason)
        SELECT now() - n * interval '1 second', 'op-otto', 'outreach.task_done',
            'ventures.campaign', (1000000 + n %% 50)::text, 'Elsewhere', 999999, NULL,
            jsonb_build_object('message', n, 'step', 3), 'called'
        FROM generate_series(1, %(settled)s) AS n""",
]


def audit_build(campaign) -> None:
    """The audit rows above, (re)written when their count is not the settled tasks'."""
    from django.db import connection

    from outreach.models import OutboundMessage
    from ventures.models import AuditEvent

    settled = OutboundMessage.objects.filter(
        campaign=campaign, state__in=["task_done", "task_skipped"]
    ).count()
    ours = AuditEvent.objects.filter(entity_type="ventures.campaign", entity_id=str(campaign.pk))
    if ours.count() == settled:
        return
    params = {"campaign": campaign.pk, "venture": campaign.venture_id, "settled": settled}
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE ventures_auditevent DISABLE TRIGGER USER")  # append-only
        cursor.execute("DELETE FROM ventures_auditevent WHERE entity_type = 'ventures.campaign'")
        cursor.execute("ALTER TABLE ventures_auditevent ENABLE TRIGGER USER")
        for sql in AUDIT_SQL:
            cursor.execute(sql, params)
        cursor.execute("VACUUM ANALYZE ventures_auditevent")


def sizes(campaign) -> dict[str, int]:
    from outreach.models import FeedbackEvent, OutboundMessage
    from ventures.models import AuditEvent

    return {
        "leads": campaign.leads.count(),
        "messages": OutboundMessage.objects.filter(campaign=campaign).count(),
        "events": FeedbackEvent.objects.filter(lead__campaign=campaign).count(),
        "audit_rows_in_table": AuditEvent.objects.count(),
    }


# --- One export, in a process of its own ---------------------------------------------------------


def rss_kb(field: str = "VmRSS") -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def child(kind: str) -> None:
    """Export `kind` of the bench campaign to /dev/null; prints rows, seconds and RSS."""
    import django

    django.setup()
    from django.db import connection

    from reporting.exports import export_write
    from ventures.models import Campaign

    campaign = Campaign.objects.get(slug=SLUG)
    connection.ensure_connection()
    before = rss_kb()
    with open(os.devnull, "wb") as out:
        started, cpu = time.perf_counter(), time.process_time()
        rows = export_write(kind, campaign, out)
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    print(json.dumps({"rows": rows, "seconds": seconds, "cpu_seconds": cpu,
                      "rss_before_kb": before, "hwm_kb": rss_kb("VmHWM")}), flush=True)  # fmt: skip


def run_child(kind: str, env: dict[str, str]) -> dict:
    proc = subprocess.Popen(
        [sys.executable, __file__, "--child", kind], env=env, cwd=ROOT, stdout=subprocess.PIPE
    )
    out = proc.stdout.read()
    proc.stdout.close()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"the {kind} export failed ({proc.returncode})")
    result = json.loads(out)
    # Kilobytes on Linux. It can include the forked parent's pages before the exec, so the
    # child's own high-water mark (VmHWM, read at its end) is reported beside it.
    result["maxrss_kb"] = usage.ru_maxrss
    result["rows_per_s"] = result["rows"] / result["seconds"]
    return result


def copy_baseline(database_url: str, campaign_id: int) -> dict:
    """PostgreSQL's own CSV of the messages' columns, through psycopg's COPY, into nothing."""
    import psycopg

    columns = ("id, lead_id, recipient, step_id, kind, state, reason_code, reason, attempts, "
               "due_at, sent_at, mailbox_id, template_id, message_id, esp_message_id, "
               "in_reply_to, run_id, settled_at, settled_by")  # fmt: skip
    sql = (
        f"COPY (SELECT {columns} FROM outreach_outboundmessage WHERE campaign_id = {campaign_id}"
        " ORDER BY id) TO STDOUT WITH CSV HEADER"
    )
    with psycopg.connect(database_url) as conn, conn.cursor() as cursor:
        size = 0
        started = time.perf_counter()
        with cursor.copy(sql) as copy:
            for block in copy:
                size += len(block)
        seconds = time.perf_counter() - started
        rows = conn.execute(
            "SELECT count(*) FROM outreach_outboundmessage WHERE campaign_id = %s", [campaign_id]
        ).fetchone()[0]
    return {"rows": rows, "seconds": seconds, "rows_per_s": rows / seconds, "bytes": size}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--leads", type=int, default=250_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_DB))
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return 0

    create_database(args.database_url)
    env = env_of(args.database_url)
    os.environ.update(env)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)
    campaign = fixtures()
    build(campaign, args.leads)
    audit_build(campaign)
    counts = sizes(campaign)
    print(f"campaign: {counts}", flush=True)
    kinds = [k for k in args.kinds.split(",") if k]
    runs = []
    for r in range(args.runs):
        load = os.getloadavg()[0]
        run = {kind: run_child(kind, env) for kind in kinds}
        run["copy"] = copy_baseline(args.database_url, campaign.pk)
        run["load"] = load
        runs.append(run)
        print(
            f"run {r + 1}: "
            + "; ".join(
                f"{k} {v['rows']:,} rows {v['rows_per_s']:,.0f}/s (cpu {v['cpu_seconds']:.1f} s)"
                f" peak {v['hwm_kb'] / 1024:.0f} MB"
                for k, v in run.items()
                if k in kinds
            )
            + f"; COPY {run['copy']['rows_per_s']:,.0f} rows/s; load average {load:.1f}",
            flush=True,
        )
    median = statistics.median
    summary = {"runs": args.runs, **counts, "exports": {}}
    for kind in kinds:
        summary["exports"][kind] = {
            "rows": runs[0][kind]["rows"],
            "rows_per_s": round(median(r[kind]["rows_per_s"] for r in runs)),
            "seconds": round(median(r[kind]["seconds"] for r in runs), 2),
            "cpu_seconds": round(median(r[kind]["cpu_seconds"] for r in runs), 2),
            "peak_rss_mb": round(max(r[kind]["hwm_kb"] for r in runs) / 1024, 1),
            "ru_maxrss_mb": round(max(r[kind]["maxrss_kb"] for r in runs) / 1024, 1),
            "rss_before_mb": round(median(r[kind]["rss_before_kb"] for r in runs) / 1024, 1),
        }
    summary["load_average"] = [round(r["load"], 1) for r in runs]
    summary["copy_rows_per_s"] = round(median(r["copy"]["rows_per_s"] for r in runs))
    if "messages" in kinds:
        summary["messages_over_copy"] = round(
            median(r["messages"]["rows_per_s"] / r["copy"]["rows_per_s"] for r in runs), 3
        )
    print(json.dumps(summary, indent=2) if args.json else summary)
    slow = [k for k, v in summary["exports"].items() if v["rows_per_s"] < 30_000]
    big = [k for k, v in summary["exports"].items() if v["peak_rss_mb"] >= 150]
    return 1 if slow or big else 0


if __name__ == "__main__":
    raise SystemExit(main())
