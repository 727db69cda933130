"""Checks on a rendered message that block a send, each with a named reason.

They run on the output, after rendering, so they catch what the template left behind and what
lead data brought in (a company called "[Company]" or "{{ x }}" blocks just like a template
typo). Content checks apply to every channel; the compliance checks (unsubscribe link and the
venture's postal address) block only live email, and are reported as "live only" otherwise so
the operator sees them before going live.

SUBJECT_MAX_CHARS is 100: long enough for any subject a person writes, short enough that a
subject built from a runaway field (a pasted paragraph, a whole address) is caught. Gmail shows
about 70 characters on desktop; RFC 5322 folds header lines past 78.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass

SUBJECT_MAX_CHARS = 100

REASON_DESCRIPTIONS = {
    "syntax_error": "The template has a syntax error.",
    "rule_violation": "The template uses something message templates may not use.",
    "undefined_variable": "A variable the template needs has no value and no fallback.",
    "security_violation": "The template tried to reach something outside its data.",
    "resource_limit": "The render went past a size, loop or time bound.",
    "render_error": "The render failed.",
    "leftover_syntax": "Template syntax ({{, {%, {#) is left in the message.",
    "todo": "A TODO/FIXME marker is left in the message.",
    "tbd": "A TBD marker is left in the message.",
    "placeholder": "A [PLACEHOLDER]/[INSERT ...] marker is left in the message.",
    "angle_token": "An angle-bracket token such as <VALUE> is left in the message.",
    "bracket_token": "A bracketed token such as [First Name] is left in the message.",
    "brace_token": "A braced token such as {first_name} is left in the message.",
    "lorem_ipsum": "Filler text (lorem ipsum) is left in the message.",
    "empty_subject": "The subject is empty.",
    "empty_body": "The body is empty.",
    "subject_too_long": f"The subject is longer than {SUBJECT_MAX_CHARS} characters.",
    "subject_multiline": "The subject contains a line break.",
    "missing_unsubscribe": "Live email must contain the recipient's unsubscribe link.",
    "missing_postal_address": "Live email must contain the venture's postal address.",
}

# code -> pattern, for the content checks run on subject and text.
_PATTERNS: tuple[tuple[str, re.Pattern[str], str], ...] = (
    ("leftover_syntax", re.compile(r"\{\{|\{%|\{#|\}\}|%\}"), "template syntax {found!r} left"),
    ("todo", re.compile(r"\b(?:TODO|FIXME)\b"), "marker {found!r} left"),
    ("tbd", re.compile(r"\bTBD\b"), "marker {found!r} left"),
    (
        "placeholder",
        re.compile(r"\[\s*(?:PLACEHOLDER|INSERT\b)[^\]\n]{0,60}\]", re.IGNORECASE),
        "placeholder {found!r} left",
    ),
    (
        "angle_token",
        re.compile(r"<\s*[A-Z][A-Za-z0-9_]*(?:[ _-][A-Za-z0-9_]+){0,4}\s*>"),
        "token {found!r} left",
    ),
    (
        "bracket_token",
        re.compile(r"\[\s*[A-Za-z][A-Za-z0-9_.-]*(?:\s+[A-Za-z0-9_.-]+){0,4}\s*\](?!\()"),
        "bracketed token {found!r} left",
    ),
    (
        "brace_token",
        re.compile(r"(?<!\{)\{\s*[A-Za-z_][A-Za-z0-9_.]*(?:\s+[A-Za-z0-9_.]+){0,3}\s*\}(?!\})"),
        "braced token {found!r} left",
    ),
    ("lorem_ipsum", re.compile(r"lorem\s+ipsum", re.IGNORECASE), "filler text {found!r} left"),
)
# Raw HTML is only checked for template syntax: tags and CSS would trip the token checks,
# which run on the HTML's text instead.
_OPENERS = re.compile(r"\{\{|\{%|\{#")


@dataclass(frozen=True)
class Reason:
    """Why a message may not be sent. `span` is (start, end) in `part` when it points at text."""

    code: str
    message: str
    part: str = ""
    span: tuple[int, int] | None = None
    blocking: bool = True

    def as_dict(self) -> dict:
        data = asdict(self)
        data["span"] = list(self.span) if self.span else None
        return data


@dataclass(frozen=True)
class Compliance:
    """What a live email must carry for this recipient."""

    unsubscribe_url: str
    postal_address: str


def check_message(
    *,
    subject: str,
    text: str,
    html: str,
    html_text: str = "",
    needs_subject: bool = True,
    compliance: Compliance | None = None,
    live: bool = False,
) -> list[Reason]:
    """Every reason the message may not go out. `html_text` is the HTML's visible text.

    Compliance reasons are computed whenever `compliance` is given; they block only if `live`.
    """
    reasons: list[Reason] = []
    if needs_subject:
        reasons += _subject_reasons(subject)
    if not text.strip():
        reasons.append(Reason("empty_body", "The body is empty.", "text"))
    reasons += _content_reasons(text, "text")
    if html:
        reasons += [
            Reason("leftover_syntax", f"template syntax {m.group()!r} left in the HTML", "html")
            for m in _OPENERS.finditer(html)
        ]
        if html_text != text:
            reasons += [
                Reason(r.code, r.message.replace(" left", " left in the HTML"), "html")
                for r in _content_reasons(html_text, "html")
                if r.code != "leftover_syntax"
            ]
    if compliance is not None:
        parts = [("text", text)] + ([("html", html)] if html else [])
        reasons += [
            Reason(r.code, r.message, r.part, r.span, blocking=live)
            for r in _compliance_reasons(compliance, parts, html_text)
        ]
    return reasons


def _subject_reasons(subject: str) -> list[Reason]:
    reasons = []
    if not subject.strip():
        reasons.append(Reason("empty_subject", "The subject is empty.", "subject"))
    if len(subject) > SUBJECT_MAX_CHARS:
        reasons.append(
            Reason(
                "subject_too_long",
                f"The subject has {len(subject)} characters; the limit is {SUBJECT_MAX_CHARS}.",
                "subject",
                (SUBJECT_MAX_CHARS, len(subject)),
            )
        )
    for match in re.finditer(r"[\r\n]+", subject):
        reasons.append(
            Reason(
                "subject_multiline",
                "The subject contains a line break.",
                "subject",
                match.span(),
            )
        )
    return reasons + _content_reasons(subject, "subject")


def _content_reasons(value: str, part: str) -> list[Reason]:
    reasons = []
    taken: list[tuple[int, int]] = []
    for code, pattern, message in _PATTERNS:
        for match in pattern.finditer(value):
            if any(s <= match.start() < e for s, e in taken):
                continue  # "[PLACEHOLDER]" is one placeholder, not also a bracketed token
            taken.append(match.span())
            reasons.append(Reason(code, message.format(found=match.group()), part, match.span()))
    return reasons


def _normalise(value: str) -> str:
    return re.sub(r"[\s,]+", " ", value).strip().casefold()


def _compliance_reasons(
    compliance: Compliance, parts: list[tuple[str, str]], html_text: str
) -> Iterator[Reason]:
    url = compliance.unsubscribe_url
    for part, value in parts:
        if not url:
            yield Reason("missing_unsubscribe", "No unsubscribe link exists for this recipient.")
            break
        if url not in value and url.replace("&", "&amp;") not in value:
            yield Reason(
                "missing_unsubscribe",
                f"The {part} part does not contain the unsubscribe link ({{{{ unsubscribe_url }}}}).",
                part,
            )
    address = _normalise(compliance.postal_address)
    if not address:
        yield Reason(
            "missing_postal_address",
            "The venture has no postal address: set it on the venture before sending live email.",
        )
        return
    for part, value in parts:
        visible = html_text if part == "html" else value
        if address not in _normalise(visible):
            yield Reason(
                "missing_postal_address",
                f"The {part} part does not contain the venture's postal address "
                "({{ venture.postal_address }}).",
                part,
            )
