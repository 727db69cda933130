"""Streamed downloads that stream under either kind of server.

Django serves a `StreamingHttpResponse` chunk by chunk under WSGI only when its iterator is
synchronous, and under ASGI only when it is asynchronous: given the other kind, it reads the
whole body into memory first (and warns). A CSV of a million messages must never be held
whole, whichever server runs the console, so `streamed_response` hands Django the kind the
request's server wants. Under ASGI each chunk is taken from the synchronous iterator in the
request's own thread (`sync_to_async(thread_sensitive=True)`): the database connection, the
transaction and the server-side cursor the iterator holds stay that thread's.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, StreamingHttpResponse
from django.utils.http import content_disposition_header

_END = object()


def streamed_response(
    chunks: Iterator[bytes],
    request: HttpRequest | None,
    *,
    filename: str,
    content_type: str = "text/csv; charset=utf-8",
) -> StreamingHttpResponse:
    """An attachment streamed from `chunks` (asynchronously for a request served by ASGI)."""
    body = _async_chunks(chunks) if isinstance(request, ASGIRequest) else chunks
    response = StreamingHttpResponse(body, content_type=content_type)
    response["Content-Disposition"] = content_disposition_header(
        as_attachment=True, filename=filename
    )
    return response


async def _async_chunks(chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
    take = sync_to_async(next, thread_sensitive=True)
    try:
        while (chunk := await take(chunks, _END)) is not _END:
            yield chunk
    finally:
        close = getattr(chunks, "close", None)  # a download abandoned half way
        if close is not None:
            await sync_to_async(close, thread_sensitive=True)()
