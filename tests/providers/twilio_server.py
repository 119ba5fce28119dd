"""A local Twilio: the Messages API of ``api.twilio.com/2010-04-01`` on 127.0.0.1, as documented.

It speaks what the real SDK sends (form-encoded POST with HTTP basic auth, JSON answers with the
Message resource's fields and Twilio's error shape ``{code, message, more_info, status}``), records
every request so tests can assert on what the SDK really put on the wire, and can be scripted to
answer the way Twilio does when things go wrong: an error code, 429 with ``Retry-After``, 500, or
no answer at all. After a message is created it can report what became of it, as Twilio does: a
status callback (``delivered``, or ``undelivered``/``failed`` with a 30xxx error code) signed with
the auth token and addressed to exactly the ``StatusCallback`` URL the sender gave
(:meth:`TwilioServer.status_callback`); a message without one gets no callback.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

from tests.providers.loopback import Recorded, ScriptedLoopbackServer, ScriptedReply

__all__ = ["API", "Callback", "Recorded", "Reply", "TwilioServer"]

API = "/2010-04-01"


class Reply(ScriptedReply):
    """A scripted answer for the next Messages POST (``status == 0``: behave normally)."""

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


def _error_body(status: int, code: int, message: str) -> dict[str, Any]:
    return {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


@dataclass(frozen=True)
class Callback:
    """A status callback as Twilio would POST it: to ``url``, these form ``params``, this signature."""

    url: str
    params: dict[str, str]
    signature: str


class TwilioServer(ScriptedLoopbackServer[Reply]):
    """Start with ``with TwilioServer(sid, token) as twilio:``; ``twilio.url`` is the base URL.

    ``script`` answers the next Messages POSTs; a scripted hang then creates the message anyway.
    """

    def __init__(self, account_sid: str, auth_token: str) -> None:
        super().__init__("fake-twilio")
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.messages: list[dict[str, Any]] = []

    def sent(self) -> list[Recorded]:
        """The message-creating requests received (whatever they were answered)."""
        return [r for r in self.requests if r.method == "POST" and r.path.endswith("/Messages.json")]

    def status_callback(self, sid: str, status: str, error_code: int | None = None) -> Callback:
        """The callback Twilio sends when message ``sid`` reaches ``status`` (30xxx codes for failures).

        Raises ``LookupError`` when the message was created without a ``StatusCallback`` URL: then
        Twilio tells nobody, and neither does this fake.
        """
        with self._lock:
            message = next(m for m in self.messages if m["sid"] == sid)
        url = message.get("_status_callback")
        if not url:
            raise LookupError(f"message {sid} has no StatusCallback URL: Twilio sends no callback")
        params = {
            "AccountSid": self.account_sid,
            "ApiVersion": "2010-04-01",
            "From": str(message["from"] or ""),
            "MessageSid": sid,
            "MessageStatus": status,
            "SmsSid": sid,
            "SmsStatus": status,
            "To": str(message["to"]),
        }
        if message.get("messaging_service_sid"):
            params["MessagingServiceSid"] = str(message["messaging_service_sid"])
        if error_code is not None:
            params["ErrorCode"] = str(error_code)
        # https://www.twilio.com/docs/usage/security#validating-requests
        payload = url + "".join(name + params[name] for name in sorted(params))
        digest = hmac.new(self.auth_token.encode(), payload.encode(), hashlib.sha1).digest()
        return Callback(url, params, base64.b64encode(digest).decode())

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
        reply = self._next_reply(Reply.ok())
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
        callback = request.field("StatusCallback")
        if callback is not None and not callback.startswith(("http://", "https://")):
            return 400, _error_body(400, 21609, "Invalid StatusCallback url"), {}
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
            self.messages.append({**resource, "_status_callback": callback})
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
            found = [
                {k: v for k, v in m.items() if not k.startswith("_")} for m in reversed(self.messages) if wanted(m)
            ][:page_size]
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
