"""A local FCM: the HTTP v1 ``messages:send`` API and a Google OAuth2 token endpoint on 127.0.0.1.

The token endpoint implements the JWT-bearer grant google-auth uses for service accounts (RFC 7523):
it checks the grant type and verifies the signed assertion with the service account's public key,
its issuer, audience (Google's token URI) and scope, then issues a Bearer token. ``messages:send`` accepts
only tokens it issued, checks the documented request shape (string data values, no reserved data
keys, at most 4,096 bytes of notification and data), records every request, and answers
per device token as scripted: success ``{"name": ...}``, ``UNREGISTERED`` (404), an invalid token
(400 ``INVALID_ARGUMENT``), ``SENDER_ID_MISMATCH`` or ``PERMISSION_DENIED`` (403),
``QUOTA_EXCEEDED`` (429 with ``Retry-After``), ``INTERNAL`` (500), or no
answer at all.
"""

from __future__ import annotations

import json
import secrets
from typing import Any, Literal

import jwt

from tests.providers.loopback import LoopbackServer, Recorded

__all__ = ["FCM_SCOPE", "GOOGLE_TOKEN_AUDIENCE", "JWT_BEARER", "Behaviour", "FcmServer", "Recorded"]

FCM_SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
# Google's token endpoint wants its canonical URI as the assertion's audience, wherever it is served.
GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"

Behaviour = Literal[
    "ok", "unregistered", "invalid", "sender_mismatch", "permission_denied", "rate_limited", "internal", "hang"
]
MAX_PAYLOAD_BYTES = 4096
"""FCM's limit for a message's notification and data (https://firebase.google.com/docs/cloud-messaging/concept-options)."""
RESERVED_DATA_KEYS = frozenset({"from", "notification", "message_type"})
RESERVED_DATA_PREFIXES = ("google", "gcm")


class FcmServer(LoopbackServer):
    """Start with ``with FcmServer(project, public_key_pem) as fcm:``; ``fcm.token_uri`` for the key file."""

    # The v1 API and the token endpoint are POST-only, and Google labels its JSON with a charset.
    methods = frozenset({"POST"})
    content_type = "application/json; charset=UTF-8"

    def __init__(self, project_id: str, public_key_pem: bytes, client_email: str) -> None:
        super().__init__("fake-fcm")
        self.project_id = project_id
        self.client_email = client_email
        self._public_key = public_key_pem
        self.issued_tokens: list[str] = []
        self.retry_after = "30"
        self._behaviour: dict[str, Behaviour] = {}
        self._revoked: set[str] = set()
        self._token_endpoint_status = 200

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

    def _answer(self, request: Recorded) -> tuple[int, dict[str, Any], dict[str, str]]:
        if request.path == "/token":
            return self._token(request)
        if request.path == f"/v1/projects/{self.project_id}/messages:send":
            return self._send(request)
        return _google_error(404, "NOT_FOUND", "Requested entity was not found.")

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
        reserved = [k for k in data if k in RESERVED_DATA_KEYS or k.lower().startswith(RESERVED_DATA_PREFIXES)]
        if reserved:
            return _google_error(
                400, "INVALID_ARGUMENT", f"Invalid data payload key: {reserved[0]}", "INVALID_ARGUMENT"
            )
        payload = {key: message[key] for key in ("notification", "data") if key in message}
        if len(json.dumps(payload, separators=(",", ":")).encode()) > MAX_PAYLOAD_BYTES:
            return _google_error(400, "INVALID_ARGUMENT", "Message is too big", "INVALID_ARGUMENT")
        token = message.get("token")
        if not isinstance(token, str) or not token:
            return _google_error(400, "INVALID_ARGUMENT", "Recipient of the message is not set.", "INVALID_ARGUMENT")
        with self._lock:
            behaviour = self._behaviour.get(token, "ok")
        if behaviour == "hang":
            self._hang(10)
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
        if behaviour == "permission_denied":
            return _google_error(403, "PERMISSION_DENIED", "Permission 'cloudmessaging.messages.create' denied")
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
