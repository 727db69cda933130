"""Streamed downloads (generated CSVs, and files) that stream under either kind of server.

Django serves a `StreamingHttpResponse` chunk by chunk under WSGI only when its iterator is
synchronous, and under ASGI only when it is asynchronous: given the other kind, it reads the
whole body into memory first (and warns). A CSV of a million messages must never be held
whole, whichever server runs the console, so `streamed_response` hands Django the kind the
request's server wants. Under ASGI each chunk is taken from the synchronous iterator in the
request's own thread (`sync_to_async(thread_sensitive=True)`): the database connection, the
transaction and the server-side cursor the iterator holds stay that thread's. `file_response`
does the same for a file: Django's `FileResponse` (a synchronous iterator of blocks, and the
WSGI server's sendfile) under WSGI, the file's blocks read one by one under ASGI.
"""

from __future__ import annotations

import mimetypes
import os
from collections.abc import AsyncIterator, Iterator
from typing import BinaryIO

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIRequest
from django.http import FileResponse, HttpRequest, StreamingHttpResponse
from django.utils.http import content_disposition_header

_END = object()
BLOCK = 64 * 1024


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


def file_response(
    handle: BinaryIO,
    request: HttpRequest | None,
    *,
    filename: str,
    content_type: str | None = None,
) -> StreamingHttpResponse:
    """An attachment streamed from the open file `handle`, closed when the response is."""
    if not isinstance(request, ASGIRequest):  # FileResponse guesses a missing type
        return FileResponse(
            handle, as_attachment=True, filename=filename, content_type=content_type
        )
    content_type = content_type or mimetypes.guess_type(filename)[0] or "application/octet-stream"
    response = streamed_response(
        _blocks(handle), request, filename=filename, content_type=content_type
    )
    response["Content-Length"] = str(os.fstat(handle.fileno()).st_size - handle.tell())
    return response


def _blocks(handle: BinaryIO) -> Iterator[bytes]:
    with handle:
        while block := handle.read(BLOCK):
            yield block
