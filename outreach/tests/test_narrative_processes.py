"""Narrative memory and the leads' facts under real concurrent processes on PostgreSQL: ticks
sending into the same arms, then workers storing deliveries and readings of the same emails at
once. Every counter ends equal to what the messages and events say: no increment lost, none
doubled."""

from __future__ import annotations

import subprocess
import sys

import pytest
from django.db import connection

from outreach.facts import lead_facts_drift
from outreach.models import MessageState, OutboundMessage
from outreach.narrative import history_figures
from outreach.tally import tally_drift
from outreach.tests.outbox import all_day_campaign, narrative_stats, variant_sequence
from tests.factories import IcpSegmentFactory, LeadFactory
from tests.proc import REPO, clean_env, running_database_url

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

LEADS = 240
WORKERS = 3
# One feedback worker: a delivery report of its own for every sent email, and its own reading
# of each one's reply (the workers disagree), in an order of its own.
FEEDBACK = """
import sys
import django
django.setup()
from outreach.feedback import Incoming, feedback_record, reply_record
from outreach.models import OutboundMessage
worker = int(sys.argv[1])
sent = list(OutboundMessage.objects.filter(state="sent").order_by("id"))
sent = sent[worker::1] + sent[:worker] if worker % 2 else list(reversed(sent))
for m in sent:
    feedback_record(Incoming(source=f"esp{worker}", kind="delivered", event_id=f"d{m.pk}",
                             recipient=m.recipient, thread_ids=[m.message_id]))
    reading = ("positive", "objection", "negative")[(m.pk + worker) % 3]
    reply_record(message=m, sentiment=reading, actor=f"worker{worker}")
"""


def run_all(commands: list[list[str]], env: dict[str, str]) -> None:
    procs = [
        subprocess.Popen(
            command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for command in commands
    ]
    for proc in procs:
        _out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err


def test_concurrent_workers_keep_every_narrative_counter_exact(tmp_path):
    if connection.vendor != "postgresql":
        pytest.skip("concurrency is proven on PostgreSQL")
    campaign = all_day_campaign(venture_cap=100_000)
    variant_sequence(campaign)
    segment = IcpSegmentFactory(venture=campaign.venture, name="RevOps leads")
    for n in range(LEADS):
        email = f"p{n}@d{n % 40}.example"
        LeadFactory(
            campaign=campaign, email=email, email_key=email, segment=segment if n % 2 else None
        )
    env = clean_env(
        DATABASE_URL=running_database_url(),
        AICMO_ARTIFACT_DIR=str(tmp_path),
        AICMO_TICK_BATCH="10",
        AICMO_GLOBAL_DAILY_LIMIT="100000",
    )
    run_all([[sys.executable, str(REPO / "manage.py"), "tick"] for _ in range(WORKERS)], env)
    sent = OutboundMessage.objects.filter(state=MessageState.SENT)
    assert sent.count() == LEADS
    assert len(narrative_stats()) == 6  # 3 variants, in the segment and outside it
    assert sum(v[0] for v in narrative_stats().values()) == LEADS
    assert narrative_stats() == history_figures()
    assert lead_facts_drift() == []  # each lead's facts: one email sent
    assert tally_drift(campaign.pk) == []  # the messages' tallies: every count exact

    feedback = [[sys.executable, "-c", FEEDBACK, str(w)] for w in range(WORKERS)]
    run_all(feedback, env)
    figures = narrative_stats()
    assert figures == history_figures()
    # Three workers adding to the same leads' facts at once: each lead delivered and replied.
    assert lead_facts_drift() == []
    # Each email counts once as delivered and replied, however many reports and readings.
    assert sum(v[1] for v in figures.values()) == LEADS
    assert sum(v[2] for v in figures.values()) == LEADS
    # Its last reading decides: positive, or filed under an objection (negative is "other").
    assert sum(v[3] + v[4] for v in figures.values()) == LEADS
    assert sum(v[3] for v in figures.values()) > 0 and sum(v[4] for v in figures.values()) > 0
