"""The template console in a real headless Chromium: a syntax error shown with its line, the
live preview with a blocked lead highlighted, and a test email to the operator."""

from __future__ import annotations

import pytest
from django.core import mail
from django.urls import reverse
from playwright.sync_api import expect

from templating.models import MessageTemplate
from tests.browser import BROWSER_MARKS, log_in
from tests.factories import LeadFactory, MembershipFactory, MessageTemplateFactory, UserFactory
from ventures.roles import OPERATOR

pytestmark = BROWSER_MARKS


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
    expect(page.locator("ul.messagelist")).to_contain_text(
        "Test email to olga@agency.example (only you, labelled TEST): kept in the server's memory"
    )

    assert [m.to for m in mail.outbox] == [["olga@agency.example"]]
    assert mail.outbox[0].subject == "[TEST] Hi Alex"
    assert MessageTemplate.objects.get().versions.count() == 2
