"""Real tick processes sending live to a slow SMTP server on PostgreSQL while a rule is
committed from outside: a kill switch, a pause, a suppression, unsubscribes. Once the commit
has returned, nothing more reaches the server for what the rule stops, and every message the
server took is recorded as sent, once. And the worker's database connection dropped in the
middle of a batch: nothing is sent twice, nothing is lost."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import time
from collections import Counter

import pytest
from django.db import connection
from django.utils import timezone

from leads.models import Lead, UnsubscribeSource
from leads.suppression import suppression_add
from leads.unsubscribes import lead_unsubscribe
from outreach.enrollment import campaign_enrol
from outreach.models import DispatchRun, Mailbox, MessageState, OutboundMessage, SendLedger
from outreach.tests.outbox import all_day_campaign, tick_processes_stop, two_step_sequence
from tests.factories import LeadFactory
from tests.proc import REPO, clean_env, running_database_url
from ventures.models import SendMode
from ventures.services import (
    campaign_set_kill_switch,
    campaign_transition,
    global_kill_switch_set,
    venture_set_kill_switch,
)

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

LEADS = 160
WORKERS = 2
STARTED = 20  # arrivals before the rule is committed: the tick is well under way
ACTOR = "mid-tick test"


@pytest.fixture
def campaign(smtp_sink):
    if connection.vendor != "postgresql":
        pytest.skip("concurrency is proven on PostgreSQL")
    campaign = all_day_campaign(venture_cap=100_000)
    campaign.mode = SendMode.LIVE
    campaign.save(update_fields=["mode"])
    two_step_sequence(campaign)
    box = Mailbox.objects.create(
        venture=campaign.venture, name="Sam", from_name="Sam Sender",
        from_email="sam@venture.example", connection_url=smtp_sink.url, daily_limit=100_000,
        min_gap_seconds=0, gap_jitter_seconds=0,
    )  # fmt: skip
    box.campaigns.add(campaign)
    for n in range(LEADS):
        address = f"m{n}@{'a' if n % 2 else 'b'}.example"
        LeadFactory(campaign=campaign, email=address, email_key=address)
    assert campaign_enrol(campaign=campaign) == LEADS
    smtp_sink.data_delay = 0.02
    return campaign


class Ticks:
    """`manage.py tick --loop` processes in live mode; stopped with SIGTERM."""

    def __init__(self, tmp_path, sink, *, workers: int = WORKERS, **more: str) -> None:
        env = clean_env(
            DATABASE_URL=running_database_url(),
            AICMO_ARTIFACT_DIR=str(tmp_path),
            AICMO_SEND_MODE="live",
            EMAIL_URL=sink.url,
            AICMO_SITE_URL="https://aicmo.example",
            AICMO_TICK_BATCH="8",
            AICMO_GLOBAL_DAILY_LIMIT="100000",
            AICMO_RECIPIENT_DOMAIN_DAILY_LIMIT="100000",
            **more,
        )
        command = [sys.executable, str(REPO / "manage.py"), "tick", "--loop", "--interval", "0.1"]
        self.procs = [
            subprocess.Popen(
                command,
                cwd=REPO,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(workers)
        ]

    def stop(self) -> list[str]:
        """Stop every worker; their stderr."""
        return tick_processes_stop(self.procs)


def wait_for(condition, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def first_steps():
    return OutboundMessage.objects.filter(step__position=1)


def nothing_due_for(domain: str) -> bool:
    waiting = [MessageState.SCHEDULED, MessageState.CLAIMED, MessageState.SENDING]
    return not first_steps().filter(recipient_domain=domain, state__in=waiting).exists()


def assert_the_server_and_the_database_agree(sink) -> None:
    recipients = sink.recipients()
    assert len(recipients) == len(set(recipients))  # nothing arrived twice
    sent = set(first_steps().filter(state=MessageState.SENT).values_list("recipient", flat=True))
    assert sent == set(recipients)  # every arrival is recorded as sent, and only those
    assert not first_steps().filter(state__in=["claimed", "sending", "unknown"]).exists()


HALTS = {
    "global kill switch": lambda c: global_kill_switch_set(on=True, actor=ACTOR, reason="test"),
    "venture kill switch": lambda c: venture_set_kill_switch(
        venture=c.venture, on=True, actor=ACTOR
    ),
    "campaign kill switch": lambda c: campaign_set_kill_switch(campaign=c, on=True, actor=ACTOR),
    "pause": lambda c: campaign_transition(campaign=c, action="pause", actor=ACTOR),
}


@pytest.mark.parametrize("halt", list(HALTS))
def test_nothing_reaches_the_server_once_a_halt_is_committed(campaign, smtp_sink, tmp_path, halt):
    ticks = Ticks(tmp_path, smtp_sink)
    try:
        wait_for(lambda: len(smtp_sink.messages) >= STARTED, 60)
        HALTS[halt](campaign)
        committed = time.monotonic()
        time.sleep(1.5)  # the workers go on looping
        late = [m.rcpt_tos for m in smtp_sink.messages if m.received_at > committed]
        stopped_at = len(smtp_sink.messages)
    finally:
        ticks.stop()
    assert late == []
    assert stopped_at < LEADS  # the halt stopped the tick part way, as intended
    assert_the_server_and_the_database_agree(smtp_sink)
    waiting = first_steps().exclude(state=MessageState.SENT)
    assert set(waiting.values_list("state", flat=True)) <= {"scheduled", "deferred"}


def test_nothing_reaches_a_domain_once_its_suppression_is_committed(campaign, smtp_sink, tmp_path):
    ticks = Ticks(tmp_path, smtp_sink)
    try:
        wait_for(lambda: len(smtp_sink.messages) >= STARTED, 60)
        suppression_add(values=["@b.example"], venture=campaign.venture, actor=ACTOR)
        committed = time.monotonic()
        wait_for(lambda: nothing_due_for("a.example") and nothing_due_for("b.example"), 60)
    finally:
        ticks.stop()
    late = [r for m in smtp_sink.messages if m.received_at > committed for r in m.rcpt_tos]
    assert late and all(r.endswith("@a.example") for r in late)  # the rest went on
    assert_the_server_and_the_database_agree(smtp_sink)
    b_pending = first_steps().filter(recipient_domain="b.example").exclude(state="sent")
    assert b_pending.exists()
    assert set(b_pending.values_list("state", "reason_code")) == {("blocked", "suppressed")}
    assert not first_steps().filter(recipient_domain="a.example").exclude(state="sent").exists()


def test_nothing_reaches_a_person_once_their_unsubscribe_is_committed(
    campaign, smtp_sink, tmp_path
):
    ticks = Ticks(tmp_path, smtp_sink)
    committed: dict[str, float] = {}
    try:
        wait_for(lambda: len(smtp_sink.messages) >= STARTED, 60)
        # People whose messages are being handed over right now (the rest of their batch is
        # still to go), and people soon in line.
        wait_for(lambda: first_steps().filter(state=MessageState.SENDING).exists(), 10)
        sending = first_steps().filter(state=MessageState.SENDING).order_by("-due_at", "-id")
        pending = first_steps().filter(state=MessageState.SCHEDULED).order_by("due_at", "id")
        people = [*sending.values_list("lead_id", flat=True)[:4]]
        people += pending.values_list("lead_id", flat=True)[20:100:5]
        for lead_id in people:
            lead = Lead.objects.get(pk=lead_id)
            lead_unsubscribe(lead=lead, source=UnsubscribeSource.ONE_CLICK, actor=ACTOR)
            committed[lead.email] = time.monotonic()
        wait_for(lambda: nothing_due_for("a.example") and nothing_due_for("b.example"), 60)
    finally:
        ticks.stop()
    late = [
        r
        for m in smtp_sink.messages
        for r in m.rcpt_tos
        if r in committed and m.received_at > committed[r]
    ]
    assert late == []
    assert_the_server_and_the_database_agree(smtp_sink)
    stopped = first_steps().filter(recipient__in=list(committed)).exclude(state="sent")
    assert stopped.count() >= len(committed) // 2  # most were stopped before their turn
    assert set(stopped.values_list("state", "reason_code")) == {("blocked", "unsubscribed")}


def drop_connection_in_hand_over() -> bool:
    """Terminate the worker's database connection while it is handing a batch over (its
    transaction open, waiting for the SMTP server)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND state = 'idle in transaction'"
        )
        return any(row[0] for row in cursor.fetchall())


