"""Handing a message over: the email as it leaves, and the two ways it leaves.

`build_email` makes the message exactly as it is sent (or, in proof mode, written): our own
Message-ID, the thread headers of a follow-up, the mailbox's reply-to, and the unsubscribe
headers. `ProofBackend` writes it as an .eml file and nothing leaves the machine;
`LiveBackend` sends it through Django's email backend (the mailbox's own SMTP URL, or the
site's EMAIL_URL / ESP), one connection per batch. Each send returns an `Outcome` the tick
records; what the mail server said decides between retry, failure and "unknown".
"""

from __future__ import annotations

import contextlib
import re
import secrets
import smtplib
from dataclasses import dataclass
from email import generator
from email.header import MAXLINELEN, Header
from email.policy import Compat32
from email.utils import formatdate
from io import BytesIO
from pathlib import Path

import requests
import urllib3
from anymail.exceptions import AnymailAPIError, AnymailRecipientsRefused
from django.conf import settings
from django.core import mail
from django.core.mail import EmailMessage, EmailMultiAlternatives
from django.core.mail.backends import smtp

from outreach.headers import unsubscribe_headers
from outreach.models import OutboundMessage

SENT, RETRY, FAILED, UNKNOWN = "sent", "retry", "failed", "unknown"


@dataclass(frozen=True)
class Outcome:
    result: str  # SENT, RETRY (transient), FAILED (permanent), UNKNOWN
    detail: str = ""
    esp_message_id: str = ""
    # FAILED because the server refused the recipient (or the message to it): a hard bounce.
    bounce: bool = False


def new_message_id(message: OutboundMessage, domain: str) -> str:
    """Our Message-ID: the message's idempotency key and a random part, at the sender's
    domain. Short on purpose: `In-Reply-To: <id>` and `References: <id>` then fit on one
    header line, where a longer id is folded and some clients match threads on the raw text."""
    return f"<{message.idempotency_key}.{secrets.token_hex(6)}@{domain or 'localhost'}>"


def sender_of(message: OutboundMessage) -> tuple[str, str, str]:
    """(from name, from address, reply-to) of the message: its mailbox, else the campaign."""
    campaign = message.campaign
    if message.mailbox is not None:
        box = message.mailbox
        return box.from_name, box.from_email, box.reply_to or campaign.reply_to
    venture = campaign.venture
    address = campaign.sender_email or venture.owner_email or settings.DEFAULT_FROM_EMAIL
    return (
        campaign.sender_name or venture.owner_name,
        address,
        campaign.reply_to or address,
    )


def build_email(message: OutboundMessage, connection=None) -> EmailMultiAlternatives:
    name, address, reply_to = sender_of(message)
    from_header = f"{name} <{address}>" if name else address
    headers = {
        "Message-ID": message.message_id,
        # The link the tick rendered the body with, if it did (`Renderer.render`): one
        # link in both places, and a URL reversed once per message, not twice.
        **unsubscribe_headers(
            lead=message.lead,
            mailbox_address=address,
            url=getattr(message, "unsubscribe_link", ""),
        ),
    }
    if message.in_reply_to:
        headers["In-Reply-To"] = message.in_reply_to
        headers["References"] = message.in_reply_to
    email = EmailMultiAlternatives(
        subject=message.subject,
        body=message.body_text,
        from_email=from_header,
        to=[message.recipient],
        reply_to=[reply_to] if reply_to else None,
        headers=headers,
        connection=connection,
    )
    if message.body_html:
        email.attach_alternative(message.body_html, "text/html")
    return email


# A header value that the standard library's compat32 folding leaves as it is: printable
# ASCII words with single spaces between them (no surrogates, no line break, no encoded
# word to make).
_PLAIN_HEADER = re.compile(r"[!-~]+(?: [!-~]+)*")


class _QuickFold(Compat32):
    """compat32 (the policy of Django's messages) with a shortcut for the common header: one
    that fits on its line as it is folds to `Name: value` plus the line end, which is what
    `email.header.Header.encode` makes of it, without building a `Header` for it. Every
    other value (long, non-ASCII, already encoded) takes the standard library's path."""

    def _fold(self, name, value, sanitize):
        if isinstance(value, str) and _unfolded(value, len(name) + 2, self.max_line_length):
            return f"{name}: {value}{self.linesep}"
        return super()._fold(name, value, sanitize)


def _unfolded(value: str, start: int, limit: int | None) -> bool:
    """True when `email.header.Header.encode` gives back `value` as it is: a plain value that
    fits in what is left of its line (`start` characters taken, by its header's name)."""
    return start + len(value) <= (limit or 0) and _PLAIN_HEADER.fullmatch(value) is not None


