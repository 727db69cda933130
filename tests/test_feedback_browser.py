"""Feedback in a real browser: why a campaign was auto-paused, the feedback events list, and
recording a reply read in one's own mailbox."""

from __future__ import annotations

import pytest
import time_machine
from django.test import TestCase
from django.urls import reverse
from playwright.sync_api import expect

from outreach.dispatch import tick
from outreach.feedback import Incoming, feedback_record
from outreach.models import FeedbackEvent, OutboundMessage
from outreach.tests.outbox import NOON, running_campaign, two_step_sequence
from tests.browser import BROWSER_MARKS, log_in
from tests.factories import LeadFactory, MembershipFactory, UserFactory
from ventures.roles import OPERATOR

pytestmark = BROWSER_MARKS


@pytest.mark.django_db(transaction=True)
def test_operator_sees_why_a_campaign_paused_and_records_a_reply(page, tmp_path, settings):
    settings.AICMO_AUTOPAUSE_MIN_SENDS = 10
    campaign = running_campaign(name="Spring outreach")
    two_step_sequence(campaign)
    user = UserFactory(username="op-olga", role=OPERATOR)
    MembershipFactory(venture=campaign.venture, user=user)
    LeadFactory.create_batch(20, campaign=campaign)
    with time_machine.travel(NOON, tick=False):
        tick()
    first = list(OutboundMessage.objects.filter(step__position=1).order_by("id"))
    OutboundMessage.objects.filter(pk=first[0].pk).update(esp_message_id="esp-1")
    with TestCase.captureOnCommitCallbacks(execute=True):
        feedback_record(Incoming(source="postmark", kind="bounced", event_id="b1",
                                 esp_message_id="esp-1", recipient=first[0].recipient,
                                 reason="550 5.1.1 user unknown"))  # fmt: skip
    log_in(page, "op-olga")
    page.goto(reverse("admin:ventures_campaign_change", args=[campaign.pk]))
    paused = page.locator("div.auto-pauses")
    expect(paused).to_contain_text("Auto-paused")
    expect(paused).to_contain_text("bounce rate 5.0% (1 of 20 sent")
    page.screenshot(path=tmp_path / "campaign-auto-paused.png", full_page=True)

    page.goto(reverse("admin:outreach_feedbackevent_changelist"))
    expect(page.locator("#result_list tbody tr")).to_have_count(1)
    expect(page.locator("#result_list")).to_contain_text("Bounced (hard)")
    page.screenshot(path=tmp_path / "feedback-events.png", full_page=True)

    page.goto(reverse("admin:outreach_outboundmessage_change", args=[first[1].pk]))
    page.locator("a.operation-reply-objection").click()
    page.locator("textarea[name=reason], input[name=reason]").fill("Too expensive this year.")
    page.screenshot(path=tmp_path / "record-reply.png", full_page=True)
    page.get_by_role("button", name="Replied: objection").click()
    expect(page.locator("ul.messagelist")).to_contain_text("Recorded the reply (objection) to 1")
    event = FeedbackEvent.objects.get(source="manual")
    assert (event.sentiment, event.notes) == ("objection", "Too expensive this year.")


@pytest.mark.django_db(transaction=True)
def test_operator_sees_a_positive_reply_past_its_sla_and_marks_it_handled(page, tmp_path):
    import datetime as dt

    from outreach.feedback import reply_record
    from outreach.sla import replies_escalate

    campaign = running_campaign(name="Spring outreach")
    campaign.venture.owner_email = "owner@venture.example"
    campaign.venture.save()
    two_step_sequence(campaign)
    user = UserFactory(username="op-olga", role=OPERATOR)
    MembershipFactory(venture=campaign.venture, user=user)
    LeadFactory.create_batch(2, campaign=campaign)
    with time_machine.travel(NOON, tick=False):
        tick()
    waiting, late = OutboundMessage.objects.filter(step__position=1).order_by("id")
    now = dt.datetime.now(dt.UTC)
    for message, hours_ago in ((waiting, 2), (late, 30)):
        with time_machine.travel(now - dt.timedelta(hours=hours_ago), tick=False):
            reply_record(message=message, sentiment="positive", actor=user, notes="Call me.")
    replies_escalate()
    log_in(page, "op-olga")
    page.goto(reverse("admin:ventures_campaign_change", args=[campaign.pk]))
    expect(page.locator("body")).to_contain_text("Positive replies waiting for an answer: 2")
    page.get_by_text("1 past the 24 h SLA").click()
    rows = page.locator("#result_list tbody tr")
    expect(rows).to_have_count(1)
    expect(rows).to_contain_text("past the SLA by 6 h")
    expect(rows).to_contain_text("escalated to owner@venture.example")
    badge = rows.locator("span.sla-overdue")
    assert badge.evaluate("e => getComputedStyle(e).backgroundColor") != "rgba(0, 0, 0, 0)"
    page.screenshot(path=tmp_path / "replies-overdue.png", full_page=True)
    rows.locator("th a, td a").first.click()
    page.click("a.operation-reply-handled")
    expect(page.locator(".operation-objects")).to_contain_text("Replied from")
    page.click("input[name=confirm]")
    expect(page.locator("ul.messagelist")).to_contain_text("Marked 1")
    page.goto(reverse("admin:outreach_feedbackevent_changelist") + "?handling=waiting")
    expect(page.locator("#result_list tbody tr")).to_have_count(1)
    expect(page.locator("#result_list")).to_contain_text("answer by")
    page.screenshot(path=tmp_path / "replies-waiting.png", full_page=True)
