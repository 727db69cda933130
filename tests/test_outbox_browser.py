"""The outbox in a real browser: the campaign page's panel and the task queue."""

from __future__ import annotations

import pytest
import time_machine
from django.urls import reverse
from playwright.sync_api import expect

from outreach.dispatch import tick
from outreach.models import MessageState, OutboundMessage, StepKind
from outreach.tests.outbox import NOON, running_campaign, two_step_sequence
from tests.browser import BROWSER_MARKS, log_in
from tests.factories import LeadFactory, MembershipFactory, UserFactory
from ventures.roles import OPERATOR

pytestmark = BROWSER_MARKS


@pytest.mark.django_db(transaction=True)
def test_operator_watches_the_outbox_and_works_the_task_queue(page, tmp_path):
    campaign = running_campaign(name="Spring outreach")
    sequence = two_step_sequence(campaign, second=StepKind.CALL, delay_days=0)
    user = UserFactory(username="op-olga", role=OPERATOR)
    MembershipFactory(venture=campaign.venture, user=user)
    LeadFactory.create_batch(2, campaign=campaign)
    LeadFactory(campaign=campaign, consent_status="dnc")
    with time_machine.travel(NOON, tick=False):
        tick()
        tick()  # the calls are due at once
    assert sequence.steps.count() == 2
    log_in(page, "op-olga")
    page.goto(reverse("admin:ventures_campaign_change", args=[campaign.pk]))
    panel = page.locator("fieldset.change-panel", has_text="Outbox")
    expect(panel).to_contain_text("Outbox")
    expect(panel.locator("table.outbox-states")).to_contain_text("Sent")
    expect(panel).to_contain_text("dnc (1)")
    page.screenshot(path=tmp_path / "campaign.png", full_page=True)
    panel.get_by_text("Open tasks: 2").click()
    expect(page.locator("#result_list tbody tr")).to_have_count(2)
    page.screenshot(path=tmp_path / "tasks.png", full_page=True)
    page.locator("#result_list tbody tr th a").first.click()
    page.locator("a.operation-task-done").click()
    page.click("input[name=confirm]")
    expect(page.locator("ul.messagelist")).to_contain_text("Marked 1 manual task done.")
    assert OutboundMessage.objects.filter(state=MessageState.TASK_DONE).count() == 1
