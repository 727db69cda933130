"""The operator console driven in a real headless Chromium (Debian's; nothing downloads one)."""

from __future__ import annotations

import pytest
from django.urls import reverse
from playwright.sync_api import expect

from tests.browser import BROWSER_MARKS, log_in
from tests.factories import CampaignFactory, UserFactory
from ventures.models import AuditEvent
from ventures.roles import ADMINISTRATOR
from ventures.services import campaign_transition

pytestmark = BROWSER_MARKS


@pytest.mark.django_db(transaction=True)
def test_administrator_kills_a_running_campaign_from_its_page(page):
    UserFactory(username="admin-ann", role=ADMINISTRATOR)
    campaign = CampaignFactory(name="Spring outreach")
    campaign_transition(campaign=campaign, action="start", actor="setup")

    log_in(page, "admin-ann")

    page.goto(reverse("admin:ventures_campaign_change", args=[campaign.pk]))
    page.click("a.operation-kill")
    expect(page.locator("h1")).to_contain_text("Kill: are you sure?")
    page.fill("#id_reason", "Prospect complained about frequency")
    page.click("input[name=confirm]")

    expect(page.locator("ul.messagelist")).to_contain_text("Killed 1 campaign.")
    trail = page.locator("table.audit-trail")
    expect(trail.locator("tbody tr").first).to_contain_text("campaign.kill")
    expect(trail).to_contain_text("Prospect complained about frequency")
    expect(page.locator("a.operation-kill")).to_have_count(0)
    expect(page.locator("a.operation-unkill")).to_have_count(1)  # unkill confirms first too

    campaign.refresh_from_db()
    assert campaign.kill_switch is True
    assert campaign.kill_reason == "Prospect complained about frequency"
    event = AuditEvent.objects.for_entity(campaign).get(action="campaign.kill")
    assert event.actor == "admin-ann"
