"""Identifiers typed by people: query strings, command arguments, form values.

`str.isdigit()` accepts "²" and "٣", which `int()` refuses or reads as a number nobody
typed, and a number past 64 bits overflows SQLite and PostgreSQL alike. Every place that
turns text into a row id goes through `parse_id`.
"""

from __future__ import annotations

import re

MAX_ID = 2**63 - 1  # the largest value a BigAutoField holds, on SQLite and PostgreSQL
_ASCII_DIGITS = re.compile(r"[0-9]{1,19}")


def parse_id(text: object) -> int | None:
    """The row id `text` spells in plain ASCII digits, or None if it spells none."""
    if not isinstance(text, str) or not _ASCII_DIGITS.fullmatch(text):
        return None
    value = int(text)
    return value if value <= MAX_ID else None
