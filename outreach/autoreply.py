"""Out-of-office replies: when the person is back.

An out-of-office usually names its return date after a cue ("I'm away until 12 January",
"back on Monday", "zurück am 15.12.", "de retour le 5 janvier"). `return_date_of` finds
each cue in the new part of the reply and hands the words after it to dateparser (a
well-kept parser of dates written by people, in many languages, relative to a base date),
taking the longest phrase that reads as a date, so that "until Monday 14 December" is the
14th, not the next Monday, and "until 3 March 2028" is not cut to "3 March". A date counts only if it lies after the reply and within `HORIZON` of it:
"back in 2019" or a signature's phone number is not a return date.

The sequence's next step then waits until the day after the return date (people need a day
to dig out of their inbox), at midnight in the lead's timezone; the send window picks the
hour. A sequence that stops on auto-replies stops instead (`outreach.feedback`).
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo

HORIZON = dt.timedelta(days=120)
LANGUAGES = ["en", "de", "fr", "es", "it", "nl", "pt", "sv", "da", "pl"]
# Words after which people write the day they are back, longest first within a language.
CUES = [
    # English
    r"back (?:in the office |at work |at my desk )?(?:on|from)", r"returning (?:on|to the office on)",
    r"return(?:s)? (?:on|to the office on)", r"until", r"till", r"through", r"back",
    # German
    r"zurück (?:am|ab)", r"wieder (?:am|ab|im büro am)", r"bis (?:zum|einschließlich)", r"bis", r"ab dem",
    # French
    r"de retour (?:le|à partir du)", r"jusqu[’']au", r"à partir du",
    # Spanish, Italian, Dutch, Portuguese
    r"de vuelta el", r"hasta el", r"hasta", r"fino al", r"rientro il", r"tot en met", r"terug op",
    r"tot", r"até",
]  # fmt: skip
_CUE = re.compile(r"\b(?:" + "|".join(CUES) + r")\b[\s:,]*", re.IGNORECASE)
_WORDS = re.compile(r"[^\s,;()]+")
MAX_WORDS = 5


def return_date_of(text: str, *, after: dt.datetime) -> dt.date | None:
    """The return date an out-of-office names, or None when it names none we trust."""
    if not text:
        return None
    import dateparser

    base = after.replace(tzinfo=None)
    settings = {"PREFER_DATES_FROM": "future", "RELATIVE_BASE": base, "STRICT_PARSING": False}
    for cue in _CUE.finditer(text[:4000]):
        words = _WORDS.findall(text[cue.end() : cue.end() + 80])[:MAX_WORDS]
        for count in range(len(words), 0, -1):
            phrase = " ".join(words[:count]).rstrip(".!")
            if not any(ch.isalnum() for ch in phrase):
                continue
            found = dateparser.parse(phrase, languages=LANGUAGES, settings=settings)
            if found is None:
                continue
            # The longest phrase that reads as a date is what the cue meant: a date outside
            # the horizon is not trusted, and neither is a shorter reading of the same words.
            if base.date() <= found.date() <= (base + HORIZON).date():
                return found.date()
            break
    return None


def resume_at(back: dt.date, *, timezone_name: str) -> dt.datetime:
    """Midnight after the return date, in the lead's (or campaign's) timezone."""
    try:
        tz = zoneinfo.ZoneInfo(timezone_name or "UTC")
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        tz = dt.UTC
    return dt.datetime.combine(back + dt.timedelta(days=1), dt.time(0), tzinfo=tz)
