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


# For each text of the elements, the words the browser broke across lines: the characters'
# boxes, one Range each, in order; a new line that starts neither after a space nor after a
# hyphen or slash is a break inside a word ("QUEUE|D"). Each text node is read on its own, so
# a block (a help line below a badge) starting a new line is no break.
_WORDS_BROKEN_JS = """
elements => elements.flatMap(element => {
  const broken = [];
  const walker = document.createTreeWalker(element, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const chars = [];
    for (let i = 0; i < node.data.length; i++) {
      const range = document.createRange();
      range.setStart(node, i);
      range.setEnd(node, i + 1);
      const box = range.getBoundingClientRect();
      if (box.width > 0 || box.height > 0) chars.push({c: node.data[i], top: box.top, h: box.height});
    }
    const text = chars.map(x => x.c).join("");
    for (let i = 1; i < chars.length; i++) {
      const before = chars[i - 1], here = chars[i];
      const newLine = here.top > before.top + before.h / 2;
      if (newLine && !/[\\s\\-\\/]/.test(before.c) && !/\\s/.test(here.c)) {
        broken.push(text.slice(0, i) + "|" + text.slice(i));
      }
    }
  }
  return broken;
})
"""


def words_broken(locator) -> list[str]:
    """The texts of `locator`'s elements that the browser broke inside a word, each with a
    `|` where the line broke; [] when every line ends at a space or a hyphen."""
    return locator.evaluate_all(_WORDS_BROKEN_JS)


def save_screenshot(page, name: str, width: int = 1280) -> None:
    """The whole page at `width` px as var/test-artifacts/NAME.png (CI keeps var/), for a
    person to look at."""
    from tests.proc import REPO

    folder = REPO / "var" / "test-artifacts"
    folder.mkdir(parents=True, exist_ok=True)
    page.set_viewport_size({"width": width, "height": 900})
    page.screenshot(path=folder / f"{name}.png", full_page=True)
