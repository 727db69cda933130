"""An HTTP server on loopback that answers like Postmark's send API (`POST /email`), for
live-mode tests through django-anymail's real Postmark backend.

    with PostmarkApi() as api:                 # or the `postmark_api` fixture
        settings.ANYMAIL = api.anymail_settings()
        api.answer_next(429)                   # or 500, 401, "inactive", "slow"
        ...
        api.requests                           # the JSON bodies it was sent

Answers follow Postmark's documented formats: 200 with a MessageID, 422 with ErrorCode 406
for an inactive recipient (a past hard bounce or complaint), an error body for 401, 429 and
500. "slow" sleeps past the client's timeout before answering.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SLOW_SECONDS = 2.0


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, *args) -> None:  # quiet
        return None

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        api = self.server.api
        with api.lock:
            api.requests.append(body)
            answer = api.answers.popleft() if api.answers else 200
        if answer == "slow":
            time.sleep(SLOW_SECONDS)
            answer = 200
        to = body.get("To", "")
        if answer == 200:
            status, reply = 200, {
                "To": to, "SubmittedAt": "2026-12-03T09:00:00Z", "ErrorCode": 0,
                "Message": "OK", "MessageID": str(uuid.uuid4()),
            }  # fmt: skip
        elif answer == "inactive":
            status, reply = (
                422,
                {
                    "ErrorCode": 406,
                    "Message": "You tried to send to recipient(s) that have been marked as "
                    f"inactive. Found inactive addresses: {to}. Inactive recipients are ones that "
                    "have generated a hard bounce, a spam complaint, or a manual suppression.",
                },
            )
        else:
            status, reply = answer, {"ErrorCode": 10 if answer == 401 else 0,
                                     "Message": f"Error {answer}"}  # fmt: skip
        data = json.dumps(reply).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    api: PostmarkApi


class PostmarkApi:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: list[dict] = []
        self.answers: deque = deque()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.api = self
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> PostmarkApi:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def anymail_settings(self, *, timeout: float = 0.5) -> dict:
        return {
            "POSTMARK_SERVER_TOKEN": "test-server-token",
            "POSTMARK_API_URL": self.url,
            "REQUESTS_TIMEOUT": timeout,
        }

    def answer_next(self, *answers) -> None:
        """The next calls' answers, in order: an HTTP status, "inactive" or "slow"."""
        with self.lock:
            self.answers.extend(answers)
