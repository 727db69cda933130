"""The lead console as an operator sees it, in a real headless Chromium: the list at laptop and
desktop widths, search and export, what a bulk do-not-contact confirm names, the import's
remapping, totals and result, the lead page with its timeline and operations, and a Viewer
who is offered nothing they cannot do. Screenshots go to var/screenshots/."""

from __future__ import annotations

import csv
import io

import pytest
from django.urls import reverse
from playwright.sync_api import expect

from leads.models import ConsentStatus, ImportBatch, Lead
from tests.browser import BROWSER_MARKS, log_in
from tests.factories import (
    CampaignFactory,
    IcpSegmentFactory,
    LeadFactory,
    MembershipFactory,
    UserFactory,
)
from tests.proc import REPO
from ventures.roles import OPERATOR, VIEWER

pytestmark = BROWSER_MARKS
SHOTS = REPO / "var" / "screenshots"

CSV = (
    "Work Email,Given,Last Name,Firm,Notes\n"
    "ann@acme.example,Ann,Smith,Acme,Met at SaaStr\n"
    "broken,Bob,Jones,Beta,\n"
    "carl@gamma.example,Carl,Berg,Gamma,\n"
)


@pytest.fixture
def console(db):
    campaign = CampaignFactory(name="Spring outreach")
    venture = campaign.venture
    segment = IcpSegmentFactory(venture=venture, name="RevOps leaders")
    for n, (first, last, company) in enumerate(
        [
            ("Ann", "Smith", "Acme Corporation International"),
            ("Bob", "Goldsmith", "Beta Industries"),
            ("Cleo", "Jones", "Smithers & Partners"),
            ("Dana", "Okafor-Lindqvist", "Gamma Logistics Europe"),
        ]
        * 3
    ):
        LeadFactory(
            campaign=campaign,
            email=f"{first.lower()}.{last.lower()}{n}@{company.split()[0].lower()}.example",
            first_name=first,
            last_name=last,
            company=company,
            title="Vice President of Revenue Operations",
            segment=segment,
            grade="AB"[n % 2],
            fit_score=80 - n,
        )
    operator = UserFactory(username="op-olga", role=OPERATOR)
    viewer = UserFactory(username="viewer-vic", role=VIEWER)
    for user in (operator, viewer):
        MembershipFactory(venture=venture, user=user)
    return campaign


def hidden_columns(page) -> list[str]:
    """The list's columns that end past the visible part of its scrolling box (or the window)."""
    return page.evaluate(
        """() => {
            const box = document.querySelector('#changelist .results');
            const right = Math.min(box.getBoundingClientRect().right, window.innerWidth);
            return [...document.querySelectorAll('#result_list thead th')]
                .filter(th => th.getBoundingClientRect().right > right + 1)
                .map(th => th.className);
        }"""
    )


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("width", [1280, 1440])
def test_status_grade_and_segment_are_visible_without_scrolling(page, console, width):
    page.set_viewport_size({"width": width, "height": 900})
    log_in(page, "op-olga")
    page.goto(reverse("admin:leads_lead_changelist"))
    expect(page.locator("#result_list")).to_be_visible()
    page.screenshot(path=SHOTS / f"lead-list-{width}.png")
    hidden = hidden_columns(page)
    assert hidden == [], f"columns behind a scroll at {width} px: {hidden}"
    assert page.evaluate("() => document.documentElement.scrollWidth") <= width
    row = page.locator("#result_list tbody tr").first
    expect(row.locator("td.field-standing")).to_have_text("Active")
    expect(row.locator("td.field-segment_name")).to_have_text("RevOps leaders")


@pytest.mark.django_db(transaction=True)
def test_operator_searches_by_last_name_and_exports_what_they_see(page, console):
    page.set_viewport_size({"width": 1440, "height": 900})
    log_in(page, "op-olga")
    page.goto(reverse("admin:leads_lead_changelist"))
    page.fill("#searchbar", "smith")
    page.press("#searchbar", "Enter")
    rows = page.locator("#result_list tbody tr")
    expect(rows).to_have_count(6)  # Ann Smith x3 and Smithers & Partners x3, not Goldsmith
    expect(page.locator("#result_list")).not_to_contain_text("Goldsmith")
    page.screenshot(path=SHOTS / "lead-search-last-name.png")
    with page.expect_download() as download:
        page.click("a.export-leads-link")
    body = download.value.path().read_text()
    emails = sorted(r["email"] for r in csv.DictReader(io.StringIO(body)))
    assert len(emails) == 6 and all("goldsmith" not in e for e in emails)


