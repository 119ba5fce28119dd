"""What every fake provider server shares: an HTTP server on 127.0.0.1 that records and answers.

The fakes (SendGrid, Twilio, FCM) differ only in the protocol they speak; starting and stopping a
server on a free port, recording each request as it arrived, sending a JSON answer and surviving a
client that gave up waiting are the same for all of them and live here, so that each fake module
reads as a description of its provider's API and nothing else.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, ClassVar, Generic, Self, TypeVar
from urllib.parse import parse_qs, urlsplit

# (status, JSON body or None for an empty body, extra response headers)
Answer = tuple[int, dict[str, Any] | None, dict[str, str]]


@dataclass(frozen=True)
class Recorded:
    """One request as it arrived, so that tests assert on what the SDK really put on the wire."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    received_at: float = field(default_factory=time.monotonic)  # when it arrived: what pacing tests measure

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def form(self) -> dict[str, list[str]]:
        return parse_qs(self.body.decode(), keep_blank_values=True)

    def field(self, name: str) -> str | None:
        """The first value of a form field, as a provider reading a form-encoded body sees it."""
        values = self.form.get(name)
        return values[0] if values else None

    def header(self, name: str) -> str | None:
        """A header by name, ignoring case as HTTP does (``headers`` keeps the sender's spelling)."""
        wanted = name.lower()
        return next((value for key, value in self.headers.items() if key.lower() == wanted), None)

    @property
    def basic_auth(self) -> tuple[str, str] | None:
        """The HTTP basic credentials sent, if any."""
        header = self.header("Authorization")
        if not header or not header.startswith("Basic "):
            return None
        user, _, password = base64.b64decode(header.removeprefix("Basic ")).decode().partition(":")
        return user, password


@dataclass(frozen=True)
class ScriptedReply:
    """A scripted answer for the next scripted request (``status == 0``: behave normally).

    Providers subclass this only to add constructors that build their own error shapes.
    """

    status: int = 0
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    hang_seconds: float = 0.0

    @classmethod
    def hang(cls, seconds: float) -> Self:
        """Say nothing for ``seconds`` (the client times out), then answer as if unscripted."""
        return cls(hang_seconds=seconds)


ReplyT = TypeVar("ReplyT", bound=ScriptedReply)


class LoopbackServer(ABC):
    """A threaded HTTP server on a free loopback port; a subclass answers by implementing ``_answer``.

    Use it as a context manager: entering starts serving, leaving stops it (and releases any request
    left hanging), so a test can also leave early to make the provider unreachable.
    """

    methods: ClassVar[frozenset[str]] = frozenset({"GET", "POST"})
    content_type: ClassVar[str] = "application/json"

    def __init__(self, name: str) -> None:
        self.requests: list[Recorded] = []
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name=name, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._closing.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    @abstractmethod
    def _answer(self, request: Recorded) -> Answer:
        """The provider's answer to one request (already recorded)."""

    def _hang(self, seconds: float) -> None:
        """Answer nothing for a while, but let the server stop at once rather than wait it out."""
        self._closing.wait(seconds)

    # --- the HTTP side ---------------------------------------------------------------------------

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
                return

            def do_GET(self) -> None:
                server._handle(self, "GET")

            def do_POST(self) -> None:
                server._handle(self, "POST")

        return Handler

    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        if method not in self.methods:  # what http.server says for a method with no do_ handler
            handler.send_error(HTTPStatus.NOT_IMPLEMENTED, f"Unsupported method ({method!r})")
            return
        parts = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        recorded = Recorded(
            method=method,
            path=parts.path,
            query=parse_qs(parts.query, keep_blank_values=True),
            headers=dict(handler.headers.items()),
            body=handler.rfile.read(length) if length else b"",
        )
        with self._lock:
            self.requests.append(recorded)
        status, payload, headers = self._answer(recorded)
        data = json.dumps(payload).encode() if payload is not None else b""
        try:
            handler.send_response(status)
            if payload is not None:
                handler.send_header("Content-Type", self.content_type)
            handler.send_header("Content-Length", str(len(data)))
            for name, value in headers.items():
                handler.send_header(name, value)
            handler.end_headers()
            handler.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up waiting (a hanging answer)
            handler.close_connection = True


class ScriptedLoopbackServer(LoopbackServer, Generic[ReplyT]):
    """A loopback server whose next answers a test can script, to play the provider's failures."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._script: deque[ReplyT] = deque()

    def script(self, *replies: ReplyT) -> None:
        """Answer the next scripted requests with these, in order; then behave normally again."""
        with self._lock:
            self._script.extend(replies)

    def _next_reply(self, default: ReplyT) -> ReplyT:
        """Take the next scripted reply (``default`` when none is left), after any hang it asks for."""
        with self._lock:
            reply = self._script.popleft() if self._script else default
        if reply.hang_seconds:
            self._hang(reply.hang_seconds)
        return reply
