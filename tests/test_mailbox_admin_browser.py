"""A mailbox's page in a real headless Chromium: what its read-only "Is active" tells the
operator, and a raise confirmed on its own page keeping the connection URL the operator typed
without the page ever showing it. Screenshots go to var/test-artifacts/mailbox-*."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse
from playwright.sync_api import expect

from outreach.models import Mailbox
from outreach.tests.outbox import running_campaign
from tests.browser import BROWSER_MARKS, log_in, save_screenshot
from tests.factories import MembershipFactory, UserFactory
from ventures.models import AuditEvent
from ventures.roles import OPERATOR

pytestmark = BROWSER_MARKS
OLD_URL = "smtp://sam:old-password-1@smtp.acme.example:587/?tls=True"
NEW_URL = "smtp://sam:brand-new-secret-7@relay.acme.example:587/?tls=True"
NEW_IMAP = "imaps://sam:imap-secret-3@imap.acme.example:993/INBOX"


@pytest.fixture
def sam(db):
    """Sam's mailbox, the only one of a running campaign's pool, with its own SMTP URL."""
    campaign = running_campaign(name="Spring outreach")
    box = Mailbox.objects.create(venture=campaign.venture, name="Sam", from_name="Sam",
                                 from_email="sam@acme.example", daily_limit=40,
                                 connection_url=OLD_URL)  # fmt: skip
    box.campaigns.add(campaign)
    user = UserFactory(username="op-olga", role=OPERATOR)
    MembershipFactory(venture=campaign.venture, user=user)
    return box


@pytest.mark.django_db(transaction=True)
def test_the_read_only_is_active_says_to_use_the_pause_and_resume_operations(page, sam):
    log_in(page, "op-olga")
    page.goto(reverse("admin:outreach_mailbox_change", args=[sam.pk]))
    row = page.locator(".form-row.field-is_active")
    expect(row.locator("#id_is_active")).to_have_count(0)  # read-only: no switch in the form
    expect(row.locator(".help")).to_contain_text(
        "only the “Pause sending” and “Resume sending” buttons at the top of its page switch "
        "it: each asks for confirmation and is recorded in the audit trail"
    )
    expect(page.locator(".object-tools")).to_contain_text("Pause sending")
    save_screenshot(page, "mailbox-is-active-help")


@pytest.mark.django_db(transaction=True)
def test_a_confirmed_raise_saves_the_typed_connection_urls_without_showing_them(page, sam):
    log_in(page, "op-olga")
    page.goto(reverse("admin:outreach_mailbox_change", args=[sam.pk]))
    page.fill("#id_daily_limit", "400")
    page.fill("#id_connection_url", NEW_URL)
    page.fill("#id_imap_url", NEW_IMAP)
    page.click("input[name=_save]")

    expect(page.locator("table.limit-changes")).to_contain_text("Daily limit")
    expect(page.locator(".limits-secrets")).to_have_text(
        "Kept for this save as you typed it, and not shown on this page: Connection URL, IMAP URL."
    )
    confirm_html = page.content()
    for secret in ("brand-new-secret-7", "imap-secret-3", "old-password-1"):
        assert secret not in confirm_html
    save_screenshot(page, "mailbox-raise-confirm")
    page.fill("#id_raise_reason", "New relay for the spring volume")
    page.click("input[name=confirm]")

    expect(page).to_have_url(re.compile(r"/admin/outreach/mailbox/$"))
    sam.refresh_from_db()
    assert (sam.daily_limit, sam.connection_url, sam.imap_url) == (400, NEW_URL, NEW_IMAP)
    event = AuditEvent.objects.for_entity(sam).get(action="mailbox.update")
    assert event.reason == "New relay for the spring volume"
    page.goto(reverse("admin:outreach_mailbox_change", args=[sam.pk]))
    expect(page.locator(".field-connection")).to_contain_text("its own (set, not shown)")
    assert "brand-new-secret-7" not in page.content()
