"""What the outbox tells the console through ventures.console's extension points: mailbox caps
in "effective today", the auto-pause badge, and no deleting a paused campaign with messages."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.test import TestCase
from django.urls import reverse

from outreach.dispatch import caps_of, tick
from outreach.feedback import Incoming, feedback_record
from outreach.health import health_check
from outreach.models import FeedbackEvent, FeedbackKind, Mailbox, MessageState, OutboundMessage
from outreach.tests.outbox import NOON, pooled_mailboxes, running_campaign, two_step_sequence
from tests.factories import LeadFactory
from tests.http import text
from ventures.console import campaign_limits, campaign_state
from ventures.models import Campaign
from ventures.services import campaign_transition

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("plain_http")]


def mailbox(campaign, email: str, **fields) -> Mailbox:
    box = Mailbox.objects.create(venture=campaign.venture, name=email, from_email=email, **fields)
    box.campaigns.add(campaign)
    return box


def fresh(campaign) -> Campaign:
    return Campaign.objects.select_related("venture").get(pk=campaign.pk)


def test_the_active_mailboxes_of_a_campaign_bind_when_they_allow_least(settings):
    settings.AICMO_GLOBAL_DAILY_LIMIT = 100_000
    with time_machine.travel(NOON, tick=False):
        campaign = running_campaign(daily_limit=5000)
        mailbox(campaign, "a@venture.example", daily_limit=40)
        mailbox(
            campaign,
            "b@venture.example",
            daily_limit=500,
            warmup_start_limit=10,
            warmup_daily_increase=5,
            warmup_started_on=NOON.date() - dt.timedelta(days=2),
        )
        mailbox(campaign, "c@venture.example", daily_limit=900, is_active=False)
        limits = campaign_limits(fresh(campaign))
    assert limits.short() == "60 (mailboxes cap binds)"  # 40 + (10 + 2 * 5); c is paused
    assert "2 active mailboxes 60 (1 paused)" in limits.sentence()


def test_the_mailbox_level_matches_the_caps_the_tick_takes(settings):
    """The console sums the same per-mailbox limits `caps_of` gives each message."""
    settings.AICMO_GLOBAL_DAILY_LIMIT = 100_000
    with time_machine.travel(NOON, tick=False):
        campaign = running_campaign(daily_limit=5000)
        box = mailbox(campaign, "a@venture.example", daily_limit=70, warmup_start_limit=20,
                      warmup_daily_increase=10, warmup_started_on=NOON.date())  # fmt: skip
        message = OutboundMessage(campaign=fresh(campaign), mailbox=box, recipient_domain="x.io")
        tick_cap = next(c for c in caps_of(message, NOON) if c.scope == "mailbox")
        assert campaign_limits(fresh(campaign)).effective == tick_cap.limit == 20


def test_a_pool_with_every_mailbox_paused_says_no_mailbox_can_send_and_why(settings, client,
                                                                         administrator):  # fmt: skip
    """One mailbox of the pool auto-paused for its bounces, the other switched off by a
    person: the console says why nothing goes out, not "N of 0 today (mailboxes cap binds)",
    and the tick indeed sends none of the pool's follow-ups."""
    settings.AICMO_AUTOPAUSE_MIN_SENDS = 1
    settings.AICMO_AUTOPAUSE_BOUNCE_RATE = 0.15
    with time_machine.travel(NOON, tick=False) as clock:
        campaign = running_campaign(daily_limit=50)
        two_step_sequence(campaign)
        boxes = pooled_mailboxes(campaign, 2)
        LeadFactory.create_batch(10, campaign=campaign)
        assert tick().counts["sent"] == 10
        sent = OutboundMessage.objects.filter(campaign=campaign, state=MessageState.SENT)
        bad = min(boxes, key=lambda b: sent.filter(mailbox=b).count())  # 1 of at most 5
        bounced = sent.filter(mailbox=bad).first()
        FeedbackEvent.objects.create(source="test", event_id="b-1", kind=FeedbackKind.BOUNCED,
                                     message=bounced, lead=bounced.lead,
                                     venture_id=campaign.venture_id)  # fmt: skip
        (pause,) = health_check(campaign.pk)  # the mailbox's rate trips, the campaign's not
        other = next(b for b in boxes if b != bad)
        Mailbox.objects.filter(pk=other.pk).update(is_active=False)
        limits = campaign_limits(fresh(campaign))
        held = (
            "no mailbox can send: every mailbox of the pool is paused ("
            + "; ".join(
                f"{b}: auto-paused, {pause.reason}" if b == bad else f"{b}: paused"
                for b in sorted(boxes, key=lambda b: b.pk)
            )
            + ")"
        )
        assert pause.mailbox == bad and pause.reason.startswith("bounce rate")
        assert limits.held == held
        assert limits.sent_text(10) == f"10 sent today; {held}"
        assert limits.short() == f"0 ({held})"
        assert "a lead enrolled meanwhile waits for one of them" in limits.sentence()
        client.force_login(administrator)
        page = text(client.get(reverse("admin:ventures_campaign_change", args=[campaign.pk])))
        # The page says why once, in its state badge (not "Running"); the Outbox panel and
        # the Figures' caps name it in a few words.
        badge = f'<span class="state state-stop">Running, {held}</span>'
        assert badge in page
        assert page.count(held) == 1
        assert (
            "Sent today: <strong>10</strong>; no mailbox can send, as the campaign's state says."
            in page
        )
        assert "of 0" not in page
        assert '<span class="state state-stop">no mailbox can send</span>' in page
        listed = text(client.get(reverse("admin:ventures_campaign_changelist")))
        assert f'class="state state-stop" title="Running, {held}"' in listed
        # The dashboard says it once, in "Needs you now"; its badge only refers to it.
        board = text(client.get(reverse("admin:index")))
        assert '<span class="state state-stop">Running, no mailbox can send</span>' in board
        assert f"{campaign.name}: running, but {held}" in board
        assert board.count(held) == 1
        clock.move_to(NOON + dt.timedelta(days=3))  # the follow-ups are due: none goes out
        assert tick().counts.get("sent", 0) == 0
    follow_ups = OutboundMessage.objects.filter(campaign=campaign, step__position=2)
    waiting = follow_ups.exclude(lead__status="bounced")
    assert set(waiting.values_list("state", "reason_code")) == {("deferred", "mailbox_paused")}


