"""The lead import and its progress bar, driven in a real headless Chromium."""

from __future__ import annotations

import pytest
from django.urls import reverse
from playwright.sync_api import expect

from leads.models import BatchState, ImportBatch, Lead, LeadStatus
from tests.browser import BROWSER_MARKS, log_in
from tests.factories import (
    CampaignFactory,
    ImportBatchFactory,
    LeadFactory,
    MembershipFactory,
    UserFactory,
)
from ventures.roles import OPERATOR

pytestmark = BROWSER_MARKS

CSV = (
    "Work Email,First Name,Company Name for Emails,Icebreaker\n"
    "ann@acme.example,Ann,Acme,Saw your talk\n"
    "broken,Bob,Beta,\n"
)


@pytest.fixture
def operator_campaign(db):
    campaign = CampaignFactory(name="Spring outreach")
    user = UserFactory(username="op-olga", role=OPERATOR)
    MembershipFactory(venture=campaign.venture, user=user)
    return campaign


@pytest.mark.django_db(transaction=True)
def test_operator_uploads_previews_and_confirms_an_import(page, operator_campaign, tmp_path):
    csv_file = tmp_path / "apollo.csv"
    csv_file.write_text(CSV)
    log_in(page, "op-olga")
    page.goto(reverse("admin:leads_lead_changelist"))
    page.click("a.import-leads-link")
    page.select_option("#id_campaign", str(operator_campaign.pk))
    page.set_input_files("#id_file", str(csv_file))
    page.fill("#id_source", "Apollo spring")
    page.click("input[type=submit]")

    expect(page.locator("table.import-mapping")).to_contain_text("Work Email")
    expect(page.locator("table.import-mapping")).to_contain_text("custom: Icebreaker")
    expect(page.locator("table.import-rows")).to_contain_text("Invalid email")
    assert not ImportBatch.objects.exists()

    page.click("input[name=confirm]")
    expect(page.locator("ul.messagelist")).to_contain_text("2 rows, 1 created")
    expect(page.locator(".import-progress-text").first).to_contain_text("100%")
    assert Lead.objects.get().custom_fields == {"Icebreaker": "Saw your talk"}


@pytest.mark.django_db(transaction=True)
def test_progress_bar_moves_while_a_background_import_runs(page, operator_campaign):
    batch = ImportBatchFactory(
        campaign=operator_campaign, state=BatchState.RUNNING, rows_total=400, rows_done=100
    )
    log_in(page, "op-olga")
    page.goto(reverse("admin:leads_importbatch_change", args=[batch.pk]))
    bar = page.locator("progress.import-progress").first
    expect(bar).to_have_attribute("value", "25")

    ImportBatch.objects.filter(pk=batch.pk).update(rows_done=300)
    expect(page.locator(".import-progress-text").first).to_contain_text("75% (300 of 400 rows)")

    ImportBatch.objects.filter(pk=batch.pk).update(
        rows_done=400, state=BatchState.DONE, created=390, invalid=10
    )
    # Once finished the page reloads itself and shows the final counts; polling stops.
    expect(page.locator(".import-progress-text").first).to_contain_text("100% (400 of 400 rows)")
    expect(page.locator("div.fieldBox.field-created")).to_contain_text("390")
    expect(page.locator("script#import-progress-script")).to_have_count(0)


@pytest.mark.django_db(transaction=True)
def test_operator_suppresses_a_lead_from_its_page(page, operator_campaign, tmp_path):
    lead = LeadFactory(
        campaign=operator_campaign, email="pat@acme.example", email_key="pat@acme.example"
    )
    log_in(page, "op-olga")
    page.goto(reverse("admin:leads_lead_change", args=[lead.pk]))
    page.click("a.operation-suppress")
    expect(page.locator("h1")).to_contain_text("Suppress: are you sure?")
    expect(page.locator("table.operation-leads")).to_contain_text("pat@acme.example")
    page.screenshot(path=tmp_path / "confirm.png", full_page=True)
    page.fill("#id_reason", "asked to be left alone")
    page.click("input[name=confirm]")
    expect(page.locator("ul.messagelist")).to_contain_text("Added 1 suppression entry")
    expect(page.locator("a.operation-suppress")).to_have_count(0)  # suppressed now
    page.screenshot(path=tmp_path / "lead.png", full_page=True)
    lead.refresh_from_db()
    assert lead.status == LeadStatus.SUPPRESSED
