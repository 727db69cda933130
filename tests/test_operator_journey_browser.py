"""An operator's whole day in a real headless Chromium, as issue 14 lists it: import a CSV
through the admin and remap a column, preview a template, start the campaign, let the tick
run, watch the figures change, handle a reply, pause, see an Administrator pull the global
kill switch, and download the report; then a Viewer who can change nothing, and an Operator
of another venture who finds nothing of this one. Screenshots go to var/screenshots/journey-*.
"""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse
from playwright.sync_api import expect

from leads.models import Lead
from outreach.dispatch import tick
from outreach.feedback import reply_record
from outreach.models import MessageState, OutboundMessage
from outreach.tests.outbox import two_step_sequence
from tests.browser import BROWSER_MARKS, log_in
from tests.factories import CampaignFactory, MembershipFactory, UserFactory, VentureFactory
from tests.proc import REPO
from ventures.models import Campaign, CampaignStatus
from ventures.roles import ADMINISTRATOR, OPERATOR, VIEWER

pytestmark = BROWSER_MARKS
SHOTS = REPO / "var" / "screenshots"
CSV = (
    "Work Email,Given,Last Name,Firm,Notes\n"
    "ann@acme.example,Ann,Smith,Acme,Met at SaaStr\n"
    "bob@beta.example,Bob,Jones,Beta,\n"
    "carl@gamma.example,Carl,Berg,Gamma,\n"
    "broken,Dora,Lee,Delta,\n"
)


def shoot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SHOTS / f"journey-{name}.png", full_page=True)


@pytest.fixture
def day(db, settings, tmp_path):
    settings.AICMO_ARTIFACT_DIR = tmp_path / "artifacts"
    settings.AICMO_GLOBAL_DAILY_LIMIT = settings.AICMO_RECIPIENT_DOMAIN_DAILY_LIMIT = 10_000
    venture = VentureFactory(name="Northwind", slug="northwind", daily_send_limit=500)
    campaign = CampaignFactory(
        venture=venture, name="Spring outreach", daily_send_limit=500, send_days="1234567",
        send_window_start=dt.time(0), send_window_end=dt.time(23, 59, 59),
    )  # fmt: skip
    two_step_sequence(campaign)
    for name, role in (("op-olga", OPERATOR), ("viewer-vic", VIEWER)):
        MembershipFactory(venture=venture, user=UserFactory(username=name, role=role))
    UserFactory(username="admin-ann", role=ADMINISTRATOR)
    other = CampaignFactory(venture=VentureFactory(name="Other Co", slug="other-co"), name="Theirs")
    MembershipFactory(venture=other.venture, user=UserFactory(username="op-otis", role=OPERATOR))
    return campaign


