"""The messages' tallies (`outreach.tally`): kept by database triggers on every write to the
messages, equal at every point to the messages counted by step, state, reason, sender and
quarter hour, folded without losing a count, and checked and rebuilt by `report facts`."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.core.management import CommandError, call_command
from django.db import connection

from leads.services.privacy import lead_erase
from outreach.dispatch import tick
from outreach.models import MessageState, MessageTally, OutboundMessage, SentQuarter
from outreach.services import manual_task_settle, unknown_message_settle
from outreach.tally import sent_by_day, tally, tally_drift, tally_fold, tally_rebuild
from outreach.tests.outbox import NOON, first_emails_sent, running_campaign, two_step_sequence
from tests.factories import IcpSegmentFactory, LeadFactory

pytestmark = pytest.mark.django_db


def by_state(campaign_id: int) -> dict[str, int]:
    counts: dict[str, int] = {}
    for _step, state, *_rest, n in tally(campaign_id):
        counts[state] = counts.get(state, 0) + n
    return counts


def test_the_tick_a_reply_an_unknown_settled_and_a_task_done_all_count_as_they_happen():
    first, second, third, fourth = first_emails_sent(4)
    campaign_id = first.campaign_id
    assert by_state(campaign_id) == {"sent": 4, "scheduled": 4}  # and the four follow-ups
    assert tally_drift(campaign_id) == []
    # A worker died handing one over; the operator settles it from the server's log.
    OutboundMessage.objects.filter(pk=second.pk).update(state=MessageState.UNKNOWN)
    assert by_state(campaign_id) == {"sent": 3, "unknown": 1, "scheduled": 4}
    second.refresh_from_db()
    unknown_message_settle(message=second, sent=False, actor="op", reason="Not in the log.")
    # A blocked follow-up keeps its reason.
    OutboundMessage.objects.filter(lead=third.lead, step__position=2).update(
        state=MessageState.BLOCKED, reason_code="replied"
    )
    assert by_state(campaign_id) == {"sent": 3, "failed": 1, "scheduled": 3, "blocked": 1}
    assert ("replied", 1) in [(row[2], row[-1]) for row in tally(campaign_id)]
    assert tally_drift(campaign_id) == []
    lead_erase(email=fourth.lead.email, actor="op", reason="Asked to be forgotten.")
    assert tally_drift(campaign_id) == []


def test_manual_tasks_count_open_then_done():
    with time_machine.travel(NOON, tick=False):
        campaign = running_campaign()
        two_step_sequence(campaign, second="call", delay_days=0)
        LeadFactory.create_batch(2, campaign=campaign)
        tick()
    with time_machine.travel(NOON + dt.timedelta(hours=1), tick=False):
        tick()
    assert by_state(campaign.pk) == {"sent": 2, "task_open": 2}
    task = OutboundMessage.objects.filter(state=MessageState.TASK_OPEN).first()
    manual_task_settle(message=task, done=True, actor="op", note="Called; left a message.")
    assert by_state(campaign.pk) == {"sent": 2, "task_open": 1, "task_done": 1}
    assert tally_drift(campaign.pk) == []


def test_a_sent_email_counts_under_its_mailbox_segment_and_template_version():
    segment = IcpSegmentFactory()
    with time_machine.travel(NOON, tick=False):
        campaign = running_campaign(venture=segment.venture)
        two_step_sequence(campaign)
        LeadFactory(campaign=campaign, segment=segment)
        tick()
    sent = OutboundMessage.objects.get(state=MessageState.SENT)
    (row,) = [r for r in tally(campaign.pk) if r[1] == "sent"]
    assert row == (
        sent.step_id, "sent", "", sent.mailbox_id, segment.pk, sent.template_version_id, 1
    )  # fmt: skip
    # The segment deleted: its messages' segment is cleared, and the tally follows.
    segment.delete()
    (row,) = [r for r in tally(campaign.pk) if r[1] == "sent"]
    assert row[4] is None
    assert tally_drift(campaign.pk) == []


def test_sends_per_day_follow_the_time_zone_asked_for():
    first = first_emails_sent(3)[0]  # at NOON UTC
    berlin = dt.timezone(dt.timedelta(hours=1))
    kiritimati = dt.timezone(dt.timedelta(hours=14))  # already the next day
    assert sent_by_day(first.campaign_id, berlin) == {NOON.date(): 3}
    assert sent_by_day(first.campaign_id, kiritimati) == {NOON.date() + dt.timedelta(days=1): 3}
    assert sent_by_day(first.campaign_id, berlin, since=NOON + dt.timedelta(hours=1)) == {}
    # Quarter hours: a send at 12:14:59 and one at 12:15 are two quarters of the same day.
    OutboundMessage.objects.filter(pk=first.pk).update(sent_at=NOON + dt.timedelta(minutes=15))
    quarters = sorted(
        SentQuarter.objects.filter(campaign_id=first.campaign_id)
        .values_list("quarter", flat=True)
        .distinct()
    )
    assert quarters == [NOON, NOON + dt.timedelta(minutes=15)]
    assert sent_by_day(first.campaign_id, berlin) == {NOON.date(): 3}
    assert tally_drift(first.campaign_id) == []


def test_folding_leaves_one_row_per_key_and_every_count():
    messages = first_emails_sent(6)
    campaign_id = messages[0].campaign_id
    for m in messages[:4]:  # one statement each: four deltas more
        OutboundMessage.objects.filter(pk=m.pk).update(state=MessageState.UNKNOWN)
    before = sorted(tally(campaign_id))
    assert MessageTally.objects.filter(campaign_id=campaign_id).count() > len(before)
    tally_fold([campaign_id])
    assert sorted(tally(campaign_id)) == before
    assert MessageTally.objects.filter(campaign_id=campaign_id).count() == len(before)
    assert tally_drift(campaign_id) == []


def test_the_tick_folds_the_campaigns_it_worked_on():
    messages = first_emails_sent(5)
    campaign_id = messages[0].campaign_id
    keys = {row[:-1] for row in tally(campaign_id)}
    assert MessageTally.objects.filter(campaign_id=campaign_id).count() == len(keys)
    assert SentQuarter.objects.filter(campaign_id=campaign_id).count() == 1


def test_deleted_messages_are_counted_out():
    first = first_emails_sent(2)[0]
    OutboundMessage.objects.filter(campaign_id=first.campaign_id).delete()
    assert tally(first.campaign_id) == []
    assert sent_by_day(first.campaign_id, dt.UTC) == {}


def test_drift_is_reported_by_the_command_and_a_rebuild_mends_it(capsys):
    first = first_emails_sent(2)[0]
    campaign_id = first.campaign_id
    call_command("report", "facts")
    assert "the messages' tallies with the messages" in capsys.readouterr().out
    # Written around the engine: a count lost, and a stray one.
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {SentQuarter._meta.db_table}")  # noqa: S608
    MessageTally.objects.create(campaign_id=campaign_id, step_id=first.step_id, state="sent", n=5)
    drift = tally_drift(campaign_id)
    assert ("messages", (first.step_id, "sent", "", None, None, None), 5, 0) in drift
    assert ("sent quarter hours", (NOON.isoformat(),), 0, 2) in drift
    with pytest.raises(CommandError, match="2 counts of the messages' tallies differ"):
        call_command("report", "facts", "--campaign", str(campaign_id))
    out = capsys.readouterr().out
    assert f"step #{first.step_id} sent: tallied 5, counted 0" in out
    call_command("report", "facts", "--rebuild")
    assert "rows of the messages' tallies" in capsys.readouterr().out
    assert tally_drift(campaign_id) == []
    assert tally_rebuild(campaign_id) == len(tally(campaign_id)) + 1  # and one quarter hour
