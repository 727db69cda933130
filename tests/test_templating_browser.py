"""The template console in a real headless Chromium: a syntax error shown with its line, the
live preview with a blocked lead highlighted, and a test email to the operator; a save that
blocks a running campaign's leads warns, and the campaign check groups them by reason."""

from __future__ import annotations

import pytest
from django.core import mail
from django.urls import reverse
from playwright.sync_api import expect

from leads.models import Lead
from templating.models import MessageTemplate
from tests.browser import BROWSER_MARKS, log_in
from tests.factories import (
    CampaignFactory,
    LeadFactory,
    MembershipFactory,
    MessageTemplateFactory,
    UserFactory,
)
from tests.proc import REPO
from ventures.models import CampaignStatus
from ventures.roles import OPERATOR

pytestmark = BROWSER_MARKS
SHOTS = REPO / "var" / "screenshots"


@pytest.mark.django_db(transaction=True)
def test_operator_fixes_a_template_previews_a_blocked_lead_and_sends_a_test(page):
    operator = UserFactory(username="op-olga", role=OPERATOR, email="olga@agency.example")
    template = MessageTemplateFactory(name="Opener")
    MembershipFactory(venture=template.venture, user=operator)
    campaign = template.campaign
    blocked = LeadFactory(campaign=campaign, first_name="[First Name]", email="x@prospect.example")
    LeadFactory(campaign=campaign, first_name="Lena", email="lena@prospect.example")

    log_in(page, "op-olga")

    page.goto(reverse("admin:templating_messagetemplate_change", args=[template.pk]))
    page.fill("#id_subject", "Hi {{ first_name }")
    page.click("input[name=_continue]")
    expect(page.locator(".field-subject .errorlist")).to_contain_text("Line 1: unexpected '}'")
    page.fill("#id_subject", "Hi {{ first_name }}")
    page.click("input[name=_continue]")
    expect(page.locator("ul.messagelist")).to_contain_text("was changed successfully")

    page.click("a.template-preview-link")
    page.select_option("#id_recipient", f"lead:{blocked.pk}")
    page.click("input[value=Preview]")
    expect(page.locator(".preview-status")).to_contain_text("Blocked")
    expect(page.locator("pre.preview-subject mark.aicmo-reason")).to_have_text("[First Name]")
    expect(page.locator("li[data-code=bracket_token]").first).to_be_visible()

    page.select_option("#id_recipient", "sample")
    page.click("input[value=Preview]")
    expect(page.locator(".preview-status")).to_contain_text("Ready to send")
    page.click(".send-test-form input[type=submit]")
    expect(page.locator(".operation-count")).to_contain_text("rendered for Sample lead")
    expect(page.locator("#content-main")).to_contain_text("To: olga@agency.example.")
    page.screenshot(path=SHOTS / "template-send-test-confirm.png", full_page=True)
    page.click("input[name=confirm]")
    expect(page.locator("ul.messagelist")).to_contain_text(
        "Test email to olga@agency.example (only you, labelled TEST): kept in the server's memory"
    )

    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SHOTS / "template-send-test.png", full_page=True)

    assert [m.to for m in mail.outbox] == [["olga@agency.example"]]
    assert mail.outbox[0].subject == "[TEST] Hi Alex"
    assert MessageTemplate.objects.get().versions.count() == 2


@pytest.mark.django_db(transaction=True)
def test_operator_saves_a_template_that_blocks_a_running_campaign_and_reads_the_check(
    page, http_live_server
):
    operator = UserFactory(username="op-omar", role=OPERATOR, email="omar@agency.example")
    campaign = CampaignFactory(name="Spring outreach", status=CampaignStatus.RUNNING)
    MembershipFactory(venture=campaign.venture, user=operator)
    template = MessageTemplateFactory(campaign=campaign, name="Opener")
    Lead.objects.bulk_create(LeadFactory.build_batch(39, campaign=campaign))

    log_in(page, "op-omar")
    page.goto(reverse("admin:templating_messagetemplate_change", args=[template.pk]))
    page.fill("#id_subject", "{{ company_size }} people at {{ company }}?")
    page.fill("#id_body_text", "A team of {{ company_size }}?\n{{ unsubscribe_url }}")
    page.click("input[name=_continue]")
    messages = page.locator("ul.messagelist")
    expect(messages).to_contain_text("was changed successfully")
    expect(messages.locator("li.warning")).to_contain_text(
        "This template now blocks 39 leads of running campaign “Spring outreach”: missing "
        "variable `company_size` (39 leads, subject and body text)."
    )
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SHOTS / "template-save-warning.png", full_page=True)

    page.click("a.template-blocks-check-link")
    expect(page.locator("#id_campaign")).to_have_value(str(campaign.pk))
    page.click("input[value='Run the check']")
    groups = page.locator("tr.check-group")
    expect(groups).to_have_count(1)
    expect(groups.locator("td.check-count")).to_have_text("39")
    expect(groups.locator("td.check-parts")).to_have_text("subject, body text")
    expect(groups.locator("td.check-examples a")).to_have_count(3)
    expect(groups.locator("li.check-more")).to_have_text("and 36 more")
    expect(groups.locator("td.check-reason strong")).to_have_text("missing variable `company_size`")
    page.screenshot(path=SHOTS / "campaign-check-grouped.png", full_page=True)

    page.goto(reverse("admin:templating_messagetemplate_preview", args=[template.pk]))
    expect(page.locator(".site-url-warning")).to_contain_text(
        f"Unsubscribe links point to http://localhost:8000, but you are using "
        f"{http_live_server.url}: recipients will reach the former."
    )
    expect(page.locator(".email-backend-notice")).to_contain_text(
        "kept in the server's memory (locmem backend), not delivered"
    )
    page.screenshot(path=SHOTS / "template-preview-backend-and-site-url.png", full_page=True)
