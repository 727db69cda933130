"""The campaign report in a real browser: an Operator opens it from Reporting, reads its
figures and charts, downloads the PDF and keeps a copy; a Viewer reads and downloads."""

from __future__ import annotations

import pytest
from django.urls import reverse
from playwright.sync_api import expect

from reporting.tests.campaigns import known_campaign_with_members
from tests.browser import BROWSER_MARKS, log_in
from tests.proc import REPO

pytestmark = BROWSER_MARKS
SHOTS = REPO / "var" / "screenshots"


@pytest.mark.django_db(transaction=True)
def test_operator_opens_reads_downloads_and_keeps_the_report(page, settings, tmp_path):
    campaign = known_campaign_with_members(settings, tmp_path)

    log_in(page, "op-rita")
    page.goto(reverse("admin:reporting_reportfile_changelist"))
    page.get_by_role("link", name="Open the report").click()
    report = page.locator(".aicmo-report")
    expect(report.locator("h1")).to_have_text(campaign.name)
    funnel = report.locator("table", has_text="Rate per lead sent to")
    expect(funnel.locator("tr", has_text="Replied positively")).to_contain_text("1")
    expect(funnel.locator("tr", has_text="Sent at least one email")).to_contain_text("18")
    expect(report.locator(".chart svg")).to_have_count(3)
    expect(report.locator("ol.actions")).to_contain_text("Start a nurture sequence")
    page.set_viewport_size({"width": 1280, "height": 900})
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SHOTS / "report-page.png", full_page=True)

    with page.expect_download() as pdf:
        page.get_by_role("link", name="PDF", exact=True).click()
    assert pdf.value.suggested_filename == f"{campaign.slug}-report.pdf"
    assert pdf.value.path().read_bytes().startswith(b"%PDF-")
    # The bundle (every format, the PDF too) is written before the page returns: seconds on a
    # quiet machine, past the default 15 s on a crowded one.
    page.get_by_role("button", name="Keep a copy (proof bundle)").click(timeout=60_000)
    expect(page.locator("ul.messagelist")).to_contain_text("Kept a copy: reports/")
    expect(page.locator(".report-kept")).to_contain_text("Proof bundle (ZIP)")

    page.context.clear_cookies()
    log_in(page, "viewer-vic")
    page.goto(reverse("admin:reporting_campaign_report", args=[campaign.pk]))
    expect(page.get_by_role("link", name="Markdown")).to_be_visible()
    expect(page.get_by_role("button", name="Keep a copy (proof bundle)")).to_have_count(0)
    page.screenshot(path=SHOTS / "report-page-viewer.png")