@pytest.mark.django_db(transaction=True)
def test_bulk_do_not_contact_confirm_names_the_leads_and_the_filters(page, console):
    page.set_viewport_size({"width": 1440, "height": 900})
    log_in(page, "op-olga")
    page.goto(reverse("admin:leads_lead_changelist") + "?q=jones")
    page.check("#action-toggle")
    page.select_option("select[name=action]", "mark_dnc")
    page.click("button[name=index]")
    expect(page.locator("h1")).to_contain_text("Mark do-not-contact: are you sure?")
    table = page.locator("table.operation-leads")
    expect(table).to_contain_text("Cleo Jones")
    expect(table).to_contain_text("Smithers & Partners")
    expect(page.locator(".operation-filters")).to_contain_text("Search: jones")
    page.screenshot(path=SHOTS / "lead-bulk-dnc-confirm.png", full_page=True)
    page.fill("#id_reason", "asked on a call")
    page.click("input[name=confirm]")
    expect(page.locator("ul.messagelist")).to_contain_text("Marked 3 leads do-not-contact")
    assert Lead.objects.filter(consent_status=ConsentStatus.DNC).count() == 3


@pytest.mark.django_db(transaction=True)
def test_operator_remaps_a_column_sees_totals_imports_and_downloads_rejected_rows(
    page, console, tmp_path
):
    page.set_viewport_size({"width": 1440, "height": 900})
    csv_file = tmp_path / "spring.csv"
    csv_file.write_text(CSV)
    log_in(page, "op-olga")
    page.goto(reverse("admin:leads_lead_import") + f"?campaign={console.pk}")
    page.set_input_files("#id_file", str(csv_file))
    page.click("input[type=submit]")
    expect(page.locator("table.import-totals")).to_contain_text("New")
    expect(page.locator("tr.total-created td")).to_have_text("2")
    expect(page.locator("tr.total-invalid td")).to_have_text("1")

    page.select_option("select[data-column=Given]", "first_name")
    page.select_option("select[data-column=Firm]", "company")
    page.select_option("select[data-column=Notes]", "")
    page.click("input[name=remap]")
    expect(page.locator("select[data-column=Given]")).to_have_value("first_name")
    expect(page.locator("select[data-column=Given] option:checked")).to_have_text("First name")
    page.screenshot(path=SHOTS / "lead-import-preview.png", full_page=True)
    assert not ImportBatch.objects.exists()

    page.click("input[name=confirm]")
    expect(page.locator("div.field-campaign_link")).to_contain_text("Spring outreach")
    expect(page.locator("ul.import-outcome")).to_contain_text("2 New")
    page.screenshot(path=SHOTS / "lead-import-result.png", full_page=True)
    ann = Lead.objects.get(email_key="ann@acme.example")
    assert (ann.first_name, ann.company, ann.custom_fields) == ("Ann", "Acme", {})

    with page.expect_download() as download:
        page.click("p.rejected-download a")
    rows = list(csv.reader(io.StringIO(download.value.path().read_text())))
    assert rows[0] == ["Work Email", "Given", "Last Name", "Firm", "Notes", "reason"]
    assert rows[1][:4] == ["broken", "Bob", "Jones", "Beta"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("width", [1280, 1440])
def test_lead_page_leads_with_the_score_and_shows_the_timeline_and_operations(page, console, width):
    page.set_viewport_size({"width": width, "height": 900})
    lead = Lead.objects.order_by("pk").first()
    Lead.objects.filter(pk=lead.pk).update(score_explanation="+40 title matches; +30 segment")
    log_in(page, "op-olga")
    page.goto(reverse("admin:leads_lead_change", args=[lead.pk]))
    explanation = page.locator("div.field-score_explanation")
    expect(explanation).to_contain_text("+40 title matches")
    assert explanation.bounding_box()["y"] < 900, "the score is not on the first screen"
    expect(page.locator("div.field-identity_hash")).not_to_be_visible()  # collapsed
    expect(page.locator("table.lead-timeline")).to_contain_text("Arrived")
    for name in ("mark-dnc", "suppress", "erase"):
        expect(page.locator(f"a.operation-{name}")).to_be_visible()
    page.screenshot(path=SHOTS / f"lead-page-{width}.png", full_page=True)
    if width == 1440:
        page.click("a.operation-erase")
        expect(page.locator("#content")).to_contain_text("cannot be undone")
        expect(page.locator("p.errornote")).to_contain_text("This erases 1 lead of this person")
        page.screenshot(path=SHOTS / "lead-erase-confirm.png", full_page=True)


@pytest.mark.django_db(transaction=True)
def test_viewer_is_offered_export_but_no_import_and_no_lead_operations(page, console):
    page.set_viewport_size({"width": 1440, "height": 900})
    log_in(page, "viewer-vic")
    page.goto(reverse("admin:leads_lead_changelist"))
    expect(page.locator("a.export-leads-link")).to_be_visible()
    expect(page.locator("a.import-leads-link")).to_have_count(0)
    page.goto(reverse("admin:ventures_campaign_changelist"))
    options = page.locator("select[name=action] option")
    if options.count():
        assert "Import leads" not in " ".join(options.all_inner_texts())
    lead = Lead.objects.order_by("pk").first()
    page.goto(reverse("admin:leads_lead_change", args=[lead.pk]))
    expect(page.locator("table.lead-timeline")).to_be_visible()
    expect(page.locator("[class^=operation-]")).to_have_count(0)
