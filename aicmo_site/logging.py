"""Logging that never prints a secret.

`RedactingFilter` rewrites each record before any handler formats it: the message, its
arguments, the exception text and the stack. `configure` (the project's LOGGING_CONFIG) applies
the settings' dictConfig, attaches the filter to every handler that lacks one (Django's
defaults included), and installs a record factory that applies the same redaction when a record
is created, so a handler that a library adds later is covered too.
"""

from __future__ import annotations

import logging
import logging.config
import re
import traceback

REDACTED = "[REDACTED]"

# Credentials inside URLs and DSNs: scheme://user:password@host -> scheme://user:[REDACTED]@host
_URL_CREDENTIALS = re.compile(r"(?P<prefix>\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^/\s:@]*:)[^@\s/]+(?=@)")
# Authorization headers, whatever the scheme (Bearer, Basic, Token, ...).
_AUTH_HEADER = re.compile(
    r"(?P<prefix>\b(?:proxy-)?authorization\b['\"]?\s*[:=]\s*['\"]?)"
    r"(?:(?:bearer|basic|token|digest)\s+)?[^\s'\",;}]+",
    re.IGNORECASE,
)
# key=value / key: value / "key": "value" for names that carry secrets.
_SECRET_NAMES = (
    r"[a-z0-9_\-]*(?:api[_\-]?key|apikey|secret|password|passwd|pwd|token|private[_\-]?key"
    r"|access[_\-]?key|client[_\-]?secret|webhook[_\-]?secret|credentials?)[a-z0-9_\-]*"
)
_KEY_VALUE = re.compile(
    rf"(?P<prefix>\b{_SECRET_NAMES}['\"]?\s*[:=]\s*['\"]?)(?P<value>[^\s'\",;&}}\]]+)",
    re.IGNORECASE,
)
# Well-known token shapes that may appear without a name in front of them.
_TOKEN_SHAPES = re.compile(
    r"\b(?:sk|pk|rk)_(?:live|test)_[A-Za-z0-9]{8,}\b"  # Stripe-style keys
    r"|\bSG\.[A-Za-z0-9_\-]{16,}\.[A-Za-z0-9_\-]{16,}\b"  # SendGrid
    r"|\bkey-[0-9a-f]{32}\b"  # Mailgun
    r"|\bxox[abprs]-[A-Za-z0-9\-]{10,}\b"  # Slack
    r"|\beyJ[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]{10,}\b"  # JWT
)


def _configured_secrets() -> list[str]:
    """Literal secret values from settings, longest first (so overlaps redact fully)."""
    try:
        from django.conf import settings

        if not settings.configured:
            return []
        values = [
            getattr(settings, "SECRET_KEY", ""),
            getattr(settings, "EMAIL_HOST_PASSWORD", ""),
            *[str(v) for v in getattr(settings, "ANYMAIL", {}).values()],
        ]
    except Exception:  # logging must never fail because settings are broken
        return []
    return sorted({v for v in values if isinstance(v, str) and len(v) >= 6}, key=len, reverse=True)


def redact(text: str) -> str:
    """Return `text` with every credential we can recognise replaced by [REDACTED]."""
    if not text:
        return text
    for secret in _configured_secrets():
        text = text.replace(secret, REDACTED)
    text = _URL_CREDENTIALS.sub(rf"\g<prefix>{REDACTED}", text)
    text = _AUTH_HEADER.sub(rf"\g<prefix>{REDACTED}", text)
    text = _KEY_VALUE.sub(rf"\g<prefix>{REDACTED}", text)
    return _TOKEN_SHAPES.sub(REDACTED, text)


class RedactingFilter(logging.Filter):
    """Redacts secrets in place; never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_aicmo_redacted", False):
            return True
        try:
            # Merge the arguments first: a "%s" in the template must not be taken for a value,
            # and a secret passed as an argument must not survive in record.args.
            record.msg, record.args = redact(record.getMessage()), ()
        except Exception:  # a record that cannot be formatted is still better logged than lost
            record.msg, record.args = redact(f"{record.msg!r} {record.args!r}"), ()
        if record.exc_info and not record.exc_text:
            record.exc_text = "".join(traceback.format_exception(*record.exc_info)).rstrip()
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        record._aicmo_redacted = True
        return True


def attach_to_all_handlers() -> int:
    """Attach a RedactingFilter to every handler that has none; return how many were fixed."""
    loggers = [logging.getLogger()] + [
        obj for obj in logging.root.manager.loggerDict.values() if isinstance(obj, logging.Logger)
    ]
    fixed = 0
    for logger in loggers:
        for handler in logger.handlers:
            if not any(isinstance(f, RedactingFilter) for f in handler.filters):
                handler.addFilter(RedactingFilter())
                fixed += 1
    return fixed


_FILTER = RedactingFilter()


def _install_record_factory() -> None:
    """Redact every record at creation, so a handler that a library adds after start-up (and so
    without our filter) still never sees a secret."""
    base = logging.getLogRecordFactory()
    if getattr(base, "_aicmo_redacting", False):
        return

    def factory(*args, **kwargs) -> logging.LogRecord:
        record = base(*args, **kwargs)
        _FILTER.filter(record)
        return record

    factory._aicmo_redacting = True
    logging.setLogRecordFactory(factory)


def configure(logging_settings: dict) -> None:
    """LOGGING_CONFIG entry point: dictConfig, then make sure no handler is left unfiltered."""
    if logging_settings:
        logging.config.dictConfig(logging_settings)
    attach_to_all_handlers()
    _install_record_factory()
