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
- a database failure while storing is a 503, so the ESP delivers the event again later.
"""

from __future__ import annotations

import json
import logging
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


class FeedbackStoreError(Exception):
    """Storing an event failed on our side: the ESP must deliver it again."""


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
    try:
        return match.func(request, *match.args, **match.kwargs)
    except AnymailWebhookValidationFailure as exc:
        logger.warning("ESP webhook %s/%s refused: %s", esp, kind, exc)
        return _answer(401, "The request's signature is not valid.")
    except FeedbackStoreError as exc:
        logger.error("ESP webhook %s/%s: could not store the event: %s", esp, kind, exc)
        return _answer(503, "The event could not be stored now; deliver it again later.")
    except Exception as exc:  # the boundary: the ESP's payload did not parse
        logger.warning("ESP webhook %s/%s: malformed payload: %s: %s", esp, kind,
                       type(exc).__name__, str(exc)[:200])  # fmt: skip
        return _answer(400, f"The payload is not a valid {esp} {kind} event.")


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


def on_tracking(sender, event, esp_name: str, **kwargs) -> None:
    """anymail `tracking` receiver."""
    kind = event.event_type if event.event_type in FeedbackKind.values else FeedbackKind.UNKNOWN
    incoming = feedback.Incoming(
        source=esp_name.lower(),
        kind=kind,
        event_id=_tracking_event_id(esp_name, event),
        occurred_at=event.timestamp,
        recipient=event.recipient or "",
        esp_message_id=str(event.message_id or ""),
        reason=event.mta_response or event.description or "",
        reject_reason=event.reject_reason or "",
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
    try:
        feedback.feedback_record(incoming)
    except DatabaseError as exc:
        raise FeedbackStoreError(str(exc)) from exc


def connect() -> None:
    tracking.connect(on_tracking, dispatch_uid="outreach.feedback.tracking")
    inbound.connect(on_inbound, dispatch_uid="outreach.feedback.inbound")
