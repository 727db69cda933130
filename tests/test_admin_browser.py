"""The operator console driven in a real headless Chromium (Debian's; nothing downloads one)."""

from __future__ import annotations

import shutil

import pytest
from django.contrib.staticfiles.handlers import StaticFilesHandler
from django.core.handlers.wsgi import WSGIHandler
from django.db import connections
from django.urls import reverse
from playwright.sync_api import expect, sync_playwright

from tests.factories import CampaignFactory, UserFactory
from ventures.models import AuditEvent
from ventures.roles import ADMINISTRATOR
from ventures.services import campaign_transition

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PASSWORD = "pw-for-tests-1"  # the factories' password

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        shutil.which(CHROMIUM) is None, reason="needs Debian's chromium: make system-deps"
    ),
]


@pytest.fixture
def http_live_server(live_server, settings):
    """pytest-django's live server, answering plain HTTP like a developer's runserver.

    The production settings redirect HTTP to HTTPS and mark cookies Secure. Cookie flags are
    read per response, so overriding them is enough; SecurityMiddleware reads the redirect
    setting once, when the (session-wide) server builds its handler, so the server gets a
    handler built under the overridden settings for this test and its own one back after.
    """
    settings.SECURE_SSL_REDIRECT = False
    settings.SESSION_COOKIE_SECURE = False
    settings.CSRF_COOKIE_SECURE = False
    httpd = live_server.thread.httpd
    original = httpd.get_app()
    httpd.set_app(StaticFilesHandler(WSGIHandler()))
    yield live_server
    httpd.set_app(original)


@pytest.fixture
def page(http_live_server, monkeypatch):
    # Playwright's sync API runs an asyncio event loop in this thread, so Django takes every
    # ORM call the test makes meanwhile (factories, refresh_from_db) for one made from async
    # code and refuses it. They are plain synchronous calls that never overlap the loop's
    # work, so the check is off, and only while the browser runs (not for the whole session,
    # as a module-level os.environ assignment would do at collection time).
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(base_url=http_live_server.url)
            context.set_default_timeout(15_000)
            yield context.new_page()
        finally:
            browser.close()
            # Queries the test made while Playwright ran got a connection of their own, which
            # nothing else closes; left open it would block dropping the PostgreSQL test DB.
            connections.close_all()


@pytest.mark.django_db(transaction=True)
def test_administrator_kills_a_running_campaign_from_its_page(page):
    UserFactory(username="admin-ann", role=ADMINISTRATOR)
    campaign = CampaignFactory(name="Spring outreach")
    campaign_transition(campaign=campaign, action="start", actor="setup")

    page.goto(reverse("admin:login"))
    page.fill("#id_username", "admin-ann")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    expect(page.locator("#user-tools")).to_contain_text("admin-ann")

    page.goto(reverse("admin:ventures_campaign_change", args=[campaign.pk]))
    page.click("a.operation-kill")
    expect(page.locator("h1")).to_contain_text("Kill: are you sure?")
    page.fill("#id_reason", "Prospect complained about frequency")
    page.click("input[name=confirm]")

    expect(page.locator("ul.messagelist")).to_contain_text("Killed 1 campaign.")
    trail = page.locator("table.audit-trail")
    expect(trail.locator("tbody tr").first).to_contain_text("campaign.kill")
    expect(trail).to_contain_text("Prospect complained about frequency")
    expect(page.locator("a.operation-kill")).to_have_count(0)
    expect(page.locator("a.operation-unkill")).to_have_count(1)  # unkill confirms first too

    campaign.refresh_from_db()
    assert campaign.kill_switch is True
    assert campaign.kill_reason == "Prospect complained about frequency"
    event = AuditEvent.objects.for_entity(campaign).get(action="campaign.kill")
    assert event.actor == "admin-ann"
