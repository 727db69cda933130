"""Downloads stream under either server (`ventures.http`): under ASGI, Django reads a
synchronous iterator whole before sending a byte (and warns), so an ASGI request is given an
asynchronous one; under WSGI the response is what it was."""

from __future__ import annotations

import warnings

from asgiref.sync import async_to_sync
from django.http import FileResponse
from django.test import AsyncRequestFactory, RequestFactory

from ventures.http import BLOCK, file_response, streamed_response


def read_async(response) -> list[bytes]:
    async def read() -> list[bytes]:
        return [chunk async for chunk in response]

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "must consume synchronous iterators" would raise
        return async_to_sync(read)()


def test_a_file_streams_block_by_block_under_asgi_and_is_closed_at_the_end(tmp_path):
    path = tmp_path / "bundle.zip"
    path.write_bytes(bytes(range(256)) * (BLOCK // 256 * 3 + 7))  # three blocks and a bit
    handle = path.open("rb")
    response = file_response(handle, AsyncRequestFactory().get("/"), filename="bundle.zip")
    assert response.is_async
    assert response["Content-Length"] == str(path.stat().st_size)
    assert response["Content-Type"] == "application/zip"
    assert response["Content-Disposition"] == 'attachment; filename="bundle.zip"'
    blocks = read_async(response)
    assert len(blocks) == 4 and b"".join(blocks) == path.read_bytes()
    assert handle.closed


def test_under_wsgi_a_file_is_djangos_file_response(tmp_path):
    path = tmp_path / "report.pdf"
    path.write_bytes(b"%PDF-1.7 ...")
    with path.open("rb") as handle:
        response = file_response(handle, RequestFactory().get("/"), filename="report.pdf")
        assert isinstance(response, FileResponse) and not response.is_async
        assert b"".join(response.streaming_content) == b"%PDF-1.7 ..."


def test_a_download_abandoned_under_asgi_closes_its_iterator():
    closed = []

    def chunks():
        try:
            yield from (b"a", b"b", b"c")
        finally:
            closed.append(True)

    response = streamed_response(chunks(), AsyncRequestFactory().get("/"), filename="x.csv")

    async def first_then_leave() -> bytes:
        parts = aiter(response.streaming_content)
        first = await anext(parts)
        await parts.aclose()  # the client went away
        return first

    assert async_to_sync(first_then_leave)() == b"a"
    assert closed == [True]
