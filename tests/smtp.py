"""A real SMTP server on loopback (aiosmtpd, in a thread) that records what it accepts and
misbehaves on request, for live-mode tests and the dispatch benchmark.

    sink = SmtpSink().start()          # or the `smtp_sink` fixture of the root conftest
    mailbox.connection_url = sink.url  # smtp://127.0.0.1:<free port>
    sink.fail_next("RCPT", 451, times=2)   # or "MAIL", "DATA"; 421, 451, 550, 553, ...
    sink.drop_next_data()              # cut the line after the message, before the reply
    sink.data_delay = 0.01             # answer each DATA 10 ms late (a slow server)
    ...
    sink.messages                      # what it accepted: envelope and raw bytes
    sink.connections                   # how many SMTP connections were opened

A 421 answer closes the connection afterwards, as a real server does ("closing transmission
channel"). A dropped DATA has been received whole but never answered, so the client cannot
know whether it was delivered; it is recorded in `dropped`, not in `messages`.
"""

from __future__ import annotations

import asyncio
import email
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP

# aiosmtpd logs every command at INFO: the tests' output would drown in it.
logging.getLogger("mail.log").setLevel(logging.WARNING)

REPLIES = {
    421: "421 4.3.2 Service not available, closing transmission channel",
    451: "451 4.3.0 Temporary failure, try again later",
    452: "452 4.2.2 Mailbox full",
    550: "550 5.1.1 No such user here",
    553: "553 5.7.1 Sender address rejected: not owned by user",
    554: "554 5.7.1 Message rejected",
}


@dataclass(frozen=True)
class Received:
    """One message the sink accepted (or, in `dropped`, took whole and never answered)."""

    connection: int  # 1 for the first connection the sink counted, then 2, ...
    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes  # exactly as received, dot-unstuffed
    received_at: float = 0.0  # time.monotonic() when the sink took it (this process's clock)

    @property
    def email(self) -> EmailMessage:
        return email.message_from_bytes(self.data, policy=policy.default)


class _Handler:
    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        reply = self.sink._next_failure("MAIL")
        if reply is not None:
            self.sink.refused.append(("MAIL", reply, address))
            return self._answer(server, reply)
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        reply = self.sink._next_failure("RCPT")
        if reply is not None:
            self.sink.refused.append(("RCPT", reply, address))
            return self._answer(server, reply)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.sink.data_delay:
            await asyncio.sleep(self.sink.data_delay)  # a slow server: a batch takes a while
        received = Received(
            connection=session.number,
            mail_from=envelope.mail_from,
            rcpt_tos=tuple(envelope.rcpt_tos),
            data=bytes(envelope.original_content),
            received_at=time.monotonic(),
        )
        with self.sink._lock:
            drop = self.sink._drops > 0
            self.sink._drops -= drop
        if drop:
            self.sink.dropped.append(received)
            # Cut the line and end the session: the reply never leaves.
            server.transport.abort()
            raise asyncio.CancelledError
        reply = self.sink._next_failure("DATA")
        if reply is not None:
            self.sink.refused.append(("DATA", reply, ",".join(envelope.rcpt_tos)))
            return self._answer(server, reply)
        self.sink.messages.append(received)
        return "250 OK: queued"

    @staticmethod
    def _answer(server, reply: str) -> str:
        if reply.startswith("421"):
            # After the reply is flushed (close() flushes the write buffer first).
            asyncio.get_running_loop().call_soon(server.transport.close)
        return reply


class _CountingSMTP(SMTP):
    def __init__(self, *args, sink: SmtpSink, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.sink = sink

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        with self.sink._lock:
            self.sink.connections += 1
            self.session.number = self.sink.connections


class _Controller(Controller):
    def __init__(self, sink: SmtpSink, **kwargs) -> None:
        super().__init__(_Handler(sink), **kwargs)
        self.sink = sink

    def factory(self) -> SMTP:
        return _CountingSMTP(self.handler, sink=self.sink, **self.SMTP_kwargs)

    def _trigger_server(self) -> None:
        # Bound to port 0: the kernel chose a free port; connect to that one.
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


class SmtpSink:
    """An SMTP server on 127.0.0.1 and a free port, in a thread of this process."""

    host = "127.0.0.1"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._controller = _Controller(self, hostname=self.host, port=0, ready_timeout=10)
        self.port = 0
        self.reset()

    def start(self) -> SmtpSink:
        self._controller.start()
        self.port = self._controller.port
        self.reset()  # the controller's own start-up connection does not count
        return self

    def stop(self) -> None:
        self._controller.stop()

    def __enter__(self) -> SmtpSink:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The connection URL of a mailbox (or EMAIL_URL) that sends here."""
        return f"smtp://{self.host}:{self.port}"

    def reset(self) -> None:
        """Forget what was received and every pending misbehaviour."""
        with self._lock:
            self.messages: list[Received] = []
            self.dropped: list[Received] = []
            self.refused: list[tuple[str, str, str]] = []  # (command, reply, recipients)
            self.connections = 0
            self.data_delay = 0.0  # seconds before each DATA is answered
            self._failures: dict[str, deque[str]] = {
                "MAIL": deque(),
                "RCPT": deque(),
                "DATA": deque(),
            }
            self._drops = 0

    def fail_next(self, command: str, code: int, *, times: int = 1) -> None:
        """Answer `code` (421, 451, 550, ...) to the next `times` MAIL, RCPT or DATA commands."""
        with self._lock:
            self._failures[command.upper()].extend([REPLIES.get(code, f"{code} Error")] * times)

    def drop_next_data(self, *, times: int = 1) -> None:
        """Take the next `times` messages whole, then drop the connection without a reply."""
        with self._lock:
            self._drops += times

    def _next_failure(self, command: str) -> str | None:
        with self._lock:
            queue = self._failures[command]
            return queue.popleft() if queue else None

    def recipients(self) -> list[str]:
        """Every recipient of every accepted message, in arrival order (repeats included)."""
        return [rcpt for message in self.messages for rcpt in message.rcpt_tos]
