"""Auto-pause: a campaign or a mailbox whose bounces, complaints or sending errors pass the
thresholds is paused with the figures behind it; resuming starts from a clean slate."""

from __future__ import annotations

import pytest
import time_machine
from django.test import TestCase

from outreach.dispatch import tick
from outreach.feedback import Incoming, feedback_record
from outreach.models import AutoPause, Mailbox, MessageState, OutboundMessage
from outreach.tests.outbox import NOON, pooled_mailboxes, running_campaign, two_step_sequence
from tests.factories import LeadFactory
from ventures.models import AuditEvent, CampaignStatus, SendMode
from ventures.services import campaign_transition

pytestmark = pytest.mark.django_db

SENDS = 40


@pytest.fixture(autouse=True)
def thresholds(settings):
    settings.AICMO_AUTOPAUSE_MIN_SENDS = 20
    settings.AICMO_AUTOPAUSE_BOUNCE_RATE = 0.02
    settings.AICMO_AUTOPAUSE_COMPLAINT_RATE = 0.001
    settings.AICMO_AUTOPAUSE_CHECK_SECONDS = 0  # every report reads the figures (see below)


@pytest.fixture
def clock():
    with time_machine.travel(NOON, tick=False) as traveller:
        yield traveller


def campaign_with_sends(n: int = SENDS, **campaign_fields):
    campaign = running_campaign(**campaign_fields)
    two_step_sequence(campaign)
    LeadFactory.create_batch(n, campaign=campaign)
    assert tick().counts.get("sent") == n
    return campaign


def first_steps(campaign):
    return OutboundMessage.objects.filter(campaign=campaign, step__position=1).order_by("id")


def report(message, kind: str, n: int) -> None:
    # The health check runs once the event is committed (the test's transaction never is).
    with TestCase.captureOnCommitCallbacks(execute=True):
        _report(message, kind, n)


def _report(message, kind: str, n: int) -> None:
    feedback_record(
        Incoming(source="postmark", kind=kind, event_id=f"{kind}-{message.pk}-{n}",
                 esp_message_id=f"esp-{message.pk}", recipient=message.recipient)
    )  # fmt: skip


def give_esp_ids(campaign) -> list[OutboundMessage]:
    messages = list(first_steps(campaign))
    for m in messages:
        OutboundMessage.objects.filter(pk=m.pk).update(esp_message_id=f"esp-{m.pk}")
    return messages


def test_a_bounce_rate_above_two_percent_pauses_the_campaign_with_its_figures(clock):
    campaign = campaign_with_sends()
    messages = give_esp_ids(campaign)
    report(messages[0], "bounced", 1)  # 1 of 40: 2.5%, above 2%
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.PAUSED
    pause = AutoPause.objects.get(campaign=campaign, mailbox=None)
    assert pause.figures["sent"] == SENDS and pause.figures["bounces"] == 1
    assert "bounce rate 2.5% (1 of 40 sent" in pause.reason
    audit = AuditEvent.objects.filter(action="campaign.pause").latest("id")
    assert audit.actor == "auto-pause" and "bounce rate 2.5%" in audit.reason
    # The follow-ups wait: nothing is claimed while it is paused.
    clock.move_to(NOON.replace(day=NOON.day + 3))
    assert tick().counts == {}


def test_the_campaign_page_says_why_it_was_auto_paused(clock, client, administrator):
    campaign = campaign_with_sends()
    report(give_esp_ids(campaign)[0], "bounced", 1)
    client.force_login(administrator)
    page = client.get(f"/admin/ventures/campaign/{campaign.pk}/change/", secure=True)
    assert page.status_code == 200
    html = page.content.decode()
    assert "Auto-paused" in html and "bounce rate 2.5% (1 of 40 sent" in html


def test_below_the_minimum_sample_nothing_pauses(clock, settings):
    settings.AICMO_AUTOPAUSE_MIN_SENDS = 100
    campaign = campaign_with_sends()
    messages = give_esp_ids(campaign)
    for n, m in enumerate(messages[:5]):
        report(m, "bounced", n)  # 12.5%, but on 40 sends only
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.RUNNING
    assert not AutoPause.objects.exists()


def test_a_complaint_rate_above_its_threshold_pauses(clock):
    campaign = campaign_with_sends()
    report(give_esp_ids(campaign)[3], "complained", 1)  # 1 of 40 = 2.5%, above 0.1%
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.PAUSED
    assert "complaint rate" in AutoPause.objects.get().reason


