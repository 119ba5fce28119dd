"""A local Twilio: the Messages API of ``api.twilio.com/2010-04-01`` on 127.0.0.1, as documented.

It speaks what the real SDK sends (form-encoded POST with HTTP basic auth, JSON answers with the
Message resource's fields and Twilio's error shape ``{code, message, more_info, status}``), records
every request so tests can assert on what the SDK really put on the wire, and can be scripted to
answer the way Twilio does when things go wrong: an error code, 429 with ``Retry-After``, 500, or
no answer at all.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

API = "/2010-04-01"


@dataclass(frozen=True)
class Recorded:
    """One request as it arrived."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    basic_auth: tuple[str, str] | None

    @property
    def form(self) -> dict[str, list[str]]:
        return parse_qs(self.body.decode(), keep_blank_values=True)

    def field(self, name: str) -> str | None:
        values = self.form.get(name)
        return values[0] if values else None


@dataclass(frozen=True)
class Reply:
    """A scripted answer for the next Messages POST (``status == 0``: behave normally)."""

    status: int = 0
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    hang_seconds: float = 0.0

    @classmethod
    def ok(cls) -> Reply:
        return cls()

    @classmethod
    def error(cls, status: int, code: int, message: str) -> Reply:
        return cls(status, _error_body(status, code, message))

    @classmethod
    def rate_limited(cls, retry_after: str) -> Reply:
        return cls(429, _error_body(429, 20429, "Too Many Requests"), {"Retry-After": retry_after})

    @classmethod
    def server_error(cls) -> Reply:
        return cls(500, _error_body(500, 20500, "Internal Server Error"))

    @classmethod
    def hang(cls, seconds: float) -> Reply:
        return cls(hang_seconds=seconds)


def _error_body(status: int, code: int, message: str) -> dict[str, Any]:
    return {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


class TwilioServer:
    """Start with ``with TwilioServer(sid, token) as twilio:``; ``twilio.url`` is the base URL."""

    def __init__(self, account_sid: str, auth_token: str) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.requests: list[Recorded] = []
        self.messages: list[dict[str, Any]] = []
        self._script: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-twilio", daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def script(self, *replies: Reply) -> None:
        """Answer the next Messages POSTs with these, in order; then behave normally again."""
        with self._lock:
            self._script.extend(replies)

    def sent(self) -> list[Recorded]:
        """The message-creating requests received (whatever they were answered)."""
        return [r for r in self.requests if r.method == "POST" and r.path.endswith("/Messages.json")]

    def __enter__(self) -> TwilioServer:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._closing.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    # --- the HTTP side ---------------------------------------------------------------------------

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
                return

            def do_POST(self) -> None:
                server._dispatch(self, "POST")

            def do_GET(self) -> None:
                server._dispatch(self, "GET")

        return Handler

    def _dispatch(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        parts = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        recorded = Recorded(
            method=method,
            path=parts.path,
            query=parse_qs(parts.query, keep_blank_values=True),
            headers={k: v for k, v in handler.headers.items()},
            body=body,
            basic_auth=_basic_auth(handler.headers.get("Authorization")),
        )
        with self._lock:
            self.requests.append(recorded)
        status, payload, headers = self._answer(recorded)
        data = json.dumps(payload).encode()
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(data)))
            for name, value in headers.items():
                handler.send_header(name, value)
            handler.end_headers()
            handler.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up waiting (a "hang" reply)
            handler.close_connection = True

    def _answer(self, request: Recorded) -> tuple[int, dict[str, Any], dict[str, str]]:
        messages_path = f"{API}/Accounts/{self.account_sid}/Messages.json"
        if request.basic_auth != (self.account_sid, self.auth_token):
            return (
                401,
                _error_body(401, 20003, "Authenticate"),
                {"WWW-Authenticate": 'Basic realm="Twilio API"'},
            )
        if request.path != messages_path:
            return 404, _error_body(404, 20404, "The requested resource was not found"), {}
        if request.method == "GET":
            return 200, self._list(request), {}
        with self._lock:
            reply = self._script.popleft() if self._script else Reply.ok()
        if reply.hang_seconds:
            self._closing.wait(reply.hang_seconds)
        if reply.status:
            return reply.status, reply.body or {}, reply.headers
        return self._create(request)

    def _create(self, request: Recorded) -> tuple[int, dict[str, Any], dict[str, str]]:
        if not (request.headers.get("Content-Type") or "").startswith("application/x-www-form-urlencoded"):
            return 400, _error_body(400, 20001, "Content-Type must be application/x-www-form-urlencoded"), {}
        to, body = request.field("To"), request.field("Body")
        sender, service = request.field("From"), request.field("MessagingServiceSid")
        if not to:
            return 400, _error_body(400, 21604, "A 'To' phone number is required."), {}
        if not body:
            return 400, _error_body(400, 21602, "Message body is required."), {}
        if not sender and not service:
            return 400, _error_body(400, 21603, "A 'From' or 'MessagingServiceSid' parameter is required"), {}
        if len(body) > 1600:
            return (
                400,
                _error_body(400, 21617, "The concatenated message body exceeds the 1600 character limit."),
                {},
            )
        sid = "SM" + secrets.token_hex(16)
        now = format_datetime(datetime.now(UTC))
        resource = {
            "account_sid": self.account_sid,
            "api_version": "2010-04-01",
            "body": body,
            "date_created": now,
            "date_sent": None,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": sender,
            "messaging_service_sid": service,
            "num_media": "0",
            "num_segments": "1",
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            "status": "accepted" if service else "queued",
            "subresource_uris": {"media": f"{API}/Accounts/{self.account_sid}/Messages/{sid}/Media.json"},
            "to": to,
            "uri": f"{API}/Accounts/{self.account_sid}/Messages/{sid}.json",
        }
        with self._lock:
            self.messages.append(resource)
        return 201, resource, {}

    def _list(self, request: Recorded) -> dict[str, Any]:
        def wanted(message: dict[str, Any]) -> bool:
            for name, key in (("To", "to"), ("From", "from")):
                value = request.query.get(name, [None])[0]
                if value is not None and message[key] != value:
                    return False
            return True

        page_size = int(request.query.get("PageSize", ["50"])[0])
        with self._lock:
            found = [m for m in reversed(self.messages) if wanted(m)][:page_size]
        uri = f"{API}/Accounts/{self.account_sid}/Messages.json"
        return {
            "end": max(len(found) - 1, 0),
            "first_page_uri": f"{uri}?PageSize={page_size}&Page=0",
            "messages": found,
            "next_page_uri": None,
            "page": 0,
            "page_size": page_size,
            "previous_page_uri": None,
            "start": 0,
            "uri": f"{uri}?PageSize={page_size}&Page=0",
        }


def _basic_auth(header: str | None) -> tuple[str, str] | None:
    if not header or not header.startswith("Basic "):
        return None
    user, _, password = base64.b64decode(header.removeprefix("Basic ")).decode().partition(":")
    return user, password
