"""Live mode through an ESP: django-anymail's real Postmark backend against a local server
that answers as Postmark's API does (`tests/esp.py`). What each answer does to the message,
its cap slot and the lead."""

from __future__ import annotations

import pytest
import time_machine

from leads.models import LeadStatus, SuppressionEntry
from outreach.dispatch import tick
from outreach.models import Enrollment, Mailbox, MessageState, OutboundMessage, SendLedger
from outreach.tests.outbox import NOON, running_campaign, two_step_sequence
from tests.esp import PostmarkApi
from tests.factories import LeadFactory
from ventures.models import SendMode

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(settings):
    with PostmarkApi() as api:
        settings.AICMO_SEND_MODE = "live"
        settings.AICMO_SITE_URL = "https://aicmo.example"
        settings.EMAIL_BACKEND = "anymail.backends.postmark.EmailBackend"
        settings.ANYMAIL = api.anymail_settings()
        yield api


@pytest.fixture
def lead(api):
    with time_machine.travel(NOON, tick=False):
        campaign = running_campaign(mode=SendMode.LIVE)
        two_step_sequence(campaign)
        box = Mailbox.objects.create(
            venture=campaign.venture, name="Sam", from_name="Sam Sender",
            from_email="sam@venture.example", daily_limit=1000, min_gap_seconds=0,
            gap_jitter_seconds=0,
        )  # fmt: skip
        box.campaigns.add(campaign)
        lead = LeadFactory(campaign=campaign)
        yield lead


def send(lead) -> OutboundMessage:
    with time_machine.travel(NOON, tick=False):
        tick()
    return OutboundMessage.objects.get(lead=lead, step__position=1)


def slots_taken(lead) -> int:
    row = SendLedger.objects.filter(scope="campaign", key=str(lead.campaign_id)).first()
    return row.count if row else 0


def test_an_accepted_message_stores_the_esps_id_and_carries_our_headers(api, lead):
    message = send(lead)
    assert message.state == MessageState.SENT
    (request,) = api.requests
    headers = {h["Name"]: h["Value"] for h in request["Headers"]}
    assert headers["Message-ID"] == message.message_id  # our own id, given to the ESP
    assert "/u/" in headers["List-Unsubscribe"] and "mailto:" in headers["List-Unsubscribe"]
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert request["To"] == lead.email and request["ReplyTo"] == "replies@venture.example"
    assert len(message.esp_message_id) == 36  # the MessageID the ESP answered
    assert slots_taken(lead) == 1


@pytest.mark.parametrize("status", [429, 500])
def test_throttling_or_an_esp_error_is_retried_later_and_gives_the_slot_back(api, lead, status):
    api.answer_next(status)
    message = send(lead)
    assert (message.state, message.reason_code) == (MessageState.DEFERRED, "transient")
    assert f"HTTP {status}" in message.reason
    assert message.due_at > NOON  # backoff from five minutes
    assert slots_taken(lead) == 0
    lead.refresh_from_db()
    assert lead.status == LeadStatus.ACTIVE


def test_an_inactive_recipient_fails_suppresses_and_stops_the_sequence(api, lead):
    api.answer_next("inactive")
    message = send(lead)
    assert (message.state, message.reason_code) == (MessageState.FAILED, "hard_bounce")
    assert "refused the recipient" in message.reason
    lead.refresh_from_db()
    assert lead.status == LeadStatus.BOUNCED
    assert SuppressionEntry.objects.filter(value=lead.email_key).exists()
    assert Enrollment.objects.get(lead=lead).state == "stopped"
    assert slots_taken(lead) == 0


def test_a_request_the_esp_refuses_fails_without_blaming_the_recipient(api, lead):
    api.answer_next(401)  # a wrong server token: our fault
    message = send(lead)
    assert (message.state, message.reason_code) == (MessageState.FAILED, "rejected")
    assert "HTTP 401" in message.reason
    lead.refresh_from_db()
    assert lead.status == LeadStatus.ACTIVE
    assert not SuppressionEntry.objects.exists()


def test_an_esp_that_cannot_be_reached_is_retried_later(api, lead, settings):
    settings.ANYMAIL = {**settings.ANYMAIL, "POSTMARK_API_URL": "http://127.0.0.1:9/"}
    message = send(lead)
    assert (message.state, message.reason_code) == (MessageState.DEFERRED, "transient")
    assert "could not connect" in message.reason
    assert slots_taken(lead) == 0


def test_no_answer_after_the_request_left_is_unknown_and_never_resent(api, lead):
    api.answer_next("slow")  # the ESP takes it, and answers after the client gave up
    message = send(lead)
    assert (message.state, message.reason_code) == (MessageState.UNKNOWN, "unknown")
    assert "no answer after the request was sent" in message.reason
    send(lead)
    assert len(api.requests) == 1  # never handed over again
    assert slots_taken(lead) == 1  # it may have gone out: it keeps its slot
