"""Deleting a venture in a real headless Chromium, as an Administrator tidies up: the one
that campaigns keep is refused with why, the empty trial venture goes after a page naming
what goes with it and a reason. Screenshots go to var/test-artifacts/delete-venture-*."""

from __future__ import annotations

import pytest
from django.urls import reverse
from playwright.sync_api import expect

from leads.models import ScoringRule
from tests.browser import BROWSER_MARKS, log_in, save_screenshot
from tests.factories import CampaignFactory, IcpSegmentFactory, UserFactory, VentureFactory
from ventures.models import AuditEvent, Venture
from ventures.roles import ADMINISTRATOR

pytestmark = BROWSER_MARKS


def select_and_delete(page, *names: str) -> None:
    page.goto(reverse("admin:ventures_venture_changelist"))
    for name in names:
        page.locator("#result_list tr", has_text=name).locator("input.action-select").check()
    page.select_option("select[name=action]", "delete_confirmed")
    page.click("button[name=index]")


@pytest.mark.django_db(transaction=True)
def test_an_administrator_deletes_an_empty_venture_but_not_one_campaigns_keep(page):
    acme = VentureFactory(name="Acme Robotics")
    CampaignFactory(venture=acme, name="Spring outreach")
    trial = VentureFactory(name="Trial Co")
    IcpSegmentFactory(venture=trial, name="Benelux")
    ScoringRule.objects.create(venture=trial, label="senior title", field="title",
                               values=["cto"], points=20)  # fmt: skip
    UserFactory(username="admin-ann", role=ADMINISTRATOR)
    log_in(page, "admin-ann")

    select_and_delete(page, "Acme Robotics")
    expect(page.locator("ul.messagelist")).to_contain_text(
        "Venture 'Acme Robotics' still has campaigns, which keep it, and cannot be deleted. "
        "Kill it instead to stop all its sending; its history stays for reports."
    )
    expect(page.locator("ul.messagelist")).to_contain_text("Nothing was deleted.")
    save_screenshot(page, "delete-venture-refused")

    select_and_delete(page, "Trial Co")
    expect(page.locator("ul.operation-objects")).to_have_text(
        "Trial Co (with 1 ICP segment and 1 scoring rule)"
    )
    save_screenshot(page, "delete-venture-confirm")
    page.fill("textarea[name=reason]", "Trial never started")
    page.click("input[name=confirm]")
    expect(page.locator("ul.messagelist")).to_contain_text("Deleted 1 venture.")
    assert list(Venture.objects.values_list("name", flat=True)) == ["Acme Robotics"]
    event = AuditEvent.objects.get(action="venture.delete")
    assert event.reason == "Trial never started"
