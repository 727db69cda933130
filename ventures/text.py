"""The one boundary rule for text: what PostgreSQL cannot store is refused, with its reason.

PostgreSQL text cannot hold the NUL character (U+0000), and no UTF-8 database can hold a lone
surrogate (U+D800..U+DFFF, which a JSON "\\ud800" escape produces): the driver raises at write
time, a 500 or a traceback. SQLite would store both, so checking here keeps the two databases
identical. Every way in (forms, query parameters through `QueryTextMiddleware`, JSON, campaign
files, template sources, rendered messages) calls `text_problem` or a helper below before
anything is written.

The rule refuses, never cleans: a NUL or a lone surrogate is never typed by a person, and
silently changing the value would store something nobody sent. (The one cleaning is Django's,
not ours: form and query bytes that are not UTF-8 decode as U+FFFD, which can be stored.)
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
MAX_NESTING = 32  # structures deeper than this are not walked (and are refused)


def text_problem(value: str) -> str | None:
    """Why `value` cannot be stored ("contains a NUL character (U+0000) at position 3"), or None.

    Cheap for clean text: one regular-expression search."""
    match = _UNSTORABLE.search(value)
    if match is None:
        return None
    char = match.group()
    what = "a NUL character" if char == "\x00" else "a lone surrogate"
    return f"contains {what} (U+{ord(char):04X}) at position {match.start() + 1}"


def _walk(value: Any, path: tuple, depth: int) -> Iterator[tuple[tuple, str]]:
    if depth > MAX_NESTING:
        yield path, f"is nested more than {MAX_NESTING} levels deep"
        return
    if isinstance(value, str):
        if (problem := text_problem(value)) is not None:
            yield path, problem
    elif isinstance(value, Mapping):
        for key, item in value.items():
            if isinstance(key, str) and (problem := text_problem(key)) is not None:
                yield path, f"the key {described(key)} {problem}"
            yield from _walk(item, (*path, key), depth + 1)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from _walk(item, (*path, index), depth + 1)


def data_text_problem(value: Any) -> tuple[tuple, str] | None:
    """The first (key path, problem) among every string and mapping key of parsed data (JSON,
    TOML), or None. Paths are the keys and list indexes leading to the value."""
    return next(_walk(value, (), 0), None)


def described(value: str) -> str:
    """`value` quoted and safe to show: a lone surrogate cannot be encoded for output."""
    return ascii(value) if text_problem(value) else repr(value)


def validate_storable_text(value: Any) -> None:
    """A Django validator: ValidationError (code "unstorable_text") for text PostgreSQL cannot
    store. Django's own CharField already refuses NUL; this adds lone surrogates and serves the
    fields and values that are not CharFields."""
    if isinstance(value, str) and (problem := text_problem(value)) is not None:
        raise ValidationError(
            f"This text {problem}, which cannot be stored.", code="unstorable_text"
        )


def query_text_problem(params: Mapping[str, Any]) -> str | None:
    """The first problem among a QueryDict's keys and values ("utm_source: contains ..."), or
    None. Query strings reach the database (UTM parameters, admin searches) without a form."""
    lists = params.lists() if hasattr(params, "lists") else ((k, [v]) for k, v in params.items())
    for key, values in lists:
        if (problem := text_problem(key)) is not None:
            return f"a parameter name {problem}"
        for value in values:
            if isinstance(value, str) and (problem := text_problem(value)) is not None:
                return f"{described(key)} {problem}"
    return None


class QueryTextMiddleware:
    """Answers 400, naming the parameter and the character, to a query string with text that
    cannot be stored, before any view runs: admin filters (`?status=%00`), searches and UTM
    parameters of capture links reach the database without a form field in between. JSON
    requests get the API's {"error": ...} body. Form bodies are left to the forms (Django's
    CharField refuses NUL; browsers cannot send lone surrogates, they decode as U+FFFD)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        problem = query_text_problem(request.GET) if request.META.get("QUERY_STRING") else None
        if problem is None:
            return self.get_response(request)
        message = f"Bad request: the query parameter {problem}, which cannot be stored."
        if request.content_type == "application/json":
            return JsonResponse({"error": message}, status=400)
        return HttpResponseBadRequest(message, content_type="text/plain; charset=utf-8")