_QUICK_FOLD = _QuickFold()


def email_bytes(message) -> bytes:
    """The bytes Django's `message.as_bytes()` makes (the same generator, the same lines,
    LF line ends), with the headers folded by `_QuickFold`."""
    out = BytesIO()
    generator.BytesGenerator(out, mangle_from_=False, policy=_QUICK_FOLD).flatten(
        message, linesep="\n"
    )
    return out.getvalue()


# Headers `plain_email_bytes` leaves to Django: ones its `message()` sets itself, or that
# change how it sets them.
_OWN_HEADERS = frozenset({
    "from", "to", "cc", "reply-to", "date", "subject", "content-type", "mime-version",
    "content-transfer-encoding",
})  # fmt: skip
RFC5322_LINE_LIMIT = 998  # Django quotes a body with a longer line (quoted-printable)


def plain_email_bytes(email: EmailMultiAlternatives) -> bytes | None:
    """The bytes `email_bytes(email.message())` makes, for the common email: text only, in
    ASCII with no line over 998 characters, ASCII headers, its Message-ID given, UTF-8 the
    charset; written straight from the email's parts instead of through a MIME tree (the
    headers in Django's order, with Django's values, folded by `_QuickFold` as the
    generator folds them). None for any other email: `email_bytes` makes those.
    `outreach/tests/test_eml_bytes.py` compares both ways byte for byte."""
    if (
        type(email) not in (EmailMessage, EmailMultiAlternatives)
        or getattr(email, "alternatives", None)
        or email.attachments
        or email.cc
        or email.content_subtype != "plain"
        # Exactly: Django keeps "UTF-8" in capitals as the standard library's Base64 body.
        or (email.encoding or settings.DEFAULT_CHARSET) != "utf-8"
    ):
        return None
    extra = email.extra_headers
    names = {str(name).lower() for name in extra}
    if "message-id" not in names or names & _OWN_HEADERS:
        return None
    body = email.body or ""
    if not body.isascii() or any(len(line) > RFC5322_LINE_LIMIT for line in body.splitlines()):
        return None
    items = [
        ("Content-Type", 'text/plain; charset="utf-8"'),
        ("MIME-Version", "1.0"),
        ("Content-Transfer-Encoding", "7bit"),
        ("Subject", email.subject),
        ("From", email.from_email),
    ]
    if email.to:
        items.append(("To", ", ".join(str(v) for v in email.to)))
    if email.reply_to:
        items.append(("Reply-To", ", ".join(str(v) for v in email.reply_to)))
    items.append(("Date", formatdate(localtime=settings.EMAIL_USE_LOCALTIME)))
    items += extra.items()
    lines = []
    for name, value in items:
        value = str(value)
        if not value.isascii() or "\n" in value or "\r" in value:
            return None  # Django encodes it, or refuses it (BadHeaderError)
        if name == "Subject" and not _unfolded(value, 0, MAXLINELEN):
            value = Header(value).encode()  # as Django sets an ASCII subject
        lines.append(_QUICK_FOLD.fold(name, value))
    lines.append("\n")
    text = "".join(lines) + "\n".join(_NEWLINE.split(body))
    return text.encode("ascii")


_NEWLINE = re.compile(r"\r\n|\r|\n")  # the generator's line ends, each written as LF


