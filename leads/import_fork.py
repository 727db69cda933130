"""The processes an import forks: one preparing its chunks, one checking a big file whole.

Parsing and normalising a row costs about as much CPU as PostgreSQL spends storing it, and the
GIL keeps a thread from doing it alongside the writer. So a big import (by default one of more
than one chunk; `leads.importing.run_chunks` decides) forks one process that reads the rows,
prepares chunk after chunk and sends each one, pickled, through a pipe, while the importing
process writes the previous one (`prepared_in_child`). The pipe is the backpressure: the child
blocks once a chunk waits unread, so at most about three chunks exist at once (being written,
in the pipe, being prepared). An exception in the child is raised in the parent, after the
chunks before it were written, as if both halves had run in one process; a child that dies
without a word raises `ImportProcessDied`.

A big file's whole-file check (`parsing.scan_file`) runs the same way (`FileCheck`), beside the
import's first chunks; see `leads.importing.run_chunks` for how its verdict gates the commit.

A child never touches the database: it inherits the connection, leaves it alone and ends with
`os._exit`, which runs no cleanup that could close it.
"""

from __future__ import annotations

import gc
import logging
import os
import pickle
import select
import signal
import struct
import traceback
from collections.abc import Callable, Iterator
from contextlib import closing, suppress
from typing import Any, TypeVar

from leads.parsing import ScanResult, SourceFile, scan_file
from ventures.services import DomainError

logger = logging.getLogger(__name__)

T = TypeVar("T")
_HEADER = struct.Struct("!Q")


class ImportProcessDied(RuntimeError):
    """A process an import forked (to prepare rows or to check the file) ended without a word."""


def _send(out, message: tuple) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    out.write(_HEADER.pack(len(data)))
    out.write(data)
    out.flush()


def _receive(source) -> tuple | None:
    header = source.read(_HEADER.size)
    if len(header) < _HEADER.size:
        return None
    (size,) = _HEADER.unpack(header)
    data = source.read(size)
    if len(data) < size:
        return None
    return pickle.loads(data)  # noqa: S301 - our own child process, through our own pipe


def _exit_description(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"


class _Child:
    """A forked process running `work(send)`, whose messages this process reads from a pipe.

    The child never touches the database (it inherits the connection and leaves it alone: it
    ends with os._exit, which runs no cleanup); it stops when the pipe breaks, so it does not
    outlive an import that failed or a parent that was killed. An exception in it is sent back
    (with its traceback, but for an operator's DomainError) and raised by `receive`. `close`
    stops and reaps it if it is still running.
    """

    def __init__(self, work: Callable[[Callable[[tuple], None]], None], *, does: str) -> None:
        self.does = does  # "preparing the rows", for messages
        read_fd, write_fd = os.pipe()
        # Objects that exist before the fork are never collected by the child: moved out of the
        # collector's reach, they are not walked (and so not copied page by page) by its
        # collections.
        gc.freeze()
        pid = os.fork()
        if pid == 0:  # the child: do the work, then leave without running any cleanup
            code = 1
            try:
                os.close(read_fd)
                code = _child_main(work, write_fd)
            finally:
                os._exit(code)
        gc.unfreeze()
        os.close(write_fd)
        self.pid = pid
        self.source = os.fdopen(read_fd, "rb")
        self.finished = False

    def ready(self) -> bool:
        """Whether a message (or the child's end) is waiting to be read; never blocks."""
        return self.finished or bool(select.select([self.source], [], [], 0)[0])

    def receive(self, *, lost: str) -> tuple[str, Any]:
        """The next (kind, payload) the child sent; raises what it raised, or
        ImportProcessDied (ending with `lost`) if it ended without a word."""
        message = _receive(self.source)
        if message is None:
            status = self.wait()
            raise ImportProcessDied(
                f"The process {self.does} stopped unexpectedly ({_exit_description(status)}); "
                f"{lost}."
            )
        kind, payload = message
        if kind == "error":
            exc, detail = payload
            if detail:
                logger.error("%s for an import failed:\n%s", self.does.capitalize(), detail)
            raise exc
        return kind, payload

    def wait(self) -> int:
        _, status = os.waitpid(self.pid, 0)
        self.finished = True
        return status

    def close(self) -> None:
        self.source.close()
        if not self.finished:
            with suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)  # no-op if it already ended
            self.wait()


def _child_main(work: Callable[[Callable[[tuple], None]], None], write_fd: int) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    out = os.fdopen(write_fd, "wb")
    try:
        work(lambda message: _send(out, message))
        return 0
    except BrokenPipeError:
        return 0  # the parent stopped reading: it failed or was killed
    except BaseException as exc:  # everything goes back to the parent
        detail = "" if isinstance(exc, DomainError) else traceback.format_exc()
        try:
            _send(out, ("error", (exc, detail)))
        except Exception:  # the exception itself does not pickle
            _send(out, ("error", (RuntimeError(f"{type(exc).__name__}: {exc}"), detail)))
        return 1


def prepared_in_child(prepare: Callable[[Iterator], T], chunks: Iterator[Iterator]) -> Iterator[T]:
    """`prepare(chunk)` of every chunk, run in a forked process, as this process asks for them
    (see the module's docstring)."""

    def work(send: Callable[[tuple], None]) -> None:
        for records in chunks:
            send(("chunk", prepare(records)))
        send(("end", None))

    with closing(_Child(work, does="preparing the rows")) as child:
        while True:
            kind, payload = child.receive(lost="the chunks before it were imported")
            if kind == "end":
                child.wait()
                return
            yield payload


def use_child(rows_total: int, *, more_than: int) -> bool:
    """Whether an import of `rows_total` rows prepares them in a forked process: only where
    there is fork, and for more rows than `more_than`."""
    return hasattr(os, "fork") and rows_total > more_than


class FileCheck:
    """`scan_file()` of a big file in a forked process, while the import's first chunks are
    written. The caller writes them in one transaction that commits only once the check has
    passed (`run_chunks(check=...)`): a file-level problem still leaves the database as it was,
    but reading the whole file once more no longer delays the first write. Use as a context
    manager: leaving it stops and reaps the process."""

    def __init__(self, info: SourceFile) -> None:
        self.child = _Child(lambda send: send(("ok", scan_file(info))), does="checking the file")

    def __enter__(self) -> FileCheck:
        return self

    def __exit__(self, *exc_info) -> None:
        self.child.close()

    def done(self) -> bool:
        """Whether the verdict is in (never blocks)."""
        return self.child.ready()

    def result(self) -> ScanResult:
        """The scan's result (waits for it); raises its FileProblem."""
        _, scan = self.child.receive(lost="nothing was imported")
        self.child.wait()
        return scan
