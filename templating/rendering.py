"""Render a message (subject, text, optional HTML) from a plain context, then run the guardrails.

This module knows nothing about leads or models: callers pass source strings, a context dict,
a choice seed and the compliance data. Every failure is a Reason in the result, never an
exception, so a worker or a view can always show or record why.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from jinja2 import TemplateSyntaxError, UndefinedError, meta
from jinja2.exceptions import SecurityError

from templating.guardrails import Compliance, Reason, check_message
from templating.html_text import html_to_text
from templating.sandbox import (
    GLOBAL_HELPERS,
    ContextSchema,
    RenderLimitError,
    TemplateRuleError,
    environment,
    parse_and_check,
    plain_data,
    render_template,
)
from ventures.text import text_problem


@dataclass(frozen=True)
class ChannelRules:
    subject: bool
    html: bool
    compliance: bool


# What each channel's messages have. A new channel is a new entry (and a choice on the model).
CHANNEL_RULES: dict[str, ChannelRules] = {
    "email": ChannelRules(subject=True, html=True, compliance=True),
}


@dataclass
class RenderResult:
    ok: bool
    subject: str = ""
    text: str = ""
    html: str = ""
    reasons: list[Reason] = field(default_factory=list)

    @property
    def blocking_reasons(self) -> list[Reason]:
        return [r for r in self.reasons if r.blocking]

    def reason_codes(self) -> list[str]:
        return [r.code for r in self.blocking_reasons]

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "subject": self.subject,
            "text": self.text,
            "html": self.html,
            "reasons": [r.as_dict() for r in self.reasons],
        }


def source_error(source: str, *, html: bool, schema: ContextSchema | None) -> str | None:
    """A one-line message naming the line of the first problem in `source`, or None."""
    if (problem := text_problem(source)) is not None:
        return f"The template {problem}, which cannot be stored."
    try:
        parse_and_check(source, autoescape=html, schema=schema)
    except TemplateSyntaxError as exc:
        return f"Line {exc.lineno}: {exc.message}"
    except TemplateRuleError as exc:
        return f"Line {exc.lineno}: {exc.message}" if exc.lineno else exc.message
    except RecursionError:
        return "The template is nested too deeply to read."
    except Exception as exc:  # e.g. a 5,000-digit number literal: a message, never a 500
        return f"The template cannot be read: {exc}"
    return None


def required_variables(sources: Iterable[str]) -> list[str]:
    """Top-level variables the sources read without defining them (helpers excluded)."""
    names: set[str] = set()
    env = environment(autoescape=False)
    for source in sources:
        if source:
            names |= meta.find_undeclared_variables(env.parse(source))
    return sorted(names - set(GLOBAL_HELPERS))


def _render_part(
    source: str, *, part: str, context: dict, seed: str, html: bool, plain: bool = False
) -> tuple[str, Reason | None]:
    try:
        text = render_template(source, context=context, seed=seed, autoescape=html, plain=plain)
    except TemplateSyntaxError as exc:
        return "", Reason("syntax_error", f"Line {exc.lineno}: {exc.message}", part)
    except TemplateRuleError as exc:
        where = f"Line {exc.lineno}: " if exc.lineno else ""
        return "", Reason("rule_violation", where + exc.message, part)
    except UndefinedError as exc:
        return "", Reason(
            "undefined_variable",
            f'{exc.message}: give it a value or a fallback such as | default("...")',
            part,
        )
    except SecurityError as exc:
        return "", Reason("security_violation", str(exc), part)
    except RenderLimitError as exc:
        return "", Reason("resource_limit", f"Stopped: {exc}.", part)
    except Exception as exc:  # the boundary: a render never raises
        return "", Reason("render_error", f"{type(exc).__name__}: {exc}"[:500], part)
    # A string literal such as '\x00' or '\ud800' renders text no database row can hold.
    if (problem := text_problem(text)) is not None:
        return "", Reason(
            "render_error", f"The rendered {part} {problem}, which cannot be stored.", part
        )
    return text, None


def render_message(
    *,
    subject: str,
    body_text: str,
    body_html: str = "",
    context: dict[str, Any],
    seed: str,
    channel: str = "email",
    compliance: Compliance | None = None,
    live: bool = False,
) -> RenderResult:
    """Render every part and apply the guardrails.

    With an HTML body and no text body, the text part is made from the rendered HTML. The
    compliance checks run when `compliance` is given and the channel has them; they block only
    when `live` (they are reported as non-blocking otherwise).
    """
    rules = CHANNEL_RULES[channel]
    failures: list[Reason] = []
    out: dict[str, str] = {"subject": "", "text": "", "html": ""}
    parts = [("text", body_text, False)]
    if rules.subject:
        parts.insert(0, ("subject", subject, False))
    if rules.html and body_html:
        parts.append(("html", body_html, True))
    try:
        # The sandbox's plain copy of the context, once for every part of the message.
        context, plain = plain_data(context), True
    except Exception:  # too deep, say: each part reports it, as it renders
        plain = False
    for part, source, html in parts:
        if part == "text" and not source.strip() and body_html:
            continue
        out[part], failure = _render_part(
            source, part=part, context=context, seed=seed, html=html, plain=plain
        )
        if failure is not None:
            failures.append(failure)
    if failures:
        return RenderResult(ok=False, reasons=failures, **out)
    html_text = html_to_text(out["html"]) if out["html"] else ""
    if body_html and not body_text.strip():
        out["text"] = html_text
    reasons = check_message(
        subject=out["subject"],
        text=out["text"],
        html=out["html"],
        html_text=html_text,
        needs_subject=rules.subject,
        compliance=compliance if rules.compliance else None,
        live=live,
    )
    return RenderResult(ok=not any(r.blocking for r in reasons), reasons=reasons, **out)