class ProofBackend:
    """Proof mode: each message becomes an .eml file in the run's folder; nothing is sent."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def __enter__(self) -> ProofBackend:
        self.folder.mkdir(parents=True, exist_ok=True)
        return self

    def __exit__(self, *exc) -> None:
        return None

    def send(self, message: OutboundMessage) -> Outcome:
        email = build_email(message)
        data = plain_email_bytes(email) or email_bytes(email.message())
        path = self.folder / f"{message.idempotency_key}.eml"
        path.write_bytes(data)
        return Outcome(SENT, f"written to {path.name}")


class LiveBackend:
    """Live mode: Django's email backend, one open connection per mailbox for the batch."""

    def __init__(self) -> None:
        self.connections: dict[str, object] = {}

    def __enter__(self) -> LiveBackend:
        return self

    def __exit__(self, *exc) -> None:
        for connection in self.connections.values():
            # Closing must not hide the batch's outcome, which is already recorded.
            with contextlib.suppress(Exception):
                connection.close()

    def _connection(self, message: OutboundMessage):
        url = message.mailbox.connection_url if message.mailbox else ""
        if url in self.connections and _closed(self.connections[url]):
            # smtplib closed it after the server's 421: sending on it would fail before a
            # byte of the next message left, and that failure would read as "unknown".
            with contextlib.suppress(Exception):
                self.connections.pop(url).close()
        if url not in self.connections:
            if url:
                import environ

                config = environ.Env.email_url_config(url)
                connection = mail.get_connection(
                    backend=config["EMAIL_BACKEND"],
                    host=config.get("EMAIL_HOST"),
                    port=config.get("EMAIL_PORT"),
                    username=config.get("EMAIL_HOST_USER"),
                    password=config.get("EMAIL_HOST_PASSWORD"),
                    use_tls=config.get("EMAIL_USE_TLS", False),
                    use_ssl=config.get("EMAIL_USE_SSL", False),
                    timeout=getattr(settings, "EMAIL_TIMEOUT", 30),
                )
            else:
                connection = mail.get_connection()
            connection.open()
            self.connections[url] = connection
        return self.connections[url]

    def send(self, message: OutboundMessage) -> Outcome:
        try:
            connection = self._connection(message)
        except (smtplib.SMTPException, OSError) as exc:
            return Outcome(RETRY, f"could not connect: {_describe(exc)}")
        email = build_email(message, connection=connection)
        try:
            sent = email.send(fail_silently=False)
        except smtplib.SMTPRecipientsRefused as exc:
            code, text = next(iter(exc.recipients.values()))
            return _by_code(code, text)
        except smtplib.SMTPSenderRefused as exc:
            # Our mailbox's address was refused: no fault of the recipient's.
            return _by_code(exc.smtp_code, exc.smtp_error, bounce=False, prefix="sender refused: ")
        except smtplib.SMTPDataError as exc:
            return _by_code(exc.smtp_code, exc.smtp_error)
        except AnymailRecipientsRefused as exc:
            # The ESP refused the recipient (invalid, or on its bounce or complaint list).
            return Outcome(
                FAILED, f"the ESP refused the recipient: {_first_line(exc)}", bounce=True
            )
        except AnymailAPIError as exc:  # before OSError: a requests error is one too
            return _by_esp_error(exc)
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            # The server may have taken the message before the line dropped: never resend.
            self.connections.pop(message.mailbox.connection_url if message.mailbox else "", None)
            return Outcome(UNKNOWN, f"connection lost while handing over: {_describe(exc)}")
        except smtplib.SMTPException as exc:
            return Outcome(RETRY, _describe(exc))
        if not sent:
            return Outcome(RETRY, "the email backend accepted nothing")
        status = getattr(email, "anymail_status", None)
        return Outcome(SENT, "", str(getattr(status, "message_id", "") or ""))


def _closed(connection) -> bool:
    """True if this is an SMTP connection whose socket is gone (smtplib closes it itself on a
    421 answer, and Django's backend does not notice)."""
    if not isinstance(connection, smtp.EmailBackend):
        return False
    return connection.connection is None or connection.connection.sock is None


def _by_code(code: int, text, *, bounce: bool = True, prefix: str = "") -> Outcome:
    text = text.decode(errors="replace") if isinstance(text, bytes) else text
    detail = f"{prefix}{code} {text}"[:500]
    if 500 <= code < 600:
        return Outcome(FAILED, detail, bounce=bounce)
    return Outcome(RETRY, detail)


def _by_esp_error(exc: AnymailAPIError) -> Outcome:
    """An ESP's API refused the call, or the call did not get through. Throttling (429) and
    the ESP's own errors (5xx) are retried; another 4xx is our request's fault (a bad token,
    a malformed message): failed, not a bounce. No answer at all is retried only when the
    request never reached the ESP; after that (a read timeout, a reset), it may have been
    accepted: unknown, never re-sent."""
    detail = f"ESP API: {_first_line(exc)}"
    status = exc.status_code
    if status is not None:
        if status == 429 or status >= 500:
            return Outcome(RETRY, f"{detail} (HTTP {status})")
        return Outcome(FAILED, f"{detail} (HTTP {status})", bounce=False)
    if _never_connected(exc.__cause__):
        return Outcome(RETRY, f"{detail}: could not connect")
    return Outcome(UNKNOWN, f"{detail}: no answer after the request was sent")


def _never_connected(error: BaseException | None) -> bool:
    """True for a requests error raised before a byte of the request left: the connection
    was refused or timed out while connecting."""
    if isinstance(error, requests.ConnectTimeout):
        return True
    if not isinstance(error, requests.ConnectionError):
        return False
    reason = getattr(error.args[0] if error.args else None, "reason", None)
    return isinstance(reason, urllib3.exceptions.NewConnectionError)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:400]


def _describe(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"[:500]