@pytest.mark.django_db(transaction=True)
def test_an_operators_day_from_import_to_report(page, day, tmp_path):
    campaign = day
    page.set_viewport_size({"width": 1280, "height": 900})
    log_in(page, "op-olga")

    # Import a CSV through the admin, remapping two columns and skipping one; watch it finish.
    csv_file = tmp_path / "spring.csv"
    csv_file.write_text(CSV)
    page.goto(reverse("admin:leads_lead_import") + f"?campaign={campaign.pk}")
    page.set_input_files("#id_file", str(csv_file))
    page.click("input[type=submit]")
    page.select_option("select[data-column=Given]", "first_name")
    page.select_option("select[data-column=Firm]", "company")
    page.select_option("select[data-column=Notes]", "")
    page.click("input[name=remap]")
    expect(page.locator("tr.total-created td")).to_have_text("3")
    expect(page.locator("tr.total-invalid td")).to_have_text("1")
    shoot(page, "import-preview")
    page.click("input[name=confirm]")
    expect(page.locator("ul.import-outcome")).to_contain_text("3 New")
    shoot(page, "import-result")
    assert Lead.objects.get(email_key="ann@acme.example").first_name == "Ann"

    # Preview the opener against a lead of the campaign.
    opener = campaign.templates.get(name="Opener")
    page.goto(reverse("admin:templating_messagetemplate_change", args=[opener.pk]))
    page.click("a.template-preview-link")
    page.click("input[value=Preview]")
    expect(page.locator(".preview-status")).to_contain_text("Ready to send")
    shoot(page, "template-preview")

    # The dashboard before the start: a draft, nothing sent.
    page.goto(reverse("admin:index"))
    row = page.locator("tr.dash-row", has_text="Spring outreach")
    expect(row.locator("td.dash-state")).to_contain_text("Draft")
    expect(row.locator("td.dash-sends")).to_contain_text("0 of 500 today")
    shoot(page, "dashboard-before")

    # Start it; the tick (the cluster's job) sends the first emails; the figures move.
    page.goto(reverse("admin:ventures_campaign_change", args=[campaign.pk]))
    page.click("a.operation-start")
    expect(page.locator(".operation-warning")).to_contain_text("starts sending")
    page.click("input[name=confirm]")
    expect(page.locator("ul.messagelist")).to_contain_text("Started 1 campaign")
    assert Campaign.objects.get(pk=campaign.pk).status == CampaignStatus.RUNNING
    tick(worker="journey", campaign=campaign)
    sent = list(OutboundMessage.objects.filter(campaign=campaign, state=MessageState.SENT))
    assert len(sent) == 3
    page.reload()
    outbox = page.locator("fieldset.change-panel", has_text="Outbox")
    expect(outbox).to_contain_text("Sent today: 3")
    shoot(page, "campaign-running")
    page.goto(reverse("admin:index"))
    row = page.locator("tr.dash-row", has_text="Spring outreach")
    expect(row.locator("td.dash-state")).to_contain_text("Running")
    expect(row.locator("td.dash-sends")).to_contain_text("3 of 500 today")
    shoot(page, "dashboard-after")

    # A lead answers: the operator finds the reply and marks it handled.
    ann = next(m for m in sent if m.recipient == "ann@acme.example")
    reply_record(message=ann, sentiment="positive", actor="esp", notes="Let's talk on Tuesday.")
    page.goto(reverse("admin:outreach_feedbackevent_changelist") + "?handling=waiting")
    rows = page.locator("#result_list tbody tr")
    expect(rows).to_have_count(1)
    rows.locator("th a, td a").first.click()
    page.click("a.operation-reply-handled")
    page.click("input[name=confirm]")
    expect(page.locator("ul.messagelist")).to_contain_text("Marked 1")

    # Pause; then an Administrator stops everything with the global kill switch.
    page.goto(reverse("admin:ventures_campaign_change", args=[campaign.pk]))
    page.click("a.operation-pause")
    page.click("input[name=confirm]")
    expect(page.locator("ul.messagelist")).to_contain_text("Paused 1 campaign")
    page.context.clear_cookies()
    log_in(page, "admin-ann")
    page.goto(reverse("admin:index"))
    page.click(".kill-control a.kill-switch-kill")
    page.fill("#id_reason", "ESP incident")
    page.click("input[name=confirm]")
    expect(page.locator(".kill-banner")).to_contain_text("nothing is sent")
    shoot(page, "kill-switch")

    # The report: its figures say what happened, and the PDF downloads.
    page.context.clear_cookies()
    log_in(page, "op-olga")
    expect(page.locator(".kill-banner")).to_be_visible()
    page.goto(reverse("admin:reporting_campaign_report", args=[campaign.pk]))
    funnel = page.locator(".aicmo-report table", has_text="Rate per lead sent to")
    expect(funnel.locator("tr", has_text="Sent at least one email")).to_contain_text("3")
    expect(funnel.locator("tr", has_text="Replied positively")).to_contain_text("1")
    with page.expect_download() as pdf:
        page.get_by_role("link", name="PDF", exact=True).click()
    assert pdf.value.path().read_bytes().startswith(b"%PDF-")
    shoot(page, "report")

    # A Viewer reads everything and can change nothing.
    page.context.clear_cookies()
    log_in(page, "viewer-vic")
    page.goto(reverse("admin:ventures_campaign_change", args=[campaign.pk]))
    expect(page.locator("a.operation-resume")).to_have_count(0)
    expect(page.locator("input[name=_save]")).to_have_count(0)
    page.goto(reverse("admin:leads_lead_changelist"))
    expect(page.locator("#result_list")).to_contain_text("ann@acme.example")
    expect(page.locator("select[name=action] option", has_text="do-not-contact")).to_have_count(0)
    shoot(page, "viewer")

    # An Operator of another venture finds nothing of this one.
    page.context.clear_cookies()
    log_in(page, "op-otis")
    page.goto(reverse("admin:ventures_campaign_changelist"))
    expect(page.locator("#result_list")).to_contain_text("Theirs")
    expect(page.locator("#content")).not_to_contain_text("Spring outreach")
    page.goto(reverse("admin:leads_lead_changelist"))
    expect(page.locator("#content")).not_to_contain_text("ann@acme.example")
    for url in (
        reverse("admin:ventures_campaign_change", args=[campaign.pk]),
        reverse("admin:reporting_campaign_report", args=[campaign.pk]),
    ):
        assert page.goto(url).status == 404
