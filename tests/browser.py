"""What every browser test shares: Debian's Chromium, its flags, and the factories' password.

The fixtures that start the live server and the browser are in `tests/conftest.py`.
"""

from __future__ import annotations

import shutil

import pytest

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

BROWSER_MARKS = [
    pytest.mark.browser,
    pytest.mark.skipif(
        shutil.which(CHROMIUM) is None, reason="needs Debian's chromium: make system-deps"
    ),
]


def log_in(page, username: str) -> None:
    """Log `username` in through the admin's login form, as a person would."""
    from django.urls import reverse
    from playwright.sync_api import expect

    page.goto(reverse("admin:login"))
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    expect(page.locator("#user-tools")).to_contain_text(username)
