"""A local FCM: the HTTP v1 ``messages:send`` API and a Google OAuth2 token endpoint on 127.0.0.1.

The token endpoint implements the JWT-bearer grant google-auth uses for service accounts (RFC 7523):
it checks the grant type and verifies the signed assertion with the service account's public key,
its issuer, audience (Google's token URI) and scope, then issues a Bearer token. ``messages:send`` accepts
only tokens it issued, checks the documented request shape, records every request, and answers
per device token as scripted: success ``{"name": ...}``, ``UNREGISTERED`` (404), an invalid token
(400 ``INVALID_ARGUMENT``), ``QUOTA_EXCEEDED`` (429 with ``Retry-After``), ``INTERNAL`` (500), or no
answer at all.
"""

from __future__ import annotations

import json
import secrets
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

import jwt

FCM_SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
# Google's token endpoint wants its canonical URI as the assertion's audience, wherever it is served.
GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"

Behaviour = Literal["ok", "unregistered", "invalid", "sender_mismatch", "rate_limited", "internal", "hang"]


@dataclass(frozen=True)
class Recorded:
    """One request as it arrived."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def form(self) -> dict[str, list[str]]:
        return parse_qs(self.body.decode(), keep_blank_values=True)


class FcmServer:
    """Start with ``with FcmServer(project, public_key_pem) as fcm:``; ``fcm.token_uri`` for the key file."""

    def __init__(self, project_id: str, public_key_pem: bytes, client_email: str) -> None:
        self.project_id = project_id
        self.client_email = client_email
        self._public_key = public_key_pem
        self.requests: list[Recorded] = []
        self.issued_tokens: list[str] = []
        self.retry_after = "30"
        self._behaviour: dict[str, Behaviour] = {}
        self._revoked: set[str] = set()
        self._token_endpoint_status = 200
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-fcm", daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def token_uri(self) -> str:
        return f"{self.url}/token"

    def answer(self, device_token: str, behaviour: Behaviour) -> None:
        """How ``messages:send`` answers for this device token from now on (default ``ok``)."""
        with self._lock:
            self._behaviour[device_token] = behaviour

    def revoke_access_tokens(self) -> None:
        """Make every access token issued so far invalid (as if it expired early)."""
        with self._lock:
            self._revoked.update(self.issued_tokens)

    def fail_token_endpoint(self, status: int) -> None:
        """Answer the token endpoint with this status (e.g. 400 ``invalid_grant``); 200 to heal."""
        self._token_endpoint_status = status

    def sends(self) -> list[Recorded]:
        return [r for r in self.requests if r.path.endswith("/messages:send")]

    def token_requests(self) -> list[Recorded]:
        return [r for r in self.requests if r.path == "/token"]

    def __enter__(self) -> FcmServer:
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
                server._dispatch(self)

        return Handler

    def _dispatch(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        recorded = Recorded(
            method="POST",
            path=urlsplit(handler.path).path,
            headers={k: v for k, v in handler.headers.items()},
            body=handler.rfile.read(length) if length else b"",
        )
        with self._lock:
            self.requests.append(recorded)
        if recorded.path == "/token":
            status, payload, headers = self._token(recorded)
        elif recorded.path == f"/v1/projects/{self.project_id}/messages:send":
            status, payload, headers = self._send(recorded)
        else:
            status, payload, headers = _google_error(404, "NOT_FOUND", "Requested entity was not found.")
        data = json.dumps(payload).encode()
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", "application/json; charset=UTF-8")
            handler.send_header("Content-Length", str(len(data)))
            for name, value in headers.items():
                handler.send_header(name, value)
            handler.end_headers()
            handler.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up waiting
            handler.close_connection = True

    def _token(self, request: Recorded) -> tuple[int, dict[str, Any], dict[str, str]]:
        if self._token_endpoint_status != 200:
            return (
                self._token_endpoint_status,
                {"error": "invalid_grant", "error_description": "scripted"},
                {},
            )
        form = request.form
        if form.get("grant_type") != [JWT_BEARER]:
            return 400, {"error": "unsupported_grant_type", "error_description": "Invalid grant_type"}, {}
        try:
            claims = jwt.decode(
                form.get("assertion", [""])[0],
                self._public_key,
                algorithms=["RS256"],
                audience=GOOGLE_TOKEN_AUDIENCE,
                issuer=self.client_email,
            )
        except jwt.PyJWTError as exc:
            return 400, {"error": "invalid_grant", "error_description": f"Invalid JWT Signature: {exc}"}, {}
        if FCM_SCOPE not in str(claims.get("scope", "")).split():
            return (
                400,
                {"error": "invalid_scope", "error_description": "firebase.messaging scope missing"},
                {},
            )
        token = "ya29.fake-" + secrets.token_urlsafe(24)
        with self._lock:
            self.issued_tokens.append(token)
        return 200, {"access_token": token, "expires_in": 3599, "token_type": "Bearer"}, {}

    def _send(self, request: Recorded) -> tuple[int, dict[str, Any], dict[str, str]]:
        bearer = request.headers.get("Authorization", "").removeprefix("Bearer ")
        with self._lock:
            authorised = bearer in self.issued_tokens and bearer not in self._revoked
        if not authorised:
            return _google_error(401, "UNAUTHENTICATED", "Request had invalid authentication credentials.", None)
        try:
            message = request.json["message"]
        except (ValueError, KeyError, TypeError):
            return _google_error(400, "INVALID_ARGUMENT", "Invalid JSON payload received.", "INVALID_ARGUMENT")
        data = message.get("data", {})
        if not all(isinstance(value, str) for value in data.values()):
            return _google_error(400, "INVALID_ARGUMENT", "Invalid value at 'message.data'", "INVALID_ARGUMENT")
        token = message.get("token")
        if not isinstance(token, str) or not token:
            return _google_error(400, "INVALID_ARGUMENT", "Recipient of the message is not set.", "INVALID_ARGUMENT")
        with self._lock:
            behaviour = self._behaviour.get(token, "ok")
        if behaviour == "hang":
            self._closing.wait(10)
        if behaviour == "unregistered":
            return _google_error(404, "NOT_FOUND", "Requested entity was not found.", "UNREGISTERED")
        if behaviour == "invalid":
            return _google_error(
                400,
                "INVALID_ARGUMENT",
                "The registration token is not a valid FCM registration token",
                "INVALID_ARGUMENT",
            )
        if behaviour == "sender_mismatch":
            return _google_error(403, "PERMISSION_DENIED", "SenderId mismatch", "SENDER_ID_MISMATCH")
        if behaviour == "rate_limited":
            status, payload, _ = _google_error(429, "RESOURCE_EXHAUSTED", "Quota exceeded.", "QUOTA_EXCEEDED")
            return status, payload, {"Retry-After": self.retry_after}
        if behaviour == "internal":
            return _google_error(500, "INTERNAL", "Internal error encountered.", "INTERNAL")
        return 200, {"name": f"projects/{self.project_id}/messages/{secrets.randbelow(10**16)}"}, {}


def _google_error(
    code: int, status: str, message: str, fcm_code: str | None = None
) -> tuple[int, dict[str, Any], dict[str, str]]:
    error: dict[str, Any] = {"code": code, "message": message, "status": status}
    if fcm_code:
        error["details"] = [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": fcm_code}]
    return code, {"error": error}, {}
