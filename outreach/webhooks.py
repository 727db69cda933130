"""ESP webhooks: `/anymail/<esp>/tracking/` and `/anymail/<esp>/inbound/`.

django-anymail's views parse each ESP's published format into normalised events, and its
`tracking` and `inbound` signals hand them to `outreach.feedback`. Stock anymail answers
some bad requests with a 500 (truncated JSON, a JSON array where an object belongs, invalid
UTF-8), and a wrong or missing secret with a 400, so its views are wrapped:

- without `ANYMAIL_WEBHOOK_SECRET` the webhooks are off (403): an open endpoint would let
  anyone mark leads bounced or replied;
- a missing or wrong basic-auth secret, or a failed ESP signature (Mailgun's), is a 401
  with nothing stored;
- an empty, oversized, non-UTF-8, non-JSON or malformed body, or the wrong content type, is
  a 400 (413 for the size) and one log line;
- a soft bounce that anymail reports as "bounced" (Postmark's SoftBounce, SparkPost's soft
  bounce classes) is recorded as a deferral, which suppresses nobody; SparkPost's blocks of
  the sender or content are rejections, not bad addresses;
- the events of a request (an ESP's batch) are collected while anymail parses them and then
  stored together by `feedback.feedback_record_many`: a few queries per batch, not per event;
- a failure while storing (the database, or a bug of ours) is a 503 and a logged traceback,
  so the ESP delivers the batch again later (repeats are stored once).
"""

from __future__ import annotations

import json
import logging
from contextvars import ContextVar
from functools import lru_cache

from anymail.exceptions import AnymailWebhookValidationFailure
from anymail.signals import inbound, tracking
from anymail.utils import get_request_basic_auth
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import DatabaseError
from django.http import HttpResponse
from django.urls import Resolver404, resolve
from django.utils.crypto import constant_time_compare
from django.views.decorators.csrf import csrf_exempt

from outreach import feedback
from outreach.models import FeedbackKind

logger = logging.getLogger(__name__)

MAX_BODY = 10 * 1024 * 1024  # inbound mail with attachments; tracking batches are far smaller
# Inbound formats that are forms, not JSON (Mailgun posts the parsed message as a form).
FORM_POSTS = frozenset({("mailgun", "inbound"), ("sendgrid", "inbound"), ("mailjet", "inbound")})


# The events of the request being handled: anymail's view sends one signal per event of an
# ESP's batch; they are stored together (one transaction, a few queries) after it returns.
_batch: ContextVar[list | None] = ContextVar("feedback_batch", default=None)


@lru_cache(maxsize=64)
def _anymail_view(esp: str, kind: str):
    """anymail's own view for the ESP's webhook (its URL patterns say which ESPs it has)."""
    try:
        return resolve(f"/{esp}/{kind}/", urlconf="anymail.urls")
    except Resolver404:
        return None


def _answer(status: int, text: str, **headers) -> HttpResponse:
    response = HttpResponse(text + "\n", status=status, content_type="text/plain; charset=utf-8")
    for name, value in headers.items():
        response[name] = value
    return response


def _secrets() -> list[str]:
    secret = getattr(settings, "ANYMAIL", {}).get("WEBHOOK_SECRET") or []
    return [secret] if isinstance(secret, str) else list(secret)


@csrf_exempt
def esp_webhook(request, esp: str, kind: str):
    match = _anymail_view(esp, kind) if kind in ("tracking", "inbound") else None
    if match is None:
        return _answer(404, f"No {kind} webhook for {esp!r}.")
    secrets = _secrets()
    if not secrets:
        logger.warning("ESP webhook %s/%s refused: ANYMAIL_WEBHOOK_SECRET is not set", esp, kind)
        return _answer(403, "Webhooks are off until ANYMAIL_WEBHOOK_SECRET is set.")
    given = get_request_basic_auth(request) or ""
    if not any(constant_time_compare(given, secret) for secret in secrets):
        logger.warning("ESP webhook %s/%s refused: wrong or missing credentials", esp, kind)
        return _answer(
            401, "Authentication required.", **{"WWW-Authenticate": 'Basic realm="AICMO webhooks"'}
        )
    if request.method == "POST":
        problem = _body_problem(request, esp, kind)
        if problem is not None:
            status, text = problem
            logger.warning("ESP webhook %s/%s refused (%s): %s", esp, kind, status, text)
            return _answer(status, text)
    batch: list[feedback.Incoming] = []
    collecting = _batch.set(batch)
    try:
        response = match.func(request, *match.args, **match.kwargs)
    except AnymailWebhookValidationFailure as exc:
        logger.warning("ESP webhook %s/%s refused: %s", esp, kind, exc)
        return _answer(401, "The request's signature is not valid.")
    except DatabaseError as exc:
        return _unstored(esp, kind, exc)
    except Exception as exc:  # the boundary: the ESP's payload did not parse
        logger.warning("ESP webhook %s/%s: malformed payload: %s: %s", esp, kind,
                       type(exc).__name__, str(exc)[:200])  # fmt: skip
        return _answer(400, f"The payload is not a valid {esp} {kind} event.")
    finally:
        _batch.reset(collecting)
    if batch and response.status_code == 200:
        try:
            feedback.feedback_record_many(batch)
        except Exception as exc:  # ours, not the payload's: the ESP delivers it again
            logger.exception("ESP webhook %s/%s: could not store %d events", esp, kind, len(batch))
            return _unstored(esp, kind, exc)
    return response


