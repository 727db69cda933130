"""The dashboard in a real headless Chromium, as an Operator opens the console in the morning:
problems first, each campaign's badge and figures, an import's progress bar; then the same
venture once all is well. Screenshots at 1280 and 1440 px go to var/screenshots/dashboard-*."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse
from django.utils import timezone
from playwright.sync_api import expect

from leads.models import BatchState
from outreach.dispatch import tick
from outreach.health import health_check
from outreach.models import (
    AutoPause,
    FeedbackEvent,
    FeedbackKind,
    Mailbox,
    MessageState,
    OutboundMessage,
)
from outreach.tests.outbox import two_step_sequence
from tests import factories as make
from tests.browser import BROWSER_MARKS, log_in, save_screenshot, words_broken
from tests.proc import REPO
from tests.test_console_browser import open_all_day, start
from ventures.models import WorkerHeartbeat
from ventures.roles import OPERATOR
from ventures.services import campaign_set_kill_switch, campaign_transition

pytestmark = BROWSER_MARKS
SHOTS = REPO / "var" / "screenshots"
WIDTHS = (1280, 1440)


def shoot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        page.screenshot(path=SHOTS / f"dashboard-{name}-{width}.png", full_page=True)


def row(page, name: str):
    return page.locator("#dashboard tr.dash-row", has_text=name)


@pytest.fixture
def morning(db):
    """Acme's campaigns as an operator finds them: one sending (with an unknown message to
    settle), one auto-paused, one killed, one paused by a person; an import half done."""
    venture = make.VentureFactory(name="Acme Robotics", slug="acme", daily_send_limit=120)
    spring = open_all_day(make.CampaignFactory(venture=venture, name="Spring outreach",
                                          daily_send_limit=5000))  # fmt: skip
    two_step_sequence(spring)
    make.LeadFactory.create_batch(4, campaign=spring)
    start(spring)
    tick()
    follow_up = OutboundMessage.objects.filter(campaign=spring, step__position=2).first()
    OutboundMessage.objects.filter(pk=follow_up.pk).update(state=MessageState.UNKNOWN)
    cold = start(make.CampaignFactory(venture=venture, name="Cold CTOs"))
    reason = "bounce rate 6.0% (6 of 100 sent since 09:00 UTC) is above 5.0%"
    campaign_transition(campaign=cold, action="pause", actor="auto-pause",
                        reason="Auto-paused: " + reason)  # fmt: skip
    AutoPause.objects.create(campaign=cold, reason=reason)
    old = start(make.CampaignFactory(venture=venture, name="Old list"))
    campaign_set_kill_switch(campaign=old, on=True, actor="setup", reason="Spam trap hit")
    summer = start(make.CampaignFactory(venture=venture, name="Summer promo"))
    campaign_transition(campaign=summer, action="pause", actor="setup")
    make.ImportBatchFactory(campaign=spring, state=BatchState.RUNNING, source="Apollo DACH",
                       rows_total=2000, rows_done=1300, started_at=timezone.now())  # fmt: skip
    operator = make.UserFactory(username="op-olga", role=OPERATOR)
    make.MembershipFactory(venture=venture, user=operator)
    return venture


@pytest.mark.django_db(transaction=True)
def test_an_operator_reads_the_morning_dashboard_problems_first(page, morning):
    log_in(page, "op-olga")
    page.goto(reverse("admin:index"))
    problems = page.locator(".dash-problems")
    expect(problems).to_contain_text("No worker seen")
    expect(page.get_by_text("No worker seen")).to_have_count(1)  # said once, in the problems
    expect(page.locator(".dash-worker")).to_have_count(0)
    expect(problems).to_contain_text("Cold CTOs: Auto-paused: bounce rate 6.0%")
    expect(problems).to_contain_text("Old list: Killed: Spam trap hit")
    expect(problems).to_contain_text("Spring outreach: unknown messages to settle: 1")
    expect(row(page, "Spring outreach").locator("td.dash-sends")).to_have_text(
        "4 of 120 today (venture cap binds)"
    )
    expect(row(page, "Spring outreach").locator(".state")).to_have_text("Running")
    expect(row(page, "Summer promo").locator(".state")).to_have_text("Paused")
    expect(page.locator(".dash-imports")).to_contain_text("65%")
    expect(page.locator(".kill-control")).to_have_count(0)  # an Operator's: no global switch
    shoot(page, "problems")

    page.click(".dash-problems a:has-text('unknown messages to settle')")
    expect(page.locator("#result_list tbody tr")).to_have_count(1)
    expect(page.locator("#result_list")).to_contain_text("Unknown")


@pytest.mark.django_db(transaction=True)
def test_the_dashboard_breaks_lines_only_between_words(page, morning):
    """Django's dashboard.css lets a cell break anywhere, which made "QUEUE D" and "UNKNOW N"
    of the column headings at 1440 px: every heading and figure wraps at spaces only."""
    log_in(page, "op-olga")
    page.goto(reverse("admin:index"))
    cells = page.locator("#dashboard table th, #dashboard table td")
    expect(cells.first).to_be_visible()
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        assert words_broken(cells) == [], width
        fits = "document.documentElement.scrollWidth <= document.documentElement.clientWidth"
        assert page.evaluate(fits), width
    shoot(page, "headings")


@pytest.mark.django_db(transaction=True)
def test_a_calm_morning_says_all_clear(page, morning):
    WorkerHeartbeat.objects.create(name="cluster", last_seen=timezone.now())
    OutboundMessage.objects.filter(state=MessageState.UNKNOWN).update(state=MessageState.SENT)
    for name in ("Cold CTOs", "Old list"):  # the operator stopped both yesterday
        campaign_transition(campaign=morning.campaigns.get(name=name), action="stop", actor="op")
    log_in(page, "op-olga")
    page.goto(reverse("admin:index"))
    expect(page.locator(".dash-calm")).to_contain_text("All clear.")
    expect(page.locator(".dash-problems")).to_have_count(0)
    expect(page.locator(".dash-worker")).to_contain_text("Worker seen")
    expect(page.get_by_text("Worker seen")).to_have_count(1)
    shoot(page, "calm")


@pytest.mark.django_db(transaction=True)
def test_an_operator_sees_a_mailbox_the_engine_paused_and_opens_it(page, morning, settings):
    """Half of Spring's sends went out through one mailbox, and one of those bounced: the
    mailbox's rate (1 of 2) trips the health check, the campaign's (1 of 4) does not."""
    settings.AICMO_AUTOPAUSE_MIN_SENDS = 2
    settings.AICMO_AUTOPAUSE_BOUNCE_RATE = 0.3
    spring = morning.campaigns.get(name="Spring outreach")
    box = Mailbox.objects.create(venture=morning, name="Lena's inbox", from_name="Lena",
                                 from_email="lena@acme.example")  # fmt: skip
    box.campaigns.add(spring)
    sent = list(OutboundMessage.objects.filter(campaign=spring, state=MessageState.SENT))
    OutboundMessage.objects.filter(pk__in=[m.pk for m in sent[:2]]).update(mailbox=box)
    FeedbackEvent.objects.create(source="test", event_id="bounce-lena", kind=FeedbackKind.BOUNCED,
                                 message=sent[0], lead=sent[0].lead, venture_id=morning.pk)  # fmt: skip
    (pause,) = health_check(spring.pk)
    assert pause.mailbox == box
    log_in(page, "op-olga")
    page.goto(reverse("admin:index"))
    line = page.locator(".dash-problems li", has_text="Mailbox Lena <lena@acme.example>")
    expect(line).to_contain_text(
        "Mailbox Lena <lena@acme.example> (Spring outreach): Auto-paused: bounce rate 50.0% "
        "(1 of 2 sent"
    )
    # The campaign it held is a problem of its own: running, yet nothing can go out. This
    # line is the one place that says why in full.
    held = page.locator(".dash-problems li", has_text="Spring outreach: running, but")
    expect(held).to_have_text(
        re.compile(
            r"^Spring outreach: running, but no mailbox can send: every mailbox of the pool is "
            r"paused \(Lena <lena@acme\.example>: auto-paused, bounce rate 50\.0% \(1 of 2 "
            r"sent since .* UTC\) is above 30\.0%\)$"
        )
    )
    # Lena's is the pool's only mailbox: the badge and the sends refer to it briefly (not a
    # green "Running", nor "4 of 0"), without repeating the sentence.
    badge = row(page, "Spring outreach").locator(".state")
    expect(badge).to_have_text("Running, no mailbox can send")
    expect(badge).to_have_class(re.compile("state-stop"))
    sends = row(page, "Spring outreach").locator("td.dash-sends")
    expect(sends).to_have_text("4 sent today; held: see “Needs you now”")
    expect(sends).not_to_contain_text("of 0")
    board = page.locator("#dashboard")
    assert board.inner_text().count("every mailbox of the pool is paused") == 1
    assert "every mailbox of the pool is paused" not in (sends.get_attribute("title") or "")
    assert words_broken(page.locator("#dashboard table th, #dashboard table td")) == []
    shoot(page, "paused-mailbox")
    save_screenshot(page, "dashboard-held-said-once")
    line.locator("a").click()
    expect(page).to_have_url(re.compile(rf"/admin/outreach/mailbox/{box.pk}/change/$"))
    # Paused: it is switched back on by the confirmed, audited operation only.
    expect(page.locator("#id_is_active")).to_have_count(0)
    expect(page.get_by_text("Resume sending…")).to_be_visible()
