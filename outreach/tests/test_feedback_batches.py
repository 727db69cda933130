"""An ESP's batch of events is stored together: a few queries whatever its size, each event
once even when the batch repeats one, and all or nothing (a failure is a 503, and the ESP's
retry stores it)."""

from __future__ import annotations

import pytest
from django.db import OperationalError, connection
from django.test.utils import CaptureQueriesContext

from leads.models import LeadStatus, SuppressionEntry
from outreach.models import FeedbackEvent, MessageState
from outreach.tests.outbox import first_emails_sent
from outreach.tests.test_feedback_webhooks import post

pytestmark = pytest.mark.django_db
SPARKPOST = "/anymail/sparkpost/tracking/"


@pytest.fixture(autouse=True)
def webhook_settings(settings):
    settings.ANYMAIL = {"WEBHOOK_SECRET": "hooks:correct-horse-battery"}


@pytest.fixture
def sent():
    """80 first emails sent, each with the ESP's id `t<pk>`."""
    messages = first_emails_sent(80, esp_id="t{pk}")
    assert {m.state for m in messages} == {MessageState.SENT}
    return messages


def sparkpost(message, kind: str, event_id: str, **more) -> dict:
    event = {
        "type": kind, "event_id": event_id, "transmission_id": message.esp_message_id,
        "rcpt_to": message.recipient, "raw_rcpt_to": message.recipient,
        "timestamp": "1764673554", "message_id": "000443ee14578172be22", "customer_id": "1",
        **more,
    }  # fmt: skip
    return {"msys": {"message_event": event}} if kind in ("delivery", "bounce") else {
        "msys": {"track_event": event}
    }  # fmt: skip


BOUNCE = {"bounce_class": "10", "reason": "550 5.1.1 <x>: Recipient address rejected"}


def batch_of(messages, *, prefix: str) -> list[dict]:
    """A delivery and an open for each message, and hard bounces for the last two."""
    events = []
    for m in messages[:-2]:
        events.append(sparkpost(m, "delivery", f"{prefix}d{m.pk}"))
        events.append(sparkpost(m, "open", f"{prefix}o{m.pk}"))
    for m in messages[-2:]:
        events.append(sparkpost(m, "bounce", f"{prefix}b{m.pk}", **BOUNCE))
    return events


def test_a_batch_is_stored_in_the_same_few_queries_whatever_its_size(client, sent):
    counts = []
    for prefix, messages in (("small", sent[:10]), ("large", sent[10:80])):
        with CaptureQueriesContext(connection) as queries:
            assert post(client, SPARKPOST, batch_of(messages, prefix=prefix)).status_code == 200
        counts.append(len(queries))
    assert counts[0] == counts[1], counts
    assert FeedbackEvent.objects.filter(kind="delivered").count() == 8 + 68
    assert FeedbackEvent.objects.filter(kind="opened", reliable=False).count() == 8 + 68
    bounced = [m.lead_id for m in (sent[8], sent[9], sent[78], sent[79])]
    assert set(
        sent[0]
        .lead.__class__.objects.filter(status=LeadStatus.BOUNCED)
        .values_list("pk", flat=True)
    ) == set(bounced)
    assert SuppressionEntry.objects.filter(source="bounce").count() == 4
    effects = set(FeedbackEvent.objects.filter(kind="bounced").values_list("effect", flat=True))
    assert all(e.endswith("in the venture; the lead bounced") for e in effects)
    assert set(FeedbackEvent.objects.filter(kind="delivered").values_list("effect", flat=True)) == {
        "recorded"
    }


def test_an_event_repeated_within_a_batch_and_a_replayed_batch_count_once(client, sent):
    events = batch_of(sent[:5], prefix="r")
    assert post(client, SPARKPOST, [*events, events[0], events[-1]]).status_code == 200
    assert FeedbackEvent.objects.count() == len(events) == 3 * 2 + 2
    with CaptureQueriesContext(connection) as replay:
        assert post(client, SPARKPOST, events).status_code == 200
    assert FeedbackEvent.objects.count() == len(events)
    writes = [q for q in replay if q["sql"].lstrip().upper().startswith(("INSERT", "UPDATE"))]
    assert writes == []  # a replay only reads
    assert SuppressionEntry.objects.filter(source="bounce").count() == 2


