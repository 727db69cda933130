"""Fixtures of the cross-app tests: the live server and a real headless Chromium."""

from __future__ import annotations

import pytest
from django.contrib.staticfiles.handlers import StaticFilesHandler
from django.core.handlers.wsgi import WSGIHandler
from django.db import connections
from playwright.sync_api import sync_playwright

from tests.browser import CHROMIUM, CHROMIUM_ARGS


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
