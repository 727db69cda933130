"""Reading what the test client got back, as an operator's browser would show it."""

from __future__ import annotations

import html


def text(response) -> str:
    """The response body with HTML entities decoded, for assertions on what the page says."""
    return html.unescape(response.content.decode())