def test_a_batch_that_cannot_be_stored_is_a_503_and_its_retry_stores_it(client, sent, monkeypatch):
    """The database fails while the batch is written (injected: a lock timeout): nothing of
    it is kept, not even the bounce's suppression, and the ESP's retry stores it whole."""
    from outreach import feedback

    events = batch_of(sent[:4], prefix="f")

    def locked(*args, **kwargs):
        raise OperationalError("canceling statement due to lock timeout")

    monkeypatch.setattr(feedback, "rows_insert", locked)
    response = post(client, SPARKPOST, events)
    assert response.status_code == 503 and b"deliver them again" in response.content
    assert not FeedbackEvent.objects.exists() and not SuppressionEntry.objects.exists()
    monkeypatch.undo()
    assert post(client, SPARKPOST, events).status_code == 200
    assert FeedbackEvent.objects.count() == len(events)
    assert SuppressionEntry.objects.filter(source="bounce").count() == 2


RECORD = """
import json, sys, time
import django
django.setup()
from outreach.feedback import Incoming, feedback_record_many
batch = [Incoming(**item) for item in json.loads(sys.argv[1])]
while time.time() < float(sys.argv[2]):
    time.sleep(0.001)
created = sum(c for _, c in feedback_record_many(batch))
print(created)
"""


@pytest.mark.postgres
def test_the_same_batch_delivered_twice_at_once_is_stored_once(transactional_db):
    """Two real processes store the same ESP batch at the same moment (an ESP retrying while
    the first delivery is still being stored): every event is stored once, and the bounces
    suppress once."""
    import json
    import time

    from tests.proc import clean_env, running_database_url

    messages = first_emails_sent(60)
    batch = [
        {"source": "sparkpost", "kind": "bounced" if i % 10 == 0 else "delivered",
         "event_id": f"e{m.pk}", "recipient": m.recipient, "thread_ids": [m.message_id],
         "reason": "550 5.1.1 unknown user"}
        for i, m in enumerate(messages)
    ]  # fmt: skip
    env = clean_env(DATABASE_URL=running_database_url())
    start = str(time.time() + 3)
    procs = [manage_python(RECORD, json.dumps(batch), start, env=env) for _ in range(2)]
    results = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in results]
    assert sum(int(out) for out, _ in results) == 60
    assert FeedbackEvent.objects.count() == 60
    assert SuppressionEntry.objects.filter(source="bounce").count() == 6
    assert sent_count(LeadStatus.BOUNCED) == 6


def sent_count(status: str) -> int:
    from leads.models import Lead

    return Lead.objects.filter(status=status).count()


@pytest.mark.postgres
def test_batches_that_act_on_each_others_leads_store_side_by_side(transactional_db):
    """Two real processes store batches at once, each unsubscribing and bouncing leads the
    other only records deliveries for: neither waits on the other's locks in a cycle
    (a deadlock would fail one of them), and every effect lands."""
    import json
    import time

    from leads.models import Lead
    from tests.proc import clean_env, running_database_url

    messages = first_emails_sent(80)
    halves = (messages[:40], messages[40:])

    def batch(acting, recording, tag):
        events = []
        for i, m in enumerate(acting):
            kind = "unsubscribed" if i % 2 else "bounced"
            events.append({"source": "sparkpost", "kind": kind, "event_id": f"{tag}-a{m.pk}",
                           "thread_ids": [m.message_id], "recipient": m.recipient})  # fmt: skip
        for m in recording:
            events.append({"source": "sparkpost", "kind": "delivered",
                           "event_id": f"{tag}-r{m.pk}", "thread_ids": [m.message_id]})  # fmt: skip
        return events

    env = clean_env(DATABASE_URL=running_database_url())
    start = str(time.time() + 3)
    procs = [
        manage_python(RECORD, json.dumps(batch(mine, theirs, tag)), start, env=env)
        for tag, mine, theirs in (("x", halves[0], halves[1]), ("y", halves[1], halves[0]))
    ]
    results = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-2000:] for _, err in results]
    assert sum(int(out) for out, _ in results) == 160
    assert Lead.objects.filter(status=LeadStatus.UNSUBSCRIBED).count() == 40
    assert Lead.objects.filter(status=LeadStatus.BOUNCED).count() == 40


def manage_python(code: str, *args: str, env: dict):
    import subprocess
    import sys

    from tests.proc import REPO

    return subprocess.Popen(
        [sys.executable, "-c", code, *args], cwd=REPO, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