def test_a_database_connection_dropped_mid_batch_sends_nothing_twice_and_loses_nothing(
    campaign, smtp_sink, tmp_path
):
    smtp_sink.data_delay = 0.03
    ticks = Ticks(tmp_path, smtp_sink, workers=1)
    failed = DispatchRun.objects.filter(error__startswith="OperationalError")
    try:
        wait_for(lambda: first_steps().filter(state=MessageState.SENDING).exists(), 60)
        wait_for(drop_connection_in_hand_over, 10)
        # The failed pass records its error over a new connection; then its lease runs out
        # (made to, at once) and a later pass of the same worker recovers its batch.
        wait_for(failed.exists, 30)
        lost_lease = first_steps().filter(state=MessageState.SENDING, run__in=failed)
        assert lost_lease.update(lease_until=timezone.now() - dt.timedelta(seconds=1))
        settled = [MessageState.SCHEDULED, MessageState.CLAIMED, MessageState.SENDING]
        wait_for(lambda: not first_steps().filter(state__in=settled).exists(), 90)
    finally:
        errors = ticks.stop()
    # The worker said so in one line, reconnected and went on.
    assert "Tick stopped by a database error" in errors[0]
    assert "Traceback" not in errors[0]
    # The batch whose record was lost: unknown, never re-sent; everything else sent once.
    states = Counter(first_steps().values_list("state", flat=True))
    assert set(states) == {MessageState.SENT, MessageState.UNKNOWN}, states
    unknown = first_steps().filter(state=MessageState.UNKNOWN)
    assert set(unknown.values_list("reason_code", flat=True)) == {"worker_stopped"}
    recipients = smtp_sink.recipients()
    assert len(recipients) == len(set(recipients))
    sent = set(first_steps().filter(state=MessageState.SENT).values_list("recipient", flat=True))
    assert sent <= set(recipients) <= sent | set(unknown.values_list("recipient", flat=True))
    ledger = SendLedger.objects.get(scope="campaign", key=str(campaign.pk))
    assert ledger.count == states[MessageState.SENT] + states[MessageState.UNKNOWN] == LEADS
