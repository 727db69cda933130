"""The control room in a real headless Chromium: state badges, the global kill switch from the
index (banner on every page), a confirmed limit raise, and adding a member from the venture
page. Screenshots of each key page at 1280 and 1440 px go to var/screenshots/."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest
from django.urls import reverse
from playwright.sync_api import expect

from tests.browser import BROWSER_MARKS, log_in
from tests.factories import CampaignFactory, MembershipFactory, UserFactory, VentureFactory
from tests.proc import REPO
from ventures.models import AuditEvent, Campaign, CampaignStatus, VentureMembership
from ventures.roles import ADMINISTRATOR, OPERATOR, VIEWER
from ventures.services import campaign_set_kill_switch, campaign_transition

pytestmark = BROWSER_MARKS
SHOTS = REPO / "var" / "screenshots"
WIDTHS = (1280, 1440)


def shoot(page, name: str) -> None:
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        page.screenshot(path=SHOTS / f"console-{name}-{width}.png", full_page=True)


def open_all_day(campaign: Campaign) -> Campaign:
    Campaign.objects.filter(pk=campaign.pk).update(
        send_days="1234567", send_window_start=dt.time(0), send_window_end=dt.time(23, 59, 59)
    )
    campaign.refresh_from_db()
    return campaign


def start(campaign: Campaign) -> Campaign:
    return campaign_transition(campaign=campaign, action="start", actor="setup")


@pytest.fixture
def fleet(db):
    """A venture with a campaign in each state an operator meets."""
    venture = VentureFactory(name="Acme Robotics", slug="acme", daily_send_limit=120)
    spring = CampaignFactory(venture=venture, name="Spring outreach", daily_send_limit=5000)
    running = start(open_all_day(spring))
    # Every day but today in Paris: its window opens tomorrow, whatever the time of the run.
    today = dt.datetime.now(zoneinfo.ZoneInfo("Europe/Paris")).isoweekday()
    other_days = "".join(d for d in "1234567" if d != str(today))
    start(CampaignFactory(venture=venture, name="Night shift", timezone="Europe/Paris",
                          send_days=other_days))  # fmt: skip
    killed = start(CampaignFactory(venture=venture, name="Old list"))
    campaign_set_kill_switch(campaign=killed, on=True, actor="setup", reason="Spam trap hit")
    paused = start(CampaignFactory(venture=venture, name="Summer promo"))
    campaign_transition(campaign=paused, action="pause", actor="setup")
    auto = start(CampaignFactory(venture=venture, name="Cold CTOs"))
    campaign_transition(
        campaign=auto,
        action="pause",
        actor="auto-pause",
        reason="Auto-paused: bounce rate 6.0% (6 of 100 sent since 2026-12-02 09:00 UTC) is "
        "above 5.0%",
    )
    CampaignFactory(venture=venture, name="Next quarter")
    CampaignFactory(venture=venture, name="Last year", status=CampaignStatus.COMPLETED)
    return venture, running


def badge(page, campaign_name: str):
    row = page.locator("#result_list tbody tr", has_text=campaign_name)
    return row.locator("td.field-state span.state")


@pytest.mark.django_db(transaction=True)
def test_an_administrator_reads_each_campaigns_state_and_stops_everything_from_the_index(
    page, fleet
):
    UserFactory(username="admin-ann", role=ADMINISTRATOR)
    log_in(page, "admin-ann")

    page.goto(reverse("admin:ventures_campaign_changelist"))
    expect(badge(page, "Spring outreach")).to_have_text("Running")
    expect(badge(page, "Spring outreach")).to_have_class("state state-ok")
    expect(badge(page, "Night shift")).to_contain_text("Outside send window until ")
    expect(badge(page, "Night shift")).to_contain_text("09:00 (Europe/Paris)")
    expect(badge(page, "Old list")).to_have_text("Killed: Spam trap hit")
    expect(badge(page, "Summer promo")).to_have_text("Paused")
    expect(badge(page, "Cold CTOs")).to_contain_text("Auto-paused: bounce rate 6.0%")
    expect(badge(page, "Next quarter")).to_have_text("Draft")
    expect(badge(page, "Last year")).to_have_text("Finished")
    row = page.locator("#result_list tbody tr", has_text="Spring outreach")
    expect(row.locator("td.field-effective_limit_short")).to_have_text("120venture cap binds")
    expect(row.locator("td.field-send_window")).to_contain_text("Every day")
    shoot(page, "campaigns")

    page.goto(reverse("admin:index"))
    control = page.locator(".kill-control")
    expect(control).to_contain_text("Turning it on stops every send of every venture at once")
    shoot(page, "index")
    control.locator("a.kill-switch-kill").click()
    expect(page.locator("h1")).to_have_text("Turn on the global kill switch: are you sure?")
    expect(page.locator("#content-main")).to_contain_text("2 running campaign(s) stop sending now")
    shoot(page, "kill-confirm")
    page.click("input[name=confirm]")  # no reason: refused
    expect(page.locator(".errornote").first).to_be_visible()
    page.fill("#id_reason", "ESP incident 42")
    page.click("input[name=confirm]")

    banner = page.locator(".kill-banner")
    expect(banner).to_contain_text("The global kill switch is ON: nothing is sent.")
    expect(banner).to_contain_text("by admin-ann")
    expect(banner).to_contain_text("ESP incident 42")
    page.goto(reverse("admin:ventures_campaign_changelist"))
    expect(page.locator(".kill-banner")).to_be_visible()
    expect(badge(page, "Spring outreach")).to_have_text(
        "Running, halted: global kill switch (admin)"
    )
    shoot(page, "campaigns-killed")
    assert AuditEvent.objects.get(action="global.kill").reason == "ESP incident 42"

    page.goto(reverse("admin:index"))
    page.click(".kill-control a.kill-switch-unkill")
    page.click("input[name=confirm]")
    expect(page.locator(".kill-banner")).to_have_count(0)

    # Kill and go-live stand apart from Pause: red, and a page that says what they stop.
    spring = Campaign.objects.get(name="Spring outreach")
    page.goto(reverse("admin:ventures_campaign_change", args=[spring.pk]))
    expect(page.locator("a.operation-kill")).to_have_class("operation-kill operation-danger")
    expect(page.locator("a.operation-go-live")).to_have_class("operation-go-live operation-danger")
    expect(page.locator("a.operation-pause")).to_have_class("operation-pause")  # not red
    expect(page.locator(".deletelink")).to_have_count(0)
    shoot(page, "campaign-admin")
    page.click("a.operation-kill")
    expect(page.locator(".operation-warning")).to_contain_text("Kill stops every email")
    expect(page.locator(".operation-objects")).to_contain_text(
        "Spring outreach (Acme Robotics): Running"
    )
    shoot(page, "campaign-kill-confirm")
    page.goto(reverse("admin:ventures_campaign_change", args=[spring.pk]))
    page.click("a.operation-go-live")
    expect(page.locator(".operation-warning")).to_contain_text("real email to real people")
    shoot(page, "campaign-go-live-confirm")


@pytest.mark.django_db(transaction=True)
def test_an_operator_raising_a_running_campaigns_limit_confirms_with_a_reason(page, fleet):
    venture, running = fleet
    Campaign.objects.filter(pk=running.pk).update(
        daily_send_limit=60, warmup_start_limit=10, warmup_daily_increase=10
    )
    user = UserFactory(username="op-otto", role=OPERATOR)
    MembershipFactory(venture=venture, user=user)
    log_in(page, "op-otto")

    page.goto(reverse("admin:ventures_campaign_change", args=[running.pk]))
    expect(page.locator(".field-effective_limit")).to_contain_text(
        "Effective today: 10 (campaign cap binds;"
    )
    expect(page.locator("a.operation-pause")).to_have_count(1)  # to its confirm page
    expect(page.locator(".deletelink")).to_have_count(0)
    page.click("details.configuration summary")  # the settings: a section below the figures
    page.fill("#id_daily_send_limit", "5000")
    page.fill("#id_warmup_start_limit", "")
    page.click("input[name=_save]")

    expect(page.locator("h1")).to_contain_text("Raise the limits of Spring outreach")
    table = page.locator("table.limit-changes")
    expect(table).to_contain_text("Daily send limit")
    expect(table).to_contain_text("5,000")
    expect(page.locator(".limits-after")).to_contain_text(
        "Effective today: 120 (venture cap binds;"
    )
    shoot(page, "limits-confirm")
    page.fill("#id_raise_reason", "Client doubled the list")
    page.click("input[name=confirm]")

    expect(page.locator("ul.messagelist")).to_contain_text("was changed successfully")
    running.refresh_from_db()
    assert (running.daily_send_limit, running.warmup_start_limit) == (5000, None)
    event = AuditEvent.objects.for_entity(running).get(action="campaign.update")
    assert event.reason == "Client doubled the list"
    page.goto(reverse("admin:ventures_campaign_change", args=[running.pk]))
    expect(page.locator(".field-effective_limit")).to_contain_text("120 (venture cap binds;")
    shoot(page, "campaign")


@pytest.mark.django_db(transaction=True)
def test_an_operator_raising_a_mailbox_cap_of_a_running_campaign_confirms_with_a_reason(
    page, fleet
):
    from outreach.models import Mailbox

    venture, running = fleet
    box = Mailbox.objects.create(venture=venture, name="Lena", from_name="Lena",
                                 from_email="lena@acme.example", daily_limit=40)  # fmt: skip
    box.campaigns.add(running)
    user = UserFactory(username="op-otto", role=OPERATOR)
    MembershipFactory(venture=venture, user=user)
    log_in(page, "op-otto")

    page.goto(reverse("admin:outreach_mailbox_change", args=[box.pk]))
    page.fill("#id_daily_limit", "400")
    page.click("input[name=_save]")

    expect(page.locator("h1")).to_contain_text("Raise the limits of Lena <lena@acme.example>")
    expect(page.locator(".limits-intro")).to_contain_text(
        "Mailbox Lena <lena@acme.example> sends for running campaign Spring outreach."
    )
    expect(page.locator("table.limit-changes")).to_contain_text("Daily limit")
    expect(page.locator(".limits-after")).to_contain_text("400 sends from it allowed today")
    shoot(page, "mailbox-limits-confirm")
    page.fill("#id_raise_reason", "Domain warmed up")
    page.click("input[name=confirm]")

    expect(page.locator("ul.messagelist")).to_contain_text("was changed successfully")
    box.refresh_from_db()
    assert box.daily_limit == 400
    assert AuditEvent.objects.for_entity(box).get(action="mailbox.update").reason == (
        "Domain warmed up"
    )


@pytest.mark.django_db(transaction=True)
def test_an_operator_resumes_a_mailbox_the_engine_paused_from_its_page_with_a_reason(page, fleet):
    from outreach.health import ACTOR, MAILBOX_AUTO_PAUSE
    from outreach.models import AutoPause, Mailbox
    from ventures.services import audit_record

    venture, running = fleet
    box = Mailbox.objects.create(venture=venture, name="Lena", from_name="Lena", is_active=False,
                                 from_email="lena@acme.example", daily_limit=40)  # fmt: skip
    box.campaigns.add(running)
    why = "bounce rate 9.0% (9 of 100 sent since 2026-12-07 09:00 UTC) is above 5.0%"
    audit_record(
        actor=ACTOR,
        action=MAILBOX_AUTO_PAUSE,
        entity=box,
        reason=why,
        before={"is_active": True},
        after={"is_active": False},
    )  # as outreach.health
    AutoPause.objects.create(campaign=running, mailbox=box, reason=why)
    user = UserFactory(username="op-olga", role=OPERATOR)
    MembershipFactory(venture=venture, user=user)
    log_in(page, "op-olga")

    page.goto(reverse("admin:outreach_mailbox_change", args=[box.pk]))
    expect(page.locator(".field-is_active")).to_contain_text("Is active")
    expect(page.locator("#id_is_active")).to_have_count(0)  # read-only: only the operation
    shoot(page, "mailbox-paused")
    page.click("text=Resume sending…")
    expect(page.locator("#content")).to_contain_text(
        f"The engine paused Lena <lena@acme.example> in campaign Spring outreach: {why}."
    )
    shoot(page, "mailbox-resume-confirm")
    page.fill("textarea[name=reason]", "Bounced addresses removed")
    page.click("input[type=submit]")

    expect(page.locator("ul.messagelist")).to_contain_text("Resumed 1 mailbox.")
    expect(page.locator("a", has_text="Pause sending…")).to_be_visible()
    box.refresh_from_db()
    assert box.is_active is True
    assert AuditEvent.objects.for_entity(box).get(action="mailbox.resume").reason == (
        "Bounced addresses removed"
    )


@pytest.mark.django_db(transaction=True)
def test_an_administrator_adds_a_member_and_a_viewer_reads_day_names(page, fleet, settings):
    venture, running = fleet
    UserFactory(username="admin-ann", role=ADMINISTRATOR)
    vera = UserFactory(username="viewer-vera", role=VIEWER)
    log_in(page, "admin-ann")

    page.goto(reverse("admin:ventures_venture_change", args=[venture.pk]))
    page.click("a.operation-add-member")
    expect(page.locator("h1")).to_have_text("Add a member")
    page.select_option("#id_user", label="viewer-vera")
    page.select_option("#id_role", value=VIEWER)
    page.fill("#id_reason", "Client's analyst")
    shoot(page, "add-member")
    page.click("input[name=confirm]")
    expect(page.locator("ul.messagelist")).to_contain_text(
        "Added viewer-vera to Acme Robotics as Viewer."
    )
    assert VentureMembership.objects.filter(venture=venture, user=vera).exists()

    page.context.clear_cookies()
    log_in(page, "viewer-vera")
    Campaign.objects.filter(pk=running.pk).update(send_days="135")
    page.goto(reverse("admin:ventures_campaign_change", args=[running.pk]))
    expect(page.locator(".field-send_days_display")).to_contain_text("Mon, Wed, Fri")
    expect(page.locator("#content-main")).not_to_contain_text("135")
    shoot(page, "campaign-viewer")
    page.goto(reverse("admin:ventures_workerheartbeat_changelist"))
    expect(page.locator("#content-main")).to_contain_text("Your role does not allow this page")
    expect(page.locator("#site-name")).to_contain_text("AICMO Campaign Engine")
    shoot(page, "forbidden")


@pytest.mark.django_db(transaction=True)
def test_an_administrator_manages_members_in_one_list_on_the_venture_page(page, fleet):
    venture, _running = fleet
    UserFactory(username="admin-ann", role=ADMINISTRATOR)
    otto = UserFactory(username="op-otto", role=OPERATOR)
    vera = UserFactory(username="viewer-vera", role=VIEWER)
    for user in (otto, vera):
        MembershipFactory(venture=venture, user=user)
    log_in(page, "admin-ann")

    page.goto(reverse("admin:ventures_venture_change", args=[venture.pk]))
    members = page.locator("fieldset.members")
    expect(members.locator("h2")).to_have_text("Members")
    expect(members.locator("tr.form-row")).to_have_count(2)
    vera_row = members.locator("tr.form-row", has_text="viewer-vera")
    expect(vera_row.locator("select")).to_have_value(VIEWER)
    # One way to add, under the list; nothing in the page's tools, no "Add another" row.
    expect(page.locator("a.operation-add-member")).to_have_count(1)
    expect(members.locator("a.operation-add-member")).to_be_visible()
    expect(page.locator(".object-tools a.operation-add-member")).to_have_count(0)
    expect(members.get_by_text("Add another")).to_have_count(0)
    members.scroll_into_view_if_needed()
    shoot(page, "venture-members")

    vera_row.locator("select").select_option(OPERATOR)
    members.locator("tr.form-row", has_text="op-otto").get_by_label(
        "Remove from the venture"
    ).check()
    page.click("input[name=_continue]")
    expect(page.locator("ul.messagelist")).to_contain_text("was changed successfully")
    expect(members.locator("tr.form-row")).to_have_count(1)
    expect(members.locator("tr.form-row", has_text="viewer-vera").locator("select")).to_have_value(
        OPERATOR
    )
    assert list(
        VentureMembership.objects.filter(venture=venture).values_list("user", flat=True)
    ) == [vera.pk]
    assert vera.groups.filter(name=OPERATOR).exists()
    actions = set(AuditEvent.objects.for_entity(venture).values_list("action", flat=True))
    assert {"venture.member_role", "venture.member_remove"} <= actions
    shoot(page, "venture-members-saved")


@pytest.mark.django_db(transaction=True)
def test_an_operator_of_no_venture_is_told_whom_to_ask(page, db):
    UserFactory(username="admin-ann", role=ADMINISTRATOR)
    UserFactory(username="op-new", role=OPERATOR)
    log_in(page, "op-new")
    page.goto(reverse("admin:index"))
    expect(page.locator(".console-hint")).to_contain_text("not a member of any venture yet")
    expect(page.locator(".console-hint")).to_contain_text("admin-ann@agency.example")
    page.goto(reverse("admin:ventures_campaign_changelist"))
    expect(page.locator(".console-hint")).to_contain_text("Add a member")
    shoot(page, "no-venture")
