"""Real tick processes on PostgreSQL, killed with SIGKILL at random moments and restarted:
nothing is sent twice, nothing is lost, and the cap holds."""

from __future__ import annotations

import datetime as dt
import random
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest
from django.db.models import Count
from django.utils import timezone

from outreach.enrollment import campaign_enrol
from outreach.facts import lead_facts_drift
from outreach.models import MessageState, OutboundMessage, SendLedger
from outreach.tally import tally_drift
from outreach.tests.outbox import all_day_campaign, tick_processes_stop, two_step_sequence
from tests.factories import LeadFactory
from tests.proc import REPO, clean_env, manage, running_database_url

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

LEADS = 600
VENTURE_CAP = 450
WORKERS = 3
KILLS = 6
# Every state a message may end in, each with the reason that explains it.
SETTLED = {MessageState.SENT, MessageState.BLOCKED, MessageState.FAILED, MessageState.DEFERRED,
           MessageState.UNKNOWN}  # fmt: skip


class Workers:
    """`manage.py tick --loop` processes; a killed one's leases are made to lapse at once, as
    if its lease had run out (the survivors' next pass recovers them)."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.procs = [self._start() for _ in range(WORKERS)]

    def _start(self) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, str(REPO / "manage.py"), "tick", "--loop", "--interval", "0.2"],
            cwd=REPO, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip

    def kill_one(self, rng: random.Random) -> None:
        n = rng.randrange(len(self.procs))
        victim = self.procs[n]
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)
        held = lapse_leases(run__worker__endswith=f":{victim.pid}")
        print(f"killed {victim.pid}, which held {held} messages")  # shown if the test fails
        self.procs[n] = self._start()

    def stop(self) -> None:
        tick_processes_stop(self.procs)


def lapse_leases(**which) -> int:
    return OutboundMessage.objects.filter(
        state__in=[MessageState.CLAIMED, MessageState.SENDING], **which
    ).update(lease_until=timezone.now() - dt.timedelta(seconds=1))


def first_steps():
    return OutboundMessage.objects.filter(step__position=1)


def wait_until(condition, *, deadline: float) -> None:
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.1)


def work_started() -> bool:
    return first_steps().exclude(state=MessageState.SCHEDULED).exists()


def nothing_due() -> bool:
    waiting = [MessageState.SCHEDULED, MessageState.CLAIMED, MessageState.SENDING]
    return not first_steps().filter(state__in=waiting).exists()


def test_killed_and_restarted_ticks_send_nothing_twice_lose_nothing_and_keep_the_cap(tmp_path):
    campaign = all_day_campaign(venture_cap=VENTURE_CAP)
    two_step_sequence(campaign)
    for n in range(LEADS):
        address = f"p{n}@d{n % 60}.example"
        LeadFactory(campaign=campaign, email=address, email_key=address)
    assert campaign_enrol(campaign=campaign) == LEADS
    env = clean_env(
        DATABASE_URL=running_database_url(),
        AICMO_ARTIFACT_DIR=str(tmp_path),
        AICMO_TICK_BATCH="5",
        AICMO_TICK_LEASE_SECONDS="30",
        AICMO_GLOBAL_DAILY_LIMIT="100000",
    )
    seed = random.randrange(2**32)  # noqa: S311 - when to kill, not a secret
    print(f"kill schedule seed: {seed}")  # shown if the test fails
    rng = random.Random(seed)  # noqa: S311
    workers = Workers(env)
    started = time.monotonic()
    try:
        wait_until(work_started, deadline=started + 20)
        for _ in range(KILLS):
            time.sleep(rng.uniform(0.2, 0.8))
            workers.kill_one(rng)
        wait_until(nothing_due, deadline=started + 45)
    finally:
        workers.stop()
    # Whatever a worker still held when it stopped: its lease runs out, then a final pass.
    lapse_leases()
    final = manage("tick", env=env)
    assert final.returncode == 0, final.stderr

    states = Counter(first_steps().values_list("state", flat=True))
    assert sum(states.values()) == LEADS
    assert set(states) <= SETTLED, states  # none claimed, sending or still scheduled: 0 lost
    assert not first_steps().filter(reason="").exclude(state=MessageState.SENT).exists()
    # Each message was handed over (written) at most once, and only if it is sent or unknown.
    written = Counter(p.stem for p in tmp_path.glob("runs/*/eml/*.eml"))
    assert max(written.values()) == 1, written.most_common(3)
    keys = dict(first_steps().values_list("idempotency_key", "state"))
    assert {keys[k] for k in written} <= {MessageState.SENT, MessageState.UNKNOWN}
    sent = {k for k, state in keys.items() if state == MessageState.SENT}
    assert sent <= set(written)
    # The cap: the venture's slots are exactly what was sent or may have been, never above it.
    ledger = SendLedger.objects.get(scope="venture", key=str(campaign.venture_id))
    assert ledger.count == states[MessageState.SENT] + states[MessageState.UNKNOWN]
    assert ledger.count <= VENTURE_CAP
    assert states[MessageState.SENT] + states[MessageState.UNKNOWN] == VENTURE_CAP
    assert not first_steps().values("lead").annotate(n=Count("id")).filter(n__gt=1).exists()
    # What reports read: every sent email counted once in its lead's facts, whatever was killed.
    assert lead_facts_drift() == []
    # And the messages' tallies (kept by triggers, folded by every worker): every count exact.
    assert tally_drift(campaign.pk) == []
    # The follow-ups of the sent ones are planned, not due.
    follow_ups = OutboundMessage.objects.filter(step__position=2)
    assert follow_ups.count() == states[MessageState.SENT]
    assert not follow_ups.exclude(state=MessageState.SCHEDULED).exists()