def _unstored(esp: str, kind: str, exc: Exception) -> HttpResponse:
    logger.error("ESP webhook %s/%s: could not store the events: %s", esp, kind, exc)
    return _answer(503, "The events could not be stored now; deliver them again later.")


def _body_problem(request, esp: str, kind: str) -> tuple[int, str] | None:
    length = request.META.get("CONTENT_LENGTH") or "0"
    if not length.isdigit() or int(length) > MAX_BODY:
        return 413, f"The body is larger than {MAX_BODY // (1024 * 1024)} MB."
    try:
        body = request.body
    except RequestDataTooBig:
        return 413, "The body is too large."
    if not body:
        return 400, "The body is empty."
    content_type = request.content_type or ""
    if (esp, kind) in FORM_POSTS:
        if content_type not in ("multipart/form-data", "application/x-www-form-urlencoded"):
            return 400, f"Expected a form post, got {content_type or 'no content type'}."
        return None
    if content_type != "application/json":
        return 400, f"Expected application/json, got {content_type or 'no content type'}."
    try:
        json.loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        return 400, "The body is not UTF-8."
    except ValueError:
        return 400, "The body is not valid JSON."
    return None


# --- From anymail's normalised events to ours ----------------------------------------------------


# anymail calls these "bounced", although the ESP says the address is fine and the mail may
# yet arrive (the ESP retries): a soft bounce must not suppress anyone. SparkPost's bounce
# classes (its "Bounce Classification Codes"): 20-24 and 70 are soft; 25 and 50-54 are blocks
# of the sender or the content by the receiving side, not a bad address.
SOFT = {"postmark": frozenset({"SoftBounce"})}
SPARKPOST_SOFT = frozenset({"20", "21", "22", "23", "24", "70"})
SPARKPOST_BLOCK = frozenset({"25", "50", "51", "52", "53", "54"})


def _kind_of(esp_name: str, event) -> tuple[str, str]:
    """(our kind, anymail's reject reason) of a tracking event, soft bounces told apart."""
    kind = event.event_type if event.event_type in FeedbackKind.values else FeedbackKind.UNKNOWN
    reject = event.reject_reason or ""
    raw = event.esp_event if isinstance(event.esp_event, dict) else {}
    esp = esp_name.lower()
    if kind != FeedbackKind.BOUNCED:
        return kind, reject
    if raw.get("Type") in SOFT.get(esp, ()):
        return FeedbackKind.DEFERRED, reject
    if esp == "sparkpost":
        found = next(iter((raw.get("msys") or {}).values()), {})
        bounce_class = str(found.get("bounce_class", "")) if isinstance(found, dict) else ""
        if bounce_class in SPARKPOST_SOFT:
            return FeedbackKind.DEFERRED, reject
        if bounce_class in SPARKPOST_BLOCK:
            return FeedbackKind.REJECTED, "blocked"
    return kind, reject


def on_tracking(sender, event, esp_name: str, **kwargs) -> None:
    """anymail `tracking` receiver."""
    kind, reject = _kind_of(esp_name, event)
    incoming = feedback.Incoming(
        source=esp_name.lower(),
        kind=kind,
        event_id=_tracking_event_id(esp_name, event),
        occurred_at=event.timestamp,
        recipient=event.recipient or "",
        esp_message_id=str(event.message_id or ""),
        reason=event.mta_response or event.description or "",
        reject_reason=reject,
        url=event.click_url or "",
        raw=event.esp_event
        if isinstance(event.esp_event, dict | list | str)
        else repr(event.esp_event),
    )
    _store(incoming)


def _tracking_event_id(esp_name: str, event) -> str:
    """The id that is the same each time the ESP delivers this event. anymail gives
    Mailgun's signature token, which is new for each delivery of the webhook; Mailgun's own
    event id is unique within a day, so it is taken with the event's timestamp."""
    if esp_name.lower() == "mailgun" and isinstance(event.esp_event, dict):
        data = event.esp_event.get("event-data") or {}
        if data.get("id") and data.get("timestamp") is not None:
            return f"{data['id']}@{data['timestamp']}"
    return str(event.event_id or "")


def on_inbound(sender, event, esp_name: str, **kwargs) -> None:
    """anymail `inbound` receiver: a reply (or an auto-reply) to one of our emails, or an
    unsubscribe email sent through the List-Unsubscribe mailto (`feedback.mail_incoming`)."""
    message = event.message
    incoming = feedback.mail_incoming(
        message,
        source=esp_name.lower(),
        event_id=str(event.event_id or message.get("Message-ID") or ""),
        occurred_at=event.timestamp,
        sender=message.from_email.addr_spec if message.from_email else "",
        subject=message.subject or "",
        text=message.text or "",
        raw=message.as_string(),
    )
    _store(incoming)


def _store(incoming) -> None:
    """Into the request's batch (stored whole once anymail has parsed every event of it), or
    at once for a signal sent outside our view."""
    batch = _batch.get()
    if batch is not None:
        batch.append(incoming)
    else:
        feedback.feedback_record(incoming)


def connect() -> None:
    tracking.connect(on_tracking, dispatch_uid="outreach.feedback.tracking")
    inbound.connect(on_inbound, dispatch_uid="outreach.feedback.inbound")
