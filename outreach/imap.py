"""IMAP polling of sending mailboxes: the replies, bounces and auto-replies that land in the
inbox of a mailbox that sends over SMTP (`manage.py feedback poll`, and a django-q2 schedule
every `AICMO_IMAP_POLL_MINUTES`).

**The IMAP URL** (`Mailbox.imap_url`, a secret like the SMTP connection URL) says where the
inbox is: `imaps://USER:PASSWORD@HOST[:PORT][/FOLDER]` connects with TLS (port 993 unless
given), `imap://USER:PASSWORD@HOST[:PORT][/FOLDER]` connects in clear and upgrades with
STARTTLS (port 143 unless given; a server that does not offer STARTTLS is refused, except
one on this machine, 127.0.0.0/8, ::1 or localhost, which is reached without TLS). The folder
is INBOX unless given, written as the server names it (`/INBOX.Replies`, `/Archive/Replies`);
characters that mean something in a URL (`@ : / ? # %` and spaces) are percent-encoded in the
user name, password and folder (`sam%40venture.example`). Certificates are verified.

**A poll of one mailbox** (`mailbox_poll`) logs in, selects the folder read-only (EXAMINE)
and fetches with BODY.PEEK, so nothing is marked seen, moved or changed. `MailboxPoll` keeps
the folder's UIDVALIDITY and the highest UID read: a poll reads only UIDs above it, at most
`MAX_MAILS_PER_POLL` (the next poll goes on), and only mail that arrived since the day before
the mailbox was added (nothing older can answer what we sent). Another server, user or folder,
or a changed UIDVALIDITY (the server renumbered the folder), re-reads the folder from the
start. Idempotency does not rest on UIDs: each event's id is the mail's Message-ID (a SHA-256
of the mail when it has none), so a mail read twice (re-read, copied, moved, or in two of our
mailboxes) is stored once (`feedback.feedback_record`) and counted as repeated.

**Each new mail** becomes `feedback.Incoming` events with source "imap" (`mail_read`):

- mail from the mailbox's own address (its sent copies) is skipped;
- a bounce report: a DSN (multipart/report; report-type=delivery-status, RFC 3464), or mail
  from the mailer daemon (empty Return-Path, MAILER-DAEMON or postmaster) that flufl.bounce
  recognises. flufl.bounce says which addresses failed; each one's DSN Status decides hard
  (5.x.x: `bounced`, the address is suppressed and the sequence stops) or soft (4.x.x:
  `deferred`, nothing is suppressed, as for an ESP's soft bounce); without a Status,
  flufl.bounce's permanent or temporary verdict does. It is matched by the Message-ID in the
  returned original (a message/rfc822 or text/rfc822-headers part), else the failed address;
- anything else goes the way ESP inbound mail goes (`feedback.mail_incoming`): an email to the
  unsubscribe mailto, an auto-reply (Auto-Submitted, X-Autoreply, Precedence, the subject:
  its effect is as for any auto-reply), else a reply (matched by In-Reply-To/References,
  else the sender's address; its new part is cut by `feedback.reply_text_of`).

An event that names none of our ids is matched by address to the latest email this mailbox
sent there; one that matches nothing is still stored and listed as unmatched.

**Nothing in a mail stops a poll.** Headers and text are decoded leniently (unknown charsets,
8-bit headers, NUL bytes), a mail without headers is stored as unmatched, and a mail larger
than `FULL_FETCH_BYTES` is read as its headers and the first `PARTIAL_BODY_BYTES` of its body
(where the text of a reply comes before its attachments). A mail that still cannot be read is
skipped with a log line naming its UID and the reason, and the poll goes past it.

**A mailbox that cannot be polled** (refused, unknown host, timeout after
`AICMO_IMAP_TIMEOUT` seconds, TLS failure, wrong password, missing folder) gives one line
(`ImapPollError`, never the password), stored as the poll's error for the admin page; the
other mailboxes are still polled. Every mailbox with an IMAP URL is polled, active or not: a
paused mailbox still receives the replies and bounces to what it sent. Two polls running at
once are safe (events are stored once; the highest UID only grows).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import imaplib
import ipaddress
import logging
import socket
import ssl
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from email.header import decode_header, make_header
from email.message import Message
from email.parser import HeaderParser
from email.utils import parseaddr, parsedate_to_datetime
from urllib.parse import unquote, urlsplit

from django.conf import settings
from django.db import DatabaseError
from django.db.models import F, Q
from django.db.models.functions import Greatest
from django.utils import timezone
from django.utils.html import strip_tags

from outreach import feedback
from outreach.health import health_check
from outreach.models import FeedbackKind, Mailbox, MailboxPoll

logger = logging.getLogger(__name__)

SOURCE = "imap"
MAX_MAILS_PER_POLL = 200
FULL_FETCH_BYTES = 2 * 1024 * 1024
PARTIAL_BODY_BYTES = 256 * 1024
TEXT_LIMIT = 100_000  # characters of a mail's text kept
DEFAULT_PORTS = {"imaps": 993, "imap": 143}
DAEMONS = frozenset({"mailer-daemon", "postmaster"})
EVENT_ID_LIMIT = 200  # FeedbackEvent.event_id
EXAMPLE_URL = "imaps://user:password@imap.example.com:993/INBOX"


class ImapUrlError(ValueError):
    """The IMAP URL is not one we can use; the message never shows the password."""


class ImapPollError(Exception):
    """The mailbox could not be polled: one line for the operator, without the password.
    `transient` says whether polling again later may work by itself (a timeout, a refused
    connection) or the settings must change first (a wrong password, a missing folder)."""

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


# --- The IMAP URL --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImapTarget:
    """Where a mailbox's inbox is, read from its IMAP URL."""

    security: str  # "tls", "starttls" or "plain"
    host: str
    port: int
    user: str
    password: str = field(repr=False)
    folder: str = "INBOX"

    @property
    def where(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def key(self) -> str:
        """A fingerprint of the server, user and folder: the poll state belongs to it."""
        text = "\n".join([self.host, str(self.port), self.user, self.folder])
        return hashlib.sha256(text.encode()).hexdigest()[:32]


def imap_url_parse(url: str) -> ImapTarget:
    """The inbox an IMAP URL names, or ImapUrlError saying what is wrong with it."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        raise ImapUrlError(
            f"is not a URL with a valid port, such as {EXAMPLE_URL} (percent-encode "
            "characters such as / # ? @ in the password)"
        ) from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise ImapUrlError(
            "must start with imaps:// (TLS, port 993) or imap:// (STARTTLS, port 143), such "
            f"as {EXAMPLE_URL}"
        )
    if not parts.hostname:
        raise ImapUrlError(f"names no server: write it as {EXAMPLE_URL}")
    if not parts.username or not parts.password:
        raise ImapUrlError(
            f"needs the user name and password before the server: {scheme}://USER:PASSWORD@"
            f"{parts.hostname}/INBOX"
        )
    if parts.query or parts.fragment:
        raise ImapUrlError(
            "takes no ?query or #fragment; percent-encode ? and # in the password (%3F, %23)"
        )
    host = parts.hostname
    security = "tls" if scheme == "imaps" else "plain" if _is_loopback(host) else "starttls"
    return ImapTarget(
        security=security,
        host=host,
        port=port or DEFAULT_PORTS[scheme],
        user=unquote(parts.username),
        password=unquote(parts.password),
        folder=unquote(parts.path.strip("/")) or "INBOX",
    )


def _is_loopback(host: str) -> bool:
    """This machine: traffic to it never leaves it, so it may go without TLS."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# --- One mail ------------------------------------------------------------------------------------


def _clean(text: object) -> str:
    """Text that every database stores: no NUL, no lone surrogates (8-bit headers)."""
    value = str(text or "")
    try:
        value = value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:
        value = value.encode("utf-8", "replace").decode("utf-8")
    return value.replace("\x00", "")


def _decoded(value: object) -> str:
    """A header's text with its RFC 2047 encoded words decoded; as it stands if that fails."""
    try:
        return _clean(make_header(decode_header(str(value))))
    except (LookupError, UnicodeError, ValueError, TypeError):
        return _clean(value)


class _Headers:
    """A mail's headers as `feedback.mail_incoming` reads them: decoded, never an error."""

    def __init__(self, message: Message) -> None:
        self.message = message

    def get(self, name: str, default: str | None = None) -> str | None:
        value = self.message.get(name)
        return default if value is None else " ".join(_decoded(value).split())


@dataclass(frozen=True)
class Bounce:
    address: str
    hard: bool
    reason: str


def mail_read(raw: bytes, *, mailbox: Mailbox, note: str = "") -> list[feedback.Incoming] | None:
    """The events one mail of `mailbox`'s inbox reports (one per failed address of a bounce
    report, else one), or None for the mailbox's own sent copy. Raises only on mail that
    cannot be parsed at all (the poll skips it)."""
    from imap_tools import MailMessage

    mail = MailMessage.from_bytes(raw)
    headers = _Headers(mail.obj)
    sender = _clean(mail.from_).strip().lower()
    if sender and sender == mailbox.from_email.strip().lower():
        return None
    common = {
        "source": SOURCE,
        "occurred_at": _date_of(headers.get("Date")),
        "subject": " ".join(_clean(mail.subject).split())[:998],
        "mailbox_id": mailbox.pk,
    }
    event_id = _event_id(headers, raw)
    bounces = _bounces(mail.obj) if _is_bounce_report(mail.obj, headers, sender) else []
    if bounces:
        originals = _returned_ids(mail.obj)
        return [
            feedback.Incoming(
                kind=FeedbackKind.BOUNCED if bounce.hard else FeedbackKind.DEFERRED,
                # One event per failed address; one address: the report's own id.
                event_id=_bounded(f"{event_id} {bounce.address}" if len(bounces) > 1 else event_id),
                recipient=bounce.address,
                thread_ids=originals,
                reason=bounce.reason,
                notes=note,
                **common,
            )
            for bounce in bounces
        ]
    incoming = feedback.mail_incoming(
        headers, event_id=event_id, sender=sender, text=_text_of(mail), raw=None, **common
    )
    incoming.notes = note
    return [incoming]


def _event_id(headers: _Headers, raw: bytes) -> str:
    """The mail's Message-ID, else a digest of the mail: the same for every copy of it."""
    value = (headers.get("Message-ID") or "").strip()
    found = feedback.thread_ids_of(value)
    return _bounded(found[0] if found else value) if value else feedback.event_digest(raw)


def _bounded(event_id: str) -> str:
    if len(event_id) <= EVENT_ID_LIMIT:
        return event_id
    return feedback.event_digest(event_id.encode("utf-8", "replace"))


def _date_of(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return when if timezone.is_aware(when) else timezone.make_aware(when, dt.UTC)


def _text_of(mail) -> str:
    """The mail's plain text (from its HTML when it has none), as much as is kept."""
    text = mail.text or strip_tags(mail.html)
    return _clean(text)[:TEXT_LIMIT]


def _is_bounce_report(message: Message, headers: _Headers, sender: str) -> bool:
    """A DSN, or mail from the mailer daemon (flufl.bounce reads the formats MTAs used
    before DSNs)."""
    if message.get_content_type() == "multipart/report":
        kind = message.get_param("report-type", header="content-type")
        if str(kind or "").lower() == "delivery-status":
            return True
    if (headers.get("Return-Path") or "").strip() == "<>":
        return True
    return sender.partition("@")[0] in DAEMONS


def _bounces(message: Message) -> list[Bounce]:
    """Each address the report says failed; hard or soft by its DSN Status (5.x.x or 4.x.x),
    else by flufl.bounce's permanent or temporary verdict. None when flufl.bounce cannot
    read the report: the mail is then stored as what else it is, not lost."""
    from flufl.bounce import all_failures

    _headers_as_text(message)
    try:
        temporary, permanent = all_failures(message)
    except Exception as exc:  # its heuristic detectors assume well-formed headers
        logger.warning(
            "A bounce report that flufl.bounce cannot read is stored as a plain mail: %s: %s",
            type(exc).__name__, str(exc)[:200],
        )  # fmt: skip
        return []
    statuses = _dsn_statuses(message)
    found: dict[str, Bounce] = {}
    for raw in sorted(temporary | permanent):
        address = _clean(raw.decode("ascii", "replace")).strip().lower()
        if not address or address in found:
            continue
        status, diagnostic = statuses.get(address, ("", ""))
        hard = status.startswith("5") if status[:1] in ("4", "5") else raw in permanent
        reason = f"{status}: {diagnostic}" if status and diagnostic else status or diagnostic
        verdict = "permanent" if hard else "temporary"
        found[address] = Bounce(address, hard, reason or f"a {verdict} delivery failure")
    return list(found.values())


def _headers_as_text(message: Message) -> None:
    """Headers with 8-bit bytes come out of the parser as Header objects, which the bounce
    detectors take for text: they are replaced by their decoded text (in this parsed copy
    only; the mailbox is never changed)."""
    for name in {key.lower() for key in message}:
        values = message.get_all(name) or []
        if all(isinstance(value, str) for value in values):
            continue
        del message[name]
        for value in values:
            message[name] = _decoded(value)


def _dsn_statuses(message: Message) -> dict[str, tuple[str, str]]:
    """{address: (Status, Diagnostic-Code)} of a DSN's per-recipient fields (RFC 3464)."""
    statuses: dict[str, tuple[str, str]] = {}
    for part in message.walk():
        if part.get_content_type() != "message/delivery-status" or not part.is_multipart():
            continue
        for block in part.get_payload():
            status = " ".join(str(block.get("Status") or "").split())
            diagnostic = " ".join(str(block.get("Diagnostic-Code") or "").split())
            diagnostic = diagnostic.partition(";")[2].strip() or diagnostic
            for name in ("Original-Recipient", "Final-Recipient"):
                address = parseaddr(str(block.get(name) or "").partition(";")[2])[1].lower()
                if address:
                    statuses.setdefault(address, (status[:20], _clean(diagnostic)[:400]))
    return statuses


def _returned_ids(message: Message) -> list[str]:
    """The Message-IDs of the returned original: its headers in a message/rfc822 or
    text/rfc822-headers part."""
    found: list[str] = []
    for part in message.walk():
        kind = part.get_content_type()
        if kind == "message/rfc822":
            payload = part.get_payload()
            inner = payload[0] if isinstance(payload, list) and payload else None
            value = inner.get("Message-ID") if isinstance(inner, Message) else None
        elif kind == "text/rfc822-headers":
            data = part.get_payload(decode=True) or b""
            value = HeaderParser().parsestr(data.decode("utf-8", "replace")).get("Message-ID")
        else:
            continue
        found += [mid for mid in feedback.thread_ids_of(str(value or "")) if mid not in found]
    return found


# --- Polling -------------------------------------------------------------------------------------


@dataclass
class PollResult:
    """What one poll of one mailbox found, or why it could not poll."""

    mailbox: Mailbox
    counts: Counter = field(default_factory=Counter)
    error: str = ""
    transient: bool = False  # the error may go away by itself (ImapPollError.transient)
    waiting: int = 0  # new mails left for the next poll
    alarmed: set[int] = field(default_factory=set)  # campaigns to check the health of

    def as_dict(self) -> dict:
        return {
            "mailbox": self.mailbox.pk, "email": self.mailbox.from_email,
            "ok": not self.error, "error": self.error, "transient": self.transient,
            "waiting": self.waiting,
            **{key: self.counts.get(key, 0) for key in COUNTED},
        }  # fmt: skip

    def summary(self) -> str:
        """One line: what the poll found, or why it failed."""
        name = self.mailbox.from_email
        if self.error:
            return f"{name}: not polled: {self.error}"
        return f"{name}: {self.found()}"

    def found(self) -> str:
        c = self.counts
        found = [
            _n(c["replied"], "reply", "replies"),
            _n(c["bounced"], "hard bounce"),
            _n(c["deferred"], "soft bounce"),
            _n(c["autoresponded"], "auto-reply", "auto-replies"),
            _n(c["unsubscribed"], "unsubscribe"),
            _n(c["unmatched"], "matching no email of ours", "matching no email of ours"),
            _n(c["repeated"], "seen before", "seen before"),
            _n(c["own"], "own sent copy skipped", "own sent copies skipped"),
            _n(
                c["unreadable"],
                "unreadable (skipped, see the log)",
                "unreadable (skipped, see the log)",
            ),
        ]
        more = f"; {self.waiting} more for the next poll" if self.waiting else ""
        details = ", ".join(part for part in found if part)
        return (_n(c["mails"], "new mail") or "no new mail") + (
            f" ({details}){more}" if details else more
        )


COUNTED = ("mails", "replied", "bounced", "deferred", "autoresponded", "unsubscribed",
           "unmatched", "repeated", "own", "unreadable")  # fmt: skip


def _n(count: int, one: str, many: str | None = None) -> str:
    if not count:
        return ""
    return f"{count} {one if count == 1 else many or one + 's'}"


def poll_state(mailbox: Mailbox) -> str:
    """How the mailbox's last poll went, in a line for its admin page."""
    poll = MailboxPoll.objects.filter(pk=mailbox.pk).first()
    if poll is None or poll.polled_at is None:
        return "not polled yet" if mailbox.imap_url else "not polled: no IMAP URL"
    when = f"{timezone.localtime(poll.polled_at):%Y-%m-%d %H:%M %Z}"
    if poll.error:
        last = poll.succeeded_at
        since = f"last success {timezone.localtime(last):%Y-%m-%d %H:%M}" if last else "never"
        return f"{when}: failed: {poll.error} ({since})"
    counts = Counter({k: v for k, v in poll.counts.items() if k in COUNTED})
    found = PollResult(mailbox=mailbox, counts=counts, waiting=poll.counts.get("waiting", 0))
    return f"{when}: {found.found()}"


def mailboxes_poll(*, mailbox: str | None = None) -> list[PollResult]:
    """Poll every mailbox with an IMAP URL, or only the one `mailbox` names (its id or
    address); each one whatever happened to the others. A bounce checks its campaign's health
    once the mailbox's poll is done. ValueError names a mailbox that is not there or has no
    IMAP URL."""
    results = []
    for box in _mailboxes(mailbox):
        result = mailbox_poll(mailbox=box)
        for campaign_id in sorted(result.alarmed):
            health_check(campaign_id)
        results.append(result)
    return results


def _mailboxes(named: str | None) -> list[Mailbox]:
    boxes = Mailbox.objects.exclude(imap_url="").order_by("from_email", "pk")
    if named is None:
        return list(boxes)
    named = named.strip()
    wanted = Q(from_email__iexact=named) | (Q(pk=int(named)) if named.isdigit() else Q())
    found = list(Mailbox.objects.filter(wanted).order_by("from_email", "pk"))
    if not found:
        raise ValueError(f"No mailbox has the id or address {named!r}.")
    polled = [box for box in found if box.imap_url]
    if not polled:
        raise ValueError(
            f"Mailbox {found[0].from_email} has no IMAP URL: set one on its page in the admin "
            "(Outreach -> Mailboxes) or with imap_url_env in its campaign file."
        )
    return polled


def mailbox_poll(*, mailbox: Mailbox) -> PollResult:
    """Read the new mail of one mailbox's inbox into feedback events; the poll's outcome
    is kept in its MailboxPoll row. Never raises for what the server or a mail does."""
    result = PollResult(mailbox=mailbox)
    state, _ = MailboxPoll.objects.get_or_create(mailbox=mailbox)
    try:
        target = imap_url_parse(mailbox.imap_url)
        with _session(target) as box:
            _read_new_mail(box, target, state, result)
    except ImapUrlError as exc:
        result.error = f"the IMAP URL {exc}"
    except ImapPollError as exc:
        result.error, result.transient = str(exc), exc.transient
    except DatabaseError:
        raise  # the database, not the mailbox: the command says so in one line
    except Exception as exc:  # a bug must not keep the other mailboxes from being polled
        logger.exception("IMAP poll of mailbox %s stopped", mailbox.pk)
        result.error = f"stopped by an internal error ({type(exc).__name__}; see the log)"
    now = timezone.now()
    counts = {key: result.counts.get(key, 0) for key in COUNTED} | {"waiting": result.waiting}
    done = {"polled_at": now, "error": result.error[:500], "counts": counts}
    if not result.error:
        done["succeeded_at"] = now
    else:
        logger.warning("IMAP poll of mailbox %s failed: %s", mailbox.pk, result.error)
    MailboxPoll.objects.filter(pk=mailbox.pk).update(**done)
    return result


def _read_new_mail(box, target: ImapTarget, state: MailboxPoll, result: PollResult) -> None:
    with _imap_errors(target):
        uidvalidity = _examine(box, target)
    if (state.folder_key, state.uidvalidity) != (target.key, uidvalidity):
        if state.uidvalidity is not None:
            logger.info("Mailbox %s: a new folder or UIDVALIDITY, read again", state.pk)
        MailboxPoll.objects.filter(pk=state.pk).update(
            folder_key=target.key, uidvalidity=uidvalidity, last_uid=0
        )
        state.folder_key, state.uidvalidity, state.last_uid = target.key, uidvalidity, 0
    since = timezone.localdate(result.mailbox.created_at) - dt.timedelta(days=1)
    with _imap_errors(target):
        uids = _new_uids(box, after=state.last_uid, since=since)
        result.waiting = max(len(uids) - MAX_MAILS_PER_POLL, 0)
        uids = uids[:MAX_MAILS_PER_POLL]
        sizes = _sizes(box, uids)
    for uid in uids:
        with _imap_errors(target):
            raw, note = _fetch(box, uid, sizes.get(uid, 0))
        _record(raw, note=note, uid=uid, result=result)
        MailboxPoll.objects.filter(
            pk=state.pk, folder_key=target.key, uidvalidity=uidvalidity
        ).update(last_uid=Greatest(F("last_uid"), uid))


def _record(raw: bytes | None, *, note: str, uid: int, result: PollResult) -> None:
    """Store the events one mail reports and count them. A mail that cannot be read is
    skipped with a log line; a database failure stops the poll before this mail (the next
    poll reads it again)."""
    if raw is None:  # expunged between the search and the fetch
        return
    result.counts["mails"] += 1
    try:
        events = mail_read(raw, mailbox=result.mailbox, note=note)
    except Exception as exc:  # the boundary: whatever a mail holds must not stop the poll
        logger.warning(
            "Mailbox %s: mail UID %s skipped, it cannot be read: %s: %s",
            result.mailbox.pk, uid, type(exc).__name__, str(exc)[:200],
        )  # fmt: skip
        result.counts["unreadable"] += 1
        return
    if events is None:
        result.counts["own"] += 1
        return
    for incoming in events:
        event, created = feedback.feedback_record(incoming, check_health=False)
        if not created:
            result.counts["repeated"] += 1
            continue
        result.counts[event.kind] += 1
        if event.lead_id is None:
            result.counts["unmatched"] += 1
        if event.message is not None and event.kind in feedback.ALARMS:
            result.alarmed.add(event.message.campaign_id)


# --- The IMAP session ----------------------------------------------------------------------------


def _timeout() -> float:
    return float(settings.AICMO_IMAP_TIMEOUT)


@contextmanager
def _session(target: ImapTarget) -> Iterator:
    """A logged-in imap-tools MailBox, logged out (if still possible) at the end."""
    from imap_tools import MailBox, MailBoxStartTls, MailBoxUnencrypted

    with _imap_errors(target):
        if target.security == "tls":
            box = MailBox(
                target.host, target.port, timeout=_timeout(),
                ssl_context=ssl.create_default_context(),
            )  # fmt: skip
        elif target.security == "starttls":
            box = MailBoxStartTls(
                target.host, target.port, timeout=_timeout(),
                ssl_context=ssl.create_default_context(),
            )  # fmt: skip
        else:
            box = MailBoxUnencrypted(target.host, target.port, timeout=_timeout())
        if (target.user + target.password).isascii():
            box.login(target.user, target.password, initial_folder=None)
        else:
            box.login_utf8(target.user, target.password, initial_folder=None)
    try:
        yield box
    finally:
        with suppress(Exception):
            box.logout()


@contextmanager
def _imap_errors(target: ImapTarget) -> Iterator[None]:
    """Whatever goes wrong talking to the server, as one ImapPollError line."""
    from imap_tools.errors import (
        ImapToolsError,
        MailboxFolderSelectError,
        MailboxLoginError,
        MailboxStarttlsError,
    )

    where = target.where
    try:
        yield
    except MailboxLoginError as exc:
        raise _error(
            f"{where} refused the login of {target.user!r}: {_said(exc, target)}", target
        ) from None
    except MailboxFolderSelectError as exc:
        raise _error(
            f"folder {target.folder!r} cannot be opened on {where}: {_said(exc, target)}", target
        ) from None
    except MailboxStarttlsError as exc:
        raise _error(f"STARTTLS with {where} failed: {_said(exc, target)}", target) from None
    except ssl.SSLCertVerificationError as exc:
        raise _error(
            f"the certificate of {target.host} is not valid: {exc.verify_message}", target
        ) from None
    except ssl.SSLError as exc:
        raise _error(f"TLS with {where} failed: {exc.reason or exc}", target, True) from None
    except TimeoutError:
        raise _error(
            f"no answer from {where} within {_timeout():g} s", target, transient=True
        ) from None
    except ConnectionRefusedError:
        raise _error(
            f"{where} refused the connection (is the server up, and is port {target.port} "
            "the IMAP port?)",
            target,
            transient=True,
        ) from None
    except socket.gaierror as exc:
        raise _error(f"cannot find the server {target.host}: {exc.strerror}", target) from None
    except OSError as exc:
        raise _error(
            f"the connection to {where} failed: {exc.strerror or exc}", target, transient=True
        ) from None
    except imaplib.IMAP4.error as exc:
        if target.security == "starttls" and "TLS" in str(exc):
            # imaplib's words when the server's capabilities lack STARTTLS.
            raise _error(
                f"{where} offers no STARTTLS, so the password is not sent; use imaps:// (TLS "
                "on port 993) instead",
                target,
            ) from None
        if isinstance(exc, imaplib.IMAP4.abort):
            raise _error(f"{where} broke off the connection: {exc}", target, True) from None
        raise _error(f"{where} answered with an error: {exc}", target) from None
    except (ImapToolsError, ValueError) as exc:
        raise _error(f"{where} answered with an error: {exc}", target) from None


def _error(message: str, target: ImapTarget, transient: bool = False) -> ImapPollError:
    """One line for the operator: never the password, never more than the error field."""
    if target.password:
        message = message.replace(target.password, "[REDACTED]")
    return ImapPollError(" ".join(message.split())[:500], transient=transient)


def _said(exc, target: ImapTarget) -> str:
    """What the server answered to the failed command, as text."""
    result = getattr(exc, "command_result", None)
    data = result[1] if isinstance(result, tuple) and len(result) > 1 else None
    items = data if isinstance(data, list) else [data]
    text = " ".join(
        item.decode("utf-8", "replace") if isinstance(item, bytes) else str(item)
        for item in items
        if item is not None
    )
    return text or str(exc)


def _examine(box, target: ImapTarget) -> int:
    """Select the folder read-only (EXAMINE); its UIDVALIDITY."""
    box.folder.set(target.folder, readonly=True)
    values = box.client.untagged_responses.get("UIDVALIDITY") or [b"0"]
    try:
        return int(values[-1])
    except (TypeError, ValueError):
        return 0


def _new_uids(box, *, after: int, since: dt.date) -> list[int]:
    """UIDs above `after` of mail that arrived on `since` or later, in order. ("UID n:*"
    always names the last mail, whatever its UID: hence the filter.)"""
    from imap_tools import AND, U

    found = box.uids(AND(uid=U(str(after + 1), "*"), date_gte=since))
    return sorted(uid for uid in map(int, found) if uid > after)


def _sizes(box, uids: list[int]) -> dict[int, int]:
    """{UID: size in bytes} of the mails to read, asked for in one go per hundred."""
    if not uids:
        return {}
    sizes = {}
    for start in range(0, len(uids), 100):
        chunk = [str(uid) for uid in uids[start : start + 100]]
        typ, data = box.client.uid("fetch", ",".join(chunk), "(UID RFC822.SIZE)")
        if typ != "OK":
            raise imaplib.IMAP4.error(f"FETCH of the mail sizes failed: {_plain(data)}")
        for item in data:
            line = item[0] if isinstance(item, tuple) else item
            words = line.decode("ascii", "replace").replace("(", " ").replace(")", " ").split()
            pairs = dict(zip(words[1::2], words[2::2], strict=False))
            if pairs.get("UID", "").isdigit() and pairs.get("RFC822.SIZE", "").isdigit():
                sizes[int(pairs["UID"])] = int(pairs["RFC822.SIZE"])
    return sizes


def _fetch(box, uid: int, size: int) -> tuple[bytes | None, str]:
    """The mail (BODY.PEEK: it stays unseen), whole or, when it is large, its headers and
    the start of its body; with a note saying so."""
    if size <= FULL_FETCH_BYTES:
        parts, note = "(BODY.PEEK[])", ""
    else:
        parts = f"(BODY.PEEK[HEADER] BODY.PEEK[TEXT]<0.{PARTIAL_BODY_BYTES}>)"
        note = (
            f"a mail of {size / 1024 / 1024:.1f} MB: read as its headers and the first "
            f"{PARTIAL_BODY_BYTES // 1024} KB of its body"
        )
    typ, data = box.client.uid("fetch", str(uid), parts)
    if typ != "OK":
        raise imaplib.IMAP4.error(f"FETCH of mail UID {uid} failed: {_plain(data)}")
    chunks = [item[1] for item in data if isinstance(item, tuple) and len(item) > 1]
    return (b"".join(chunks) if chunks else None), note


def _plain(data) -> str:
    return " ".join(
        item.decode("utf-8", "replace") if isinstance(item, bytes) else str(item)
        for item in (data or [])
    )[:200]