def test_a_pool_with_an_active_mailbox_holds_nothing(settings):
    with time_machine.travel(NOON, tick=False):
        campaign = running_campaign(daily_limit=5000)
        mailbox(campaign, "a@venture.example", daily_limit=40)
        mailbox(campaign, "c@venture.example", daily_limit=900, is_active=False)
        limits = campaign_limits(fresh(campaign))
    assert limits.held == ""
    assert limits.sent_text(3) == "3 of 40 today (mailboxes cap binds)"


def test_a_campaign_without_mailboxes_has_no_mailbox_level():
    campaign = running_campaign(daily_limit=30)
    assert [level.name for level in campaign_limits(fresh(campaign)).levels] == [
        "global",
        "venture",
        "campaign",
    ]


def test_a_campaign_the_engine_paused_shows_auto_paused_with_the_figures(settings):
    settings.AICMO_AUTOPAUSE_MIN_SENDS = 20
    settings.AICMO_AUTOPAUSE_BOUNCE_RATE = 0.02
    settings.AICMO_AUTOPAUSE_CHECK_SECONDS = 0
    with time_machine.travel(NOON, tick=False):
        campaign = running_campaign()
        two_step_sequence(campaign)
        LeadFactory.create_batch(40, campaign=campaign)
        tick()
        message = OutboundMessage.objects.filter(campaign=campaign).order_by("id").first()
        OutboundMessage.objects.filter(pk=message.pk).update(esp_message_id="esp-1")
        with TestCase.captureOnCommitCallbacks(execute=True):
            feedback_record(
                Incoming(source="postmark", kind="bounced", event_id="b-1",
                         esp_message_id="esp-1", recipient=message.recipient)
            )  # fmt: skip
        state = campaign_state(fresh(campaign), global_reason=None)
    assert state.label.startswith("Auto-paused: bounce rate 2.5% (1 of 40 sent")
    assert state.tone == "stop"


def test_a_paused_campaign_with_messages_cannot_be_deleted(client, administrator):
    with time_machine.travel(NOON, tick=False):
        campaign = running_campaign()
        two_step_sequence(campaign)
        LeadFactory.create_batch(2, campaign=campaign)
        tick()
    campaign_transition(campaign=campaign, action="pause", actor="t")
    client.force_login(administrator)
    page = client.get(reverse("admin:ventures_campaign_change", args=[campaign.pk]))
    assert page.context["has_delete_permission"] is False
    url = reverse("admin:ventures_campaign_delete", args=[campaign.pk])
    response = client.post(url, {"post": "yes"}, follow=True)
    assert "is paused with messages in its outbox and cannot be deleted" in text(response)
    assert OutboundMessage.objects.filter(campaign=campaign).count() >= 2


def test_a_paused_campaign_without_messages_can_be_deleted(client, administrator):
    campaign = running_campaign()
    campaign_transition(campaign=campaign, action="pause", actor="t")
    client.force_login(administrator)
    client.post(reverse("admin:ventures_campaign_delete", args=[campaign.pk]), {"post": "yes"})
    assert not Campaign.objects.filter(pk=campaign.pk).exists()
