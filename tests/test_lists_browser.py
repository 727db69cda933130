"""The console's lists and confirm pages in a real browser, as an Operator of one of two
ventures: the message list narrowed by its filters (which offer only the Operator's own
mailboxes and campaigns), the feedback list, and the confirm pages of a bulk action and of
Pause, which name what they will touch and change nothing until confirmed."""

from __future__ import annotations

import pytest
from django.urls import reverse
from playwright.sync_api import expect

from outreach.models import MessageState, OutboundMessage
from tests.browser import BROWSER_MARKS, log_in
from tests.factories import MembershipFactory, UserFactory
from tests.proc import REPO
from tests.test_admin_lists_and_actions import populate
from ventures.models import Campaign, CampaignStatus
from ventures.roles import OPERATOR

pytestmark = BROWSER_MARKS
SHOTS = REPO / "var" / "screenshots"


def shoot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.set_viewport_size({"width": 1440, "height": 900})
    page.screenshot(path=SHOTS / f"lists-{name}.png", full_page=True)


@pytest.mark.django_db(transaction=True)
def test_an_operator_narrows_the_lists_and_confirms_before_acting(page):
    populate("Alpha")
    campaign = populate("Bravo")
    user = UserFactory(username="op-bravo", role=OPERATOR)
    MembershipFactory(venture=campaign.venture, user=user)
    log_in(page, "op-bravo")

    page.goto(reverse("admin:outreach_outboundmessage_changelist"))
    sidebar = page.locator("#changelist-filter")
    for title in ("state", "campaign", "mailbox", "step", "sent at", "reason"):
        expect(sidebar).to_contain_text(f"By {title}")
    expect(sidebar).to_contain_text("sam@bravo-mail.example")
    expect(sidebar).not_to_contain_text("Alpha")
    sidebar.get_by_role("link", name="Bravo Co / sam@bravo-mail.example").click()
    page.locator("#changelist-filter").get_by_role("link", name="Step 1", exact=True).click()
    rows = page.locator("#result_list tbody tr")
    expect(rows).to_have_count(
        OutboundMessage.objects.filter(step__position=1, campaign=campaign).count()
    )
    expect(page.locator("#result_list")).not_to_contain_text("alpha")
    page.fill("#searchbar", "ANN@BRAVO")
    page.press("#searchbar", "Enter")
    expect(rows).to_have_count(1)
    expect(rows).to_contain_text("ann@bravo-lead.example")
    shoot(page, "messages-filtered")

    page.goto(reverse("admin:outreach_feedbackevent_changelist"))
    for title in ("kind", "sentiment", "campaign", "source", "received at"):
        expect(page.locator("#changelist-filter")).to_contain_text(f"By {title}")
    expect(page.locator("#result_list")).to_contain_text("ann@bravo-lead.example")
    shoot(page, "feedback")

    # A bulk action on the task queue: the confirm page lists the tasks it will settle.
    page.goto(reverse("admin:outreach_manualtask_changelist"))
    page.locator("#action-toggle").check()
    page.select_option("select[name=action]", "tasks_done")
    page.click("button[name=index]")
    expect(page.locator("h1")).to_contain_text("Mark done: are you sure?")
    expect(page.locator(".operation-objects")).to_contain_text("ann@bravo-lead.example")
    shoot(page, "tasks-done-confirm")
    assert not OutboundMessage.objects.filter(state=MessageState.TASK_DONE).exists()
    page.click("input[name=confirm]")
    expect(page.locator("ul.messagelist")).to_contain_text("Marked 1 manual task done.")

    # Pause, from the campaign page: a page that says what it stops, then the pause.
    page.goto(reverse("admin:ventures_campaign_change", args=[campaign.pk]))
    page.click("a.operation-pause")
    expect(page.locator(".operation-objects")).to_contain_text("Bravo Launch (Bravo Co): ")
    expect(page.locator(".operation-warning")).to_contain_text("Nothing more is sent")
    shoot(page, "pause-confirm")
    assert Campaign.objects.get(pk=campaign.pk).status == CampaignStatus.RUNNING
    page.click("input[name=confirm]")
    expect(page.locator("ul.messagelist")).to_contain_text("Paused 1 campaign.")
    assert Campaign.objects.get(pk=campaign.pk).status == CampaignStatus.PAUSED


@pytest.mark.django_db(transaction=True)
def test_an_administrator_lifts_a_suppression_only_after_a_page_naming_it(page):
    """No "Delete selected" on the suppression list: "Lift selected suppressions…" names the
    entries, warns that mail may go out again, and needs a reason."""
    from leads.models import SuppressionEntry
    from tests.factories import SuppressionEntryFactory, VentureFactory
    from ventures.roles import ADMINISTRATOR

    venture = VentureFactory(name="Acme Robotics")
    SuppressionEntryFactory(venture=venture, value="ann@prospect.example", source="admin")
    SuppressionEntryFactory(
        venture=venture, value="bob@prospect.example", source="unsubscribe (link)"
    )
    UserFactory(username="admin-ada", role=ADMINISTRATOR)
    log_in(page, "admin-ada")
    page.goto(reverse("admin:leads_suppressionentry_changelist"))
    options = page.locator("select[name=action] option")
    expect(options).to_contain_text(["---------", "Lift selected suppressions…"])
    expect(page.locator("select[name=action]")).not_to_contain_text("Delete")
    page.locator("#result_list tr", has_text="ann@prospect.example").locator(
        "input.action-select"
    ).check()
    page.select_option("select[name=action]", "lift_suppressions")
    page.click("button[name=index]")
    expect(page.locator("h1")).to_contain_text("Lift suppression: are you sure?")
    expect(page.locator(".operation-objects")).to_have_text("ann@prospect.example")
    expect(page.locator(".operation-warning")).to_contain_text("may go out again")
    shoot(page, "suppression-lift-confirm")
    page.click("input[name=confirm]")  # no reason yet: the browser asks for one first
    expect(page.locator("h1")).to_contain_text("Lift suppression: are you sure?")
    expect(page.locator("#id_reason")).to_have_attribute("required", "")
    assert SuppressionEntry.objects.count() == 2
    page.fill("#id_reason", "Typo in the address; the right one is listed")
    page.click("input[name=confirm]")
    expect(page.locator("ul.messagelist")).to_contain_text("Lifted 1 suppression entry.")
    assert list(SuppressionEntry.objects.values_list("value", flat=True)) == [
        "bob@prospect.example"
    ]
