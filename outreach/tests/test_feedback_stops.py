"""A sequence's stop conditions as feedback arrives through the webhooks: a reply stops it
unless the sequence says otherwise, an auto-reply stops it only when it says so, and an
out-of-office that names its return date moves the next step to after that date."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine

from leads.models import LeadStatus
from outreach.autoreply import return_date_of
from outreach.models import Enrollment, FeedbackEvent, OutboundMessage
from outreach.tests.outbox import NOON
from outreach.tests.test_feedback_webhooks import (
    INBOUND,
    first_email_sent,
    post,
    postmark_inbound,
)

pytestmark = pytest.mark.django_db

AWAY = "Thank you for your email. I am out of the office until Monday 14 December 2026 " \
    "with limited access to email. For urgent matters call +44 20 7946 0958."  # fmt: skip


@pytest.fixture
def sent():
    return first_email_sent()


@pytest.fixture(autouse=True)
def webhook_settings(settings):
    settings.ANYMAIL = {"WEBHOOK_SECRET": "hooks:correct-horse-battery"}


def out_of_office(sent, text: str) -> dict:
    payload = postmark_inbound(
        sent, subject="Automatic reply: Quick question",
        headers=[{"Name": "Auto-Submitted", "Value": "auto-replied"}],
    )  # fmt: skip
    payload.update(TextBody=text, StrippedTextReply=text)
    return payload


def follow_up_of(sent) -> OutboundMessage:
    return OutboundMessage.objects.get(lead_id=sent.lead_id, step__position=2)


def test_an_out_of_office_moves_the_next_step_to_the_day_after_the_return_date(client, sent):
    planned = follow_up_of(sent).due_at
    assert planned < dt.datetime(2026, 12, 14, tzinfo=dt.UTC)  # three days after noon
    with time_machine.travel(NOON + dt.timedelta(hours=1), tick=False):
        assert post(client, INBOUND, out_of_office(sent, AWAY)).status_code == 200
    event = FeedbackEvent.objects.get()
    assert event.kind == "autoresponded"
    assert "away until 2026-12-14" in event.effect and "2026-12-15" in event.effect
    follow_up = follow_up_of(sent)
    assert follow_up.state == "scheduled"
    # Midnight of the 15th in Berlin, the campaign's zone (the lead has none of its own).
    assert follow_up.due_at == dt.datetime(2026, 12, 14, 23, 0, tzinfo=dt.UTC)
    assert Enrollment.objects.get(lead_id=sent.lead_id).state == "active"
    assert sent.lead.__class__.objects.get(pk=sent.lead_id).status == LeadStatus.ACTIVE


def test_the_return_date_is_read_in_the_leads_own_timezone(client, sent):
    sent.lead.__class__.objects.filter(pk=sent.lead_id).update(timezone="America/New_York")
    with time_machine.travel(NOON + dt.timedelta(hours=1), tick=False):
        post(client, INBOUND, out_of_office(sent, AWAY))
    assert follow_up_of(sent).due_at == dt.datetime(2026, 12, 15, 5, 0, tzinfo=dt.UTC)


def test_an_out_of_office_back_before_the_next_step_changes_nothing(client, sent):
    planned = follow_up_of(sent).due_at
    with time_machine.travel(NOON + dt.timedelta(hours=1), tick=False):
        post(client, INBOUND, out_of_office(sent, "I'm away today, back tomorrow."))
    assert follow_up_of(sent).due_at == planned
    assert "no pending step was due before then" in FeedbackEvent.objects.get().effect


def test_an_out_of_office_without_a_date_is_recorded_and_the_sequence_goes_on(client, sent):
    planned = follow_up_of(sent).due_at
    text = "I am travelling with limited access to email. Back in 2019 we were smaller."
    with time_machine.travel(NOON + dt.timedelta(hours=1), tick=False):
        post(client, INBOUND, out_of_office(sent, text))
    assert follow_up_of(sent).due_at == planned
    assert FeedbackEvent.objects.get().effect == "an auto-reply: recorded; the sequence goes on"


def test_a_sequence_that_stops_on_auto_replies_stops(client, sent):
    sequence = sent.enrollment.sequence
    sequence.stop_on_auto_reply = True
    sequence.save()
    with time_machine.travel(NOON + dt.timedelta(hours=1), tick=False):
        post(client, INBOUND, out_of_office(sent, AWAY))
    assert Enrollment.objects.get(lead_id=sent.lead_id).state == "stopped"
    follow_up = follow_up_of(sent)
    assert (follow_up.state, follow_up.reason_code) == ("blocked", "auto_replied")
    # An auto-reply is not a reply: the lead did not reply.
    assert sent.lead.__class__.objects.get(pk=sent.lead_id).status == LeadStatus.ACTIVE


def test_a_sequence_that_does_not_stop_on_replies_goes_on_after_one(client, sent):
    sequence = sent.enrollment.sequence
    sequence.stop_on_reply = False
    sequence.save()
    assert post(client, INBOUND, postmark_inbound(sent)).status_code == 200
    event = FeedbackEvent.objects.get()
    assert event.kind == "replied" and "goes on" in event.effect
    assert follow_up_of(sent).state == "scheduled"
    assert Enrollment.objects.get(lead_id=sent.lead_id).state == "active"
    assert sent.lead.__class__.objects.get(pk=sent.lead_id).status == LeadStatus.ACTIVE


AFTER = dt.datetime(2026, 12, 3, 10, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("text", "back"),
    [
        ("I'm on leave and will be back on 5 January.", dt.date(2027, 1, 5)),
        ("Ich bin bis zum 18.12.2026 nicht im Büro.", dt.date(2026, 12, 18)),
        ("Je suis absent jusqu'au 4 janvier inclus.", dt.date(2027, 1, 4)),
        ("Estoy fuera de la oficina hasta el 10 de diciembre.", dt.date(2026, 12, 10)),
        ("I'm on parental leave through January 8th.", dt.date(2027, 1, 8)),
        ("Ik ben terug op 7 december.", dt.date(2026, 12, 7)),
        ("I am travelling with limited access to email.", None),
        ("Back in 2019 we started this company.", None),  # in the past
        ("Away until 3 March 2028.", None),  # too far off to trust
    ],
)
def test_the_return_date_an_out_of_office_names(text, back):
    assert return_date_of(text, after=AFTER) == back
