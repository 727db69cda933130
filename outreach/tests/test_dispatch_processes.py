"""Several real tick processes at once on PostgreSQL: every message once, caps exact."""

from __future__ import annotations

import email
import subprocess
import sys
from email import policy

import pytest
from django.db import connection

from outreach.models import MessageState, OutboundMessage, SendLedger
from outreach.tests.outbox import all_day_campaign, two_step_sequence
from tests.factories import LeadFactory
from tests.proc import REPO, clean_env, running_database_url

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

LEADS = 300
VENTURE_CAP = 250


def test_concurrent_ticks_send_every_message_once_and_keep_the_cap_exact(tmp_path):
    if connection.vendor != "postgresql":
        pytest.skip("concurrency is proven on PostgreSQL")
    campaign = all_day_campaign(venture_cap=VENTURE_CAP)
    venture = campaign.venture
    two_step_sequence(campaign)
    for n in range(LEADS):
        LeadFactory(
            campaign=campaign, email=f"p{n}@d{n % 60}.example", email_key=f"p{n}@d{n % 60}.example"
        )
    env = clean_env(
        DATABASE_URL=running_database_url(),
        AICMO_ARTIFACT_DIR=str(tmp_path),
        AICMO_TICK_BATCH="15",
        AICMO_GLOBAL_DAILY_LIMIT="100000",
    )
    procs = [
        subprocess.Popen(
            [sys.executable, str(REPO / "manage.py"), "tick", "--json"],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for _ in range(3)
    ]  # fmt: skip
    for proc in procs:
        _out, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err
    sent = OutboundMessage.objects.filter(step__position=1, state=MessageState.SENT)
    assert sent.count() == VENTURE_CAP
    deferred = OutboundMessage.objects.filter(step__position=1, state=MessageState.DEFERRED)
    assert deferred.count() == LEADS - VENTURE_CAP
    assert {m.reason_code for m in deferred} == {"cap"}
    assert not OutboundMessage.objects.filter(state__in=["claimed", "sending", "unknown"]).exists()
    files = list(tmp_path.glob("runs/*/eml/*.eml"))
    recipients = [
        email.message_from_bytes(f.read_bytes(), policy=policy.default)["To"] for f in files
    ]
    assert len(recipients) == len(set(recipients)) == VENTURE_CAP  # each arrived once
    assert SendLedger.objects.get(scope="venture", key=str(venture.pk)).count == VENTURE_CAP
    # More than one process did real work: the claims interleaved.
    assert len({f.parent.parent.name for f in files}) >= 2
