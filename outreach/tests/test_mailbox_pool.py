"""A campaign with a mailbox pool sends only from its mailboxes, within their caps: a lead
enrolled while every mailbox is paused waits for one, and leads enrolled before the pool
existed join it."""

from __future__ import annotations

import pytest
import time_machine

from outreach.dispatch import tick
from outreach.enrollment import campaign_enrol
from outreach.models import Enrollment, MessageState, OutboundMessage
from outreach.tests.outbox import NOON, pooled_mailboxes, running_campaign, two_step_sequence
from tests.factories import LeadFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def clock():
    with time_machine.travel(NOON, tick=False) as traveller:
        yield traveller


def first_emails(campaign):
    return OutboundMessage.objects.filter(campaign=campaign, step__position=1)


def test_leads_enrolled_while_every_mailbox_is_paused_wait_and_never_use_the_campaign_address():
    campaign = running_campaign(sender_email="campaign@venture.example")
    two_step_sequence(campaign)
    (box,) = pooled_mailboxes(campaign, 1)
    box.is_active = False  # as an auto-pause leaves it
    box.save(update_fields=["is_active"])
    LeadFactory.create_batch(6, campaign=campaign)

    run = tick()

    assert run.counts.get("sent", 0) == 0
    assert set(Enrollment.objects.values_list("mailbox_id", flat=True)) == {box.pk}
    assert set(first_emails(campaign).values_list("mailbox_id", "state", "reason_code")) == {
        (box.pk, MessageState.DEFERRED, "mailbox_paused")
    }
    # Resumed, it sends them, from itself.
    box.is_active = True
    box.save(update_fields=["is_active"])
    OutboundMessage.objects.update(due_at=NOON)  # their retry is due
    assert tick().counts["sent"] == 6
    sent = first_emails(campaign).filter(state=MessageState.SENT)
    assert sent.count() == 6 and set(sent.values_list("mailbox_id", flat=True)) == {box.pk}


def test_leads_enrolled_before_the_pool_existed_join_it_and_its_cap_holds():
    campaign = running_campaign()
    two_step_sequence(campaign)
    LeadFactory.create_batch(12, campaign=campaign)
    assert campaign_enrol(campaign=campaign) == 12  # enrolled with no mailbox to keep
    assert Enrollment.objects.filter(mailbox__isnull=True).count() == 12
    boxes = pooled_mailboxes(campaign, 2)
    for box in boxes:
        box.daily_limit = 4
        box.save(update_fields=["daily_limit"])

    run = tick()

    assert not Enrollment.objects.filter(mailbox__isnull=True).exists()
    messages = first_emails(campaign)
    assert not messages.filter(mailbox__isnull=True).exists()
    # Each mailbox sends what its cap allows of its leads (the pick spreads leads by their
    # identity), not the campaign's 1,000; the rest wait for tomorrow.
    allowed = {box.pk: min(4, messages.filter(mailbox=box).count()) for box in boxes}
    for box in boxes:
        assert messages.filter(mailbox=box, state=MessageState.SENT).count() == allowed[box.pk]
    assert run.counts["sent"] == sum(allowed.values()) < 12
    assert messages.filter(state=MessageState.DEFERRED).count() == 12 - run.counts["sent"]
