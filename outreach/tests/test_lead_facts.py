"""Per-lead facts: the emails sent to each lead and the kinds of feedback seen, kept by the tick
and every feedback path in the transactions that record them, equal at every point to the
same facts computed from the messages and events, and rebuildable."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from leads.models import Lead
from outreach.dispatch import tick
from outreach.facts import FACT_BITS, lead_facts_add, lead_facts_drift, lead_facts_rebuild
from outreach.feedback import Incoming, feedback_record, feedback_record_many, reply_record
from outreach.models import LeadFacts, MessageState, OutboundMessage
from outreach.services import unknown_message_settle
from outreach.tests.outbox import NOON, first_emails_sent
from tests.factories import LeadFactory

pytestmark = pytest.mark.django_db


def facts_of(lead_id: int) -> tuple[int, set[str]] | None:
    row = LeadFacts.objects.filter(pk=lead_id).values_list("emails_sent", "event_flags").first()
    if row is None:
        return None
    return row[0], {flag for flag, bit in FACT_BITS.items() if row[1] & bit}


def event(message, kind: str, n: int, **fields):
    return feedback_record(
        Incoming(source="postmark", kind=kind, event_id=f"{kind}-{message.pk}-{n}",
                 recipient=message.recipient, thread_ids=[message.message_id], **fields)
    )  # fmt: skip


def test_each_email_the_tick_sends_counts_once_in_its_leads_facts():
    first = first_emails_sent(3)
    assert [facts_of(m.lead_id) for m in first] == [(1, set())] * 3
    with time_machine.travel(NOON + dt.timedelta(days=3, hours=1), tick=False):
        tick()
    assert OutboundMessage.objects.filter(state=MessageState.SENT).count() == 6
    assert [facts_of(m.lead_id) for m in first] == [(2, set())] * 3
    assert lead_facts_drift() == []


def test_events_set_their_kinds_once_and_a_positive_reply_sets_positive():
    first, second, third = first_emails_sent(3)
    event(first, "delivered", 1)
    event(first, "delivered", 1)  # the same event again: stored once, counts nothing
    event(first, "delivered", 2)  # a second delivery report: the lead was delivered, once
    event(first, "opened", 1)
    event(second, "replied", 1, text="Yes, call me.", sentiment="positive")
    event(third, "deferred", 1)  # a kind that is no fact: no row
    assert facts_of(first.lead_id) == (1, {"delivered", "opened"})
    assert facts_of(second.lead_id) == (1, {"replied", "positive"})
    assert facts_of(third.lead_id) == (1, set())
    reply_record(message=third, sentiment="neutral", actor="op", notes="Read in the inbox.")
    assert facts_of(third.lead_id) == (1, {"replied"})
    assert lead_facts_drift() == []


def test_an_event_matched_by_its_lead_alone_finds_the_leads_campaign():
    message = first_emails_sent(1)[0]
    lead = LeadFactory(campaign=message.campaign)  # never sent to: no row yet
    feedback_record(
        Incoming(source="form", kind="replied", event_id="r-1", lead_id=lead.pk, text="Hi!")
    )
    assert facts_of(lead.pk) == (0, {"replied"})
    assert LeadFacts.objects.get(pk=lead.pk).campaign_id == message.campaign_id
    assert lead_facts_drift() == []


def test_an_unknown_email_counts_when_it_is_settled_as_sent_by_hand_or_by_feedback():
    first, second, third = first_emails_sent(3)
    # The tick left them unknown (the worker died while handing them over): not counted.
    OutboundMessage.objects.filter(pk__in=[first.pk, second.pk, third.pk]).update(
        state=MessageState.UNKNOWN
    )
    lead_facts_rebuild()
    assert facts_of(first.lead_id) is None
    unknown_message_settle(message=first, sent=True, actor="op", reason="The server's log.")
    unknown_message_settle(message=second, sent=False, actor="op", reason="Not in the log.")
    event(third, "delivered", 1)  # proof of sending settles it, and its delivery counts
    assert facts_of(first.lead_id) == (1, set())
    assert facts_of(second.lead_id) is None
    assert facts_of(third.lead_id) == (1, {"delivered"})
    assert lead_facts_drift() == []


def test_a_batch_of_events_keeps_its_facts_in_a_fixed_number_of_statements():
    sent = first_emails_sent(33)
    counts = []
    for messages in (sent[:3], sent[3:]):
        batch = [
            Incoming(source="sparkpost", kind=kind, event_id=f"{kind}-{m.pk}",
                     recipient=m.recipient, thread_ids=[m.message_id])
            for m in messages for kind in ("delivered", "opened")
        ]  # fmt: skip
        with CaptureQueriesContext(connection) as queries:
            feedback_record_many(batch)
        counts.append(sum("leadfacts" in q["sql"] for q in queries.captured_queries))
        assert all(facts_of(m.lead_id) == (1, {"delivered", "opened"}) for m in messages)
    assert counts == [1, 1]


def test_drift_names_each_lead_whose_facts_differ_and_a_rebuild_mends_it():
    first, second = first_emails_sent(2)
    event(second, "bounced", 1, reason="550 5.1.1 user unknown")
    LeadFacts.objects.filter(pk=first.lead_id).update(emails_sent=5)
    LeadFacts.objects.filter(pk=second.lead_id).delete()
    campaign_id = first.campaign_id
    bounced = FACT_BITS["bounced"]
    assert lead_facts_drift() == [
        (first.lead_id, (campaign_id, 5, 0), (campaign_id, 1, 0)),
        (second.lead_id, None, (campaign_id, 1, bounced)),
    ]
    assert lead_facts_rebuild(first.campaign) == 2
    assert lead_facts_drift() == []
    assert facts_of(second.lead_id) == (1, {"bounced"})


def test_adding_nothing_writes_nothing():
    with CaptureQueriesContext(connection) as queries:
        lead_facts_add(sent=[], events=[])
    assert queries.captured_queries == []


def test_the_report_facts_command_checks_and_rebuilds(capsys):
    first = first_emails_sent(2)[0]
    call_command("report", "facts")
    assert "agree" in capsys.readouterr().out
    LeadFacts.objects.filter(pk=first.lead_id).update(emails_sent=9)
    with pytest.raises(CommandError, match="1 leads' facts differ"):
        call_command("report", "facts", "--campaign", str(first.campaign_id))
    assert (
        f"lead {first.lead_id}: kept 9 sent, flags 0x0, computed 1 sent" in capsys.readouterr().out
    )
    call_command("report", "facts", "--rebuild")
    assert "rebuilt 2 leads' facts" in capsys.readouterr().out
    assert lead_facts_drift() == []
    assert Lead.objects.count() == 2
