"""Live mode against a real SMTP server on loopback (`tests/smtp.py`): what arrives, over how
many connections, and what each answer of the server does to the message, the caps and the
lead."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine

from leads.models import LeadStatus, SuppressionEntry
from outreach.dispatch import tick
from outreach.models import Enrollment, Mailbox, MessageState, OutboundMessage, SendLedger
from outreach.tests.outbox import NOON, running_campaign, two_step_sequence
from tests.factories import LeadFactory
from ventures.models import SendMode

pytestmark = pytest.mark.django_db

SITE = "https://aicmo.example"


@pytest.fixture(autouse=True)
def live(settings):
    settings.AICMO_SEND_MODE = "live"
    settings.AICMO_SITE_URL = SITE


@pytest.fixture
def clock():
    with time_machine.travel(NOON, tick=False) as traveller:
        yield traveller


@pytest.fixture
def campaign(smtp_sink, clock):
    """A running live campaign whose one mailbox sends to the sink, with no gap between sends."""
    campaign = running_campaign(mode=SendMode.LIVE)
    two_step_sequence(campaign, delay_days=3)
    box = Mailbox.objects.create(
        venture=campaign.venture, name="Sam", from_name="Sam Sender",
        from_email="sam@venture.example", reply_to="sam.replies@venture.example",
        connection_url=smtp_sink.url, daily_limit=1000, min_gap_seconds=0, gap_jitter_seconds=0,
    )  # fmt: skip
    box.campaigns.add(campaign)
    return campaign


def first_message(lead) -> OutboundMessage:
    return OutboundMessage.objects.get(lead=lead, step__position=1)


def slots_taken(campaign) -> int:
    ledger = SendLedger.objects.filter(scope="campaign", key=str(campaign.pk)).first()
    return ledger.count if ledger else 0


def test_each_message_arrives_once_with_our_headers_over_one_connection(campaign, smtp_sink):
    leads = LeadFactory.create_batch(3, campaign=campaign)
    assert tick().counts == {"sent": 3}
    assert smtp_sink.connections == 1  # one connection for the whole batch
    assert sorted(smtp_sink.recipients()) == sorted(lead.email for lead in leads)
    for received in smtp_sink.messages:
        mail = received.email
        message = OutboundMessage.objects.get(recipient=received.rcpt_tos[0], step__position=1)
        assert mail["Message-ID"] == message.message_id
        assert received.mail_from == "sam@venture.example"
        assert mail["From"] == "Sam Sender <sam@venture.example>"
        assert mail["Reply-To"] == "sam.replies@venture.example"
        https, mailto = (part.strip(" <>") for part in mail["List-Unsubscribe"].split(","))
        assert https.startswith(f"{SITE}/u/") and mailto.startswith("mailto:unsubscribe@")
        assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert "In-Reply-To" not in mail and "References" not in mail
    assert tick().counts == {}
    assert len(smtp_sink.messages) == 3


def test_a_follow_up_replies_in_the_first_emails_thread(campaign, smtp_sink, clock):
    lead = LeadFactory(campaign=campaign)
    tick()
    clock.move_to(NOON + dt.timedelta(days=3))
    assert tick().counts == {"sent": 1}
    first, second = (received.email for received in smtp_sink.messages)
    assert second["In-Reply-To"] == first["Message-ID"] == second["References"]
    assert second["Subject"] == "Re: " + first["Subject"]
    assert (
        OutboundMessage.objects.get(lead=lead, step__position=2).message_id
        == (second["Message-ID"])
    )


@pytest.mark.parametrize(
    ("command", "code"), [("RCPT", 421), ("RCPT", 451), ("DATA", 421), ("DATA", 451)]
)
def test_a_temporary_refusal_defers_with_backoff_and_gives_the_slot_back(
    campaign, smtp_sink, clock, command, code
):
    lead = LeadFactory(campaign=campaign)
    smtp_sink.fail_next(command, code)
    assert tick().counts == {"deferred": 1}
    message = first_message(lead)
    assert (message.state, message.reason_code, message.attempts) == (
        MessageState.DEFERRED, "transient", 1,
    )  # fmt: skip
    assert str(code) in message.reason
    # Five minutes, plus up to 20% jitter.
    assert NOON + dt.timedelta(minutes=5) <= message.due_at <= NOON + dt.timedelta(minutes=6)
    assert slots_taken(campaign) == 0 and not smtp_sink.messages
    assert tick().counts == {}  # not due yet
    clock.move_to(message.due_at)
    assert tick().counts == {"sent": 1}
    assert smtp_sink.recipients() == [lead.email]
    assert slots_taken(campaign) == 1
    message.refresh_from_db()
    assert (message.state, message.attempts) == (MessageState.SENT, 2)


def test_after_the_last_attempt_a_temporary_refusal_fails_the_message(
    campaign, smtp_sink, clock, settings
):
    settings.AICMO_SEND_MAX_ATTEMPTS = 3
    lead = LeadFactory(campaign=campaign)
    smtp_sink.fail_next("RCPT", 451, times=3)
    delays = []
    for _ in range(3):
        tick()
        message = first_message(lead)
        if message.state == MessageState.DEFERRED:
            delays.append(message.due_at - dt.datetime.now(dt.UTC))
            clock.move_to(message.due_at)
    assert (message.state, message.reason_code, message.attempts) == (
        MessageState.FAILED, "gave_up", 3,
    )  # fmt: skip
    assert len(delays) == 2
    assert tick().counts == {} and not smtp_sink.messages
    assert slots_taken(campaign) == 0
    assert first_message(lead).lead.status == LeadStatus.ACTIVE  # not the recipient's fault


def test_a_permanent_refusal_fails_the_message_suppresses_the_address_and_bounces_the_lead(
    campaign, smtp_sink
):
    refused, other = LeadFactory.create_batch(2, campaign=campaign)
    smtp_sink.fail_next("RCPT", 550)  # the first in due order
    assert tick().counts == {"failed": 1, "sent": 1}
    message = first_message(refused)
    assert (message.state, message.reason_code) == (MessageState.FAILED, "hard_bounce")
    assert "550" in message.reason
    refused.refresh_from_db()
    assert refused.status == LeadStatus.BOUNCED
    enrollment = Enrollment.objects.get(lead=refused)
    assert enrollment.state == "stopped" and "550" in enrollment.stop_reason
    entry = SuppressionEntry.objects.get(value=refused.email_key)
    assert entry.venture_id == campaign.venture_id
    assert smtp_sink.recipients() == [other.email]
    assert slots_taken(campaign) == 1


def test_a_connection_dropped_during_data_leaves_the_message_unknown_and_never_resends_it(
    campaign, smtp_sink, clock
):
    lead = LeadFactory(campaign=campaign)
    smtp_sink.drop_next_data()
    assert tick().counts == {"unknown": 1}
    message = first_message(lead)
    assert (message.state, message.reason_code) == (MessageState.UNKNOWN, "unknown")
    assert "connection lost" in message.reason
    assert slots_taken(campaign) == 1  # it may have been delivered: it counts
    for days in (1, 4):
        clock.move_to(NOON + dt.timedelta(days=days))
        assert tick().counts == {}
    assert [r.rcpt_tos for r in smtp_sink.dropped] == [(lead.email,)]
    assert not smtp_sink.messages


def test_a_connection_closed_by_a_421_is_reopened_for_the_rest_of_the_batch(campaign, smtp_sink):
    # smtplib closes its socket after a 421; the next message must not take that for a line
    # dropped while handing over (unknown, never re-sent): it was never handed over at all.
    leads = LeadFactory.create_batch(3, campaign=campaign)
    smtp_sink.fail_next("RCPT", 421)
    assert tick().counts == {"deferred": 1, "sent": 2}
    assert smtp_sink.connections == 2
    assert sorted(smtp_sink.recipients()) == sorted(lead.email for lead in leads[1:])


def test_a_refused_sender_fails_the_message_without_bouncing_the_lead(campaign, smtp_sink):
    # A 5xx to MAIL FROM is about our mailbox, not the recipient: the address stays usable.
    lead = LeadFactory(campaign=campaign)
    smtp_sink.fail_next("MAIL", 553)
    assert tick().counts == {"failed": 1}
    message = first_message(lead)
    assert (message.state, message.reason_code) == (MessageState.FAILED, "rejected")
    assert message.reason.startswith("sender refused: 553")
    lead.refresh_from_db()
    assert lead.status == LeadStatus.ACTIVE
    assert not SuppressionEntry.objects.filter(value=lead.email_key).exists()
    assert slots_taken(campaign) == 0
