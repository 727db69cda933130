"""The authenticated JSON bulk lead API: `POST /api/leads/<campaign slug>/`.

    Authorization: Bearer aicmo_...          (a VentureApiToken; see the admin's API tokens)
    Content-Type: application/json
    {"source": "website", "leads": [{"email": "ann@acme.example", "first_name": "Ann", ...}]}
    (a bare list of lead objects is accepted too)

Keys are read like a file's headers (the same aliases: "Email", "first_name", "utm_source",
any other key becomes a custom field) and go through the file import pipeline as one
ImportBatch of channel "api". A token reaches only its own venture's campaigns; another
venture's campaign answers exactly like a missing one. Every failure is a JSON body
{"error": "..."} with a 4xx status, never a 500:

    401 no/malformed Authorization, unknown or revoked token     405 not a POST
    404 no such campaign for this token's venture                409 campaign stopped/completed
    413 more than AICMO_API_MAX_ROWS leads, or a body too large  415 not JSON
    400 bad JSON, nested deeper than MAX_JSON_DEPTH, wrong shape, no email key, text that
        cannot be stored (NUL, lone surrogates: ventures.text), ...
Success is 201 with the batch id, its counts and the first row errors.
"""

from __future__ import annotations

import json
import logging
import re

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt

from leads.inbound import batch_issues, inbound_records_import
from leads.models import SourceChannel
from ventures.models import Campaign
from ventures.selectors import api_token_authenticate
from ventures.services import DomainError
from ventures.text import data_text_problem, described

logger = logging.getLogger(__name__)

SCALARS = (str, int, float, bool, type(None))
# {"leads": [{...}]} is 3 levels; a little room for a wrong shape to get its own message.
MAX_JSON_DEPTH = 8
_JSON_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+"')
_NOT_BRACKET = re.compile(rb"[^\[\]{}]+")
_EMPTY_PAIR = re.compile(rb"\[\]|\{\}")


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _error(status: int, message: str) -> JsonResponse:
    response = JsonResponse({"error": message}, status=status)
    if status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="aicmo"'
    return response


def max_rows() -> int:
    return settings.AICMO_API_MAX_ROWS


def _token(request):
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if not header:
        raise ApiError(401, "Missing Authorization header: send 'Authorization: Bearer <token>'.")
    if scheme.lower() != "bearer" or not value.strip():
        raise ApiError(401, "Malformed Authorization header: expected 'Bearer <token>'.")
    token = api_token_authenticate(value.strip())
    if token is None:
        raise ApiError(401, "Invalid or revoked API token.")
    return token


def _campaign(token, slug: str) -> Campaign:
    campaign = (
        Campaign.objects.select_related("venture").filter(venture=token.venture, slug=slug).first()
    )
    if campaign is None:
        raise ApiError(404, f"No campaign {slug!r} in this token's venture.")
    if not campaign.accepts_leads():
        raise ApiError(409, f"Campaign {slug!r} is {campaign.status}: it takes no new leads.")
    return campaign


def _payload(request) -> tuple[list[dict], str]:
    content_type = request.content_type or ""
    if content_type != "application/json":
        raise ApiError(415, "Send the leads as JSON with 'Content-Type: application/json'.")
    try:
        body = request.body
    except RequestDataTooBig:
        raise ApiError(
            413, "The request body is too large; send fewer leads per request."
        ) from None
    if _nested_deeper_than(body, MAX_JSON_DEPTH):
        raise ApiError(400, f"The JSON is nested more than {MAX_JSON_DEPTH} levels deep.")
    try:
        data = json.loads(body)
    except RecursionError:  # not reached after the depth check; kept as the last word
        raise ApiError(400, "The JSON is nested too deeply.") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"The body is not valid JSON: {exc}.") from None
    _check_text(data)
    source = ""
    if isinstance(data, dict):
        if "leads" not in data:
            raise ApiError(400, 'Expected {"leads": [...]} or a JSON list of lead objects.')
        source = data.get("source") or ""
        if not isinstance(source, str):
            raise ApiError(400, '"source" must be a string.')
        data = data["leads"]
    if not isinstance(data, list):
        raise ApiError(400, '"leads" must be a list of lead objects.')
    return data, source


def _nested_deeper_than(body: bytes, limit: int) -> bool:
    """Does the JSON text nest more than `limit` levels? Decided before parsing, so a body of
    100,000 `[` costs a few regular-expression passes instead of a RecursionError. Strings are
    removed, then innermost empty pairs, once per level: work is `limit` linear passes."""
    brackets = _NOT_BRACKET.sub(b"", _JSON_STRING.sub(b"", body))
    for _level in range(limit):
        if not brackets:
            return False
        reduced = _EMPTY_PAIR.sub(b"", brackets)
        if reduced == brackets:  # mismatched brackets: json.loads names the error
            return False
        brackets = reduced
    return bool(brackets) and _EMPTY_PAIR.search(brackets) is not None


def _check_text(data: object) -> None:
    found = data_text_problem(data)
    if found is None:
        return
    path, problem = found
    parts = list(path[1:] if path[:1] == ("leads",) else path)
    where = f"Lead {parts.pop(0) + 1}" if parts and isinstance(parts[0], int) else ""
    keys = " ".join(described(str(p)) for p in parts)
    label = ": ".join(x for x in (where, keys) if x) or "The body"
    raise ApiError(400, f"{label}: {problem}, which cannot be stored.")


def _check_records(records: list) -> None:
    if not records:
        raise ApiError(400, "No leads in the request.")
    if len(records) > max_rows():
        raise ApiError(413, f"{len(records)} leads in one request; the limit is {max_rows()}.")
    for number, record in enumerate(records, start=1):
        if not isinstance(record, dict):
            raise ApiError(400, f"Lead {number} is not an object.")
        for key, value in record.items():
            if not isinstance(value, SCALARS):
                raise ApiError(
                    400, f"Lead {number}: {key!r} must be a string, number, boolean or null."
                )


@csrf_exempt
def leads_api_view(request, slug: str):
    if request.method != "POST":
        response = _error(405, "Use POST.")
        response["Allow"] = "POST"
        return response
    try:
        token = _token(request)
        campaign = _campaign(token, slug)
        records, source = _payload(request)
        _check_records(records)
        batch = inbound_records_import(
            campaign=campaign,
            records=records,
            channel=SourceChannel.API,
            actor=f"api token {token.prefix}",
            source=(source or f"API: {token.name}")[:200],
        )
    except ApiError as exc:
        return _error(exc.status, str(exc))
    except DomainError as exc:  # a delivery-level problem, e.g. no email key at all
        return _error(400, str(exc))
    except Exception:  # a bug: still JSON, and the delivery's transaction wrote nothing
        logger.exception("Lead API request for campaign %r failed", slug)
        return _error(500, "Internal error: nothing was imported. Try again later.")
    return JsonResponse(
        {
            "batch": batch.pk,
            "campaign": campaign.slug,
            "counts": batch.counts(),
            "errors": batch_issues(batch),
        },
        status=201,
    )
