"""The campaign page in a real browser: an Operator reads the figures first (funnel, the
14-day chart, variants, caps, next sends), opens the Configuration section below them and
saves; nothing scrolls sideways at 1280 px; a Viewer sees the figures and no controls."""

from __future__ import annotations

import pytest
from django.urls import reverse
from playwright.sync_api import expect

from reporting.tests.campaigns import known_campaign_with_members
from tests.browser import BROWSER_MARKS, log_in
from tests.proc import REPO

pytestmark = BROWSER_MARKS
SHOTS = REPO / "var" / "screenshots"


def no_sideways_scroll(page) -> bool:
    return page.evaluate(
        "document.documentElement.scrollWidth <= document.documentElement.clientWidth"
    )


def wide_elements(page) -> list[str]:
    """What sticks out past the viewport's right edge (for the failure message)."""
    return page.evaluate(
        """[...document.querySelectorAll('body *')]
        .filter(e => e.getBoundingClientRect().right > document.documentElement.clientWidth)
        .slice(0, 8).map(e => e.tagName + '.' + e.className + ' ' + e.getBoundingClientRect().right)"""
    )


@pytest.mark.django_db(transaction=True)
def test_operator_reads_the_figures_first_then_configures(page, settings, tmp_path):
    campaign = known_campaign_with_members(settings, tmp_path)

    log_in(page, "op-rita")
    url = reverse("admin:ventures_campaign_change", args=[campaign.pk])
    page.goto(url)
    figures = page.locator("fieldset.change-panel", has_text="Figures").first
    expect(figures.locator("tr.funnel-sent")).to_contain_text("18")
    expect(figures.locator("tr.funnel-replied")).to_contain_text("16.7%")
    expect(figures.locator(".glance-chart svg")).to_have_count(1)
    expect(figures.locator(".glance-caps tr.binds")).to_contain_text("binds")
    expect(figures.get_by_role("link", name="Open the full report")).to_be_visible()
    expect(figures.locator(".glance-report")).to_contain_text("No copy kept yet. No daily report.")
    report_url = reverse("admin:reporting_campaign_report", args=[campaign.pk])
    expect(page.locator(f'#content-main a[href="{report_url}"]')).to_have_count(1)
    expect(page.locator(".object-tools .operation-pause")).to_be_visible()
    config = page.locator("details.configuration")
    expect(page.locator("#id_daily_send_limit")).to_be_hidden()  # collapsed below the figures
    figures_top = figures.bounding_box()["y"]
    assert figures_top < config.bounding_box()["y"]
    assert page.locator(".campaign-header").bounding_box()["y"] < figures_top
    SHOTS.mkdir(parents=True, exist_ok=True)
    for width in (1280, 1440):
        page.set_viewport_size({"width": width, "height": 900})
        page.screenshot(path=SHOTS / f"campaign-page-{width}.png", full_page=True)
        assert no_sideways_scroll(page), (width, wide_elements(page))

    config.locator("summary").click()
    page.fill("#id_objective", "Book demos with RevOps leads")
    page.locator("input[name=_continue]").click()
    expect(page.locator("ul.messagelist")).to_contain_text("was changed successfully")
    campaign.refresh_from_db()
    assert campaign.objective == "Book demos with RevOps leads"

    page.context.clear_cookies()
    log_in(page, "viewer-vic")
    page.goto(url)
    expect(page.locator("fieldset.change-panel", has_text="Figures").first).to_contain_text(
        "Leads sent to"
    )
    expect(page.locator(".object-tools .operation-pause")).to_have_count(0)
    expect(page.locator("input[name=_save]")).to_have_count(0)
    page.screenshot(path=SHOTS / "campaign-page-viewer.png", full_page=True)