def test_after_the_operator_resumes_only_new_sends_count(clock):
    campaign = campaign_with_sends()
    messages = give_esp_ids(campaign)
    report(messages[0], "bounced", 1)
    clock.shift(60)
    campaign_transition(campaign=campaign, action="resume", actor="op-otto", reason="list cleaned")
    report(messages[1], "deferred", 1)  # not a bounce: nothing trips
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.RUNNING
    assert AutoPause.objects.count() == 1  # the old bounce is not counted again


def test_a_mailbox_that_bounces_is_paused_and_its_messages_wait(clock, settings):
    campaign = running_campaign()
    two_step_sequence(campaign)
    boxes = pooled_mailboxes(campaign, 2)
    LeadFactory.create_batch(80, campaign=campaign)
    tick()
    messages = give_esp_ids(campaign)
    bad = [m for m in messages if m.mailbox_id == boxes[0].pk]
    assert len(bad) >= 20
    settings.AICMO_AUTOPAUSE_BOUNCE_RATE = 0.05
    for n, m in enumerate(bad[:3]):
        report(m, "bounced", n)  # 3 of ~40: above 5% for the box; 3 of 80: under 5%
    boxes[0].refresh_from_db()
    boxes[1].refresh_from_db()
    assert not boxes[0].is_active and boxes[1].is_active
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.RUNNING
    assert AutoPause.objects.get().mailbox == boxes[0]
    assert AuditEvent.objects.filter(action="mailbox.auto_pause").exists()
    # Its follow-ups wait for it; the other mailbox's go out.
    clock.move_to(NOON.replace(day=NOON.day + 3))
    run = tick()
    follow_ups = OutboundMessage.objects.filter(campaign=campaign, step__position=2)
    waiting = follow_ups.filter(mailbox=boxes[0]).exclude(lead__status="bounced")
    assert set(waiting.values_list("state", "reason_code")) == {("deferred", "mailbox_paused")}
    assert (
        follow_ups.filter(mailbox=boxes[1], state=MessageState.SENT).count() == run.counts["sent"]
    )


def test_a_spike_of_sending_errors_pauses_the_campaign(clock, smtp_sink, settings):
    settings.AICMO_SEND_MODE = "live"
    campaign = running_campaign(mode=SendMode.LIVE)
    two_step_sequence(campaign)
    box = Mailbox.objects.create(
        venture=campaign.venture, name="Sam", from_name="Sam", from_email="sam@venture.example",
        connection_url=smtp_sink.url, daily_limit=1000, min_gap_seconds=0, gap_jitter_seconds=0,
    )  # fmt: skip
    box.campaigns.add(campaign)
    LeadFactory.create_batch(30, campaign=campaign)
    smtp_sink.fail_next("RCPT", 451, times=30)
    run = tick()
    assert run.counts["deferred"] == 30
    assert run.counts["auto_paused"] == 2  # the campaign, and its only mailbox
    campaign.refresh_from_db()
    box.refresh_from_db()
    assert campaign.status == CampaignStatus.PAUSED and not box.is_active
    for pause in AutoPause.objects.all():
        assert "sending errors: 30 of 30 attempts in the last hour" in pause.reason


def test_feedback_reads_the_figures_at_most_every_gap_and_the_tick_catches_up_before_sending(
    clock, settings
):
    """Bounces arrive in batches, several a second: within AICMO_AUTOPAUSE_CHECK_SECONDS of a
    check they are only recorded; the next tick reads the figures before it claims anything,
    and pauses the campaign before its follow-ups can go."""
    settings.AICMO_AUTOPAUSE_CHECK_SECONDS = 30
    campaign = campaign_with_sends()  # the tick read the figures at NOON
    messages = give_esp_ids(campaign)
    clock.shift(10)
    report(messages[0], "bounced", 1)  # 2.5%: past the threshold, but checked 10 s ago
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.RUNNING and not AutoPause.objects.exists()
    clock.move_to(NOON.replace(day=NOON.day + 3))  # the follow-ups are due
    run = tick()
    assert run.counts == {"auto_paused": 1}  # paused before anything was claimed
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.PAUSED
    assert not OutboundMessage.objects.filter(step__position=2, state="sent").exists()
    assert tick().counts == {}  # read once: nothing new since


def test_after_the_gap_the_next_report_reads_the_figures_again(clock, settings):
    settings.AICMO_AUTOPAUSE_CHECK_SECONDS = 30
    campaign = campaign_with_sends()
    messages = give_esp_ids(campaign)
    clock.shift(31)
    report(messages[0], "bounced", 1)
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.PAUSED
