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
import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any
from urllib.parse import urlsplit

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
    """A webhook request Twilio makes to us (a status callback, an inbound message), signed as Twilio
    signs it (HMAC-SHA1 over the URL and the sorted form)."""

    url: str
    params: dict[str, str]
    signature: str

    @property
    def path_and_query(self) -> str:
        parts = urlsplit(self.url)
        return f"{parts.path}?{parts.query}" if parts.query else parts.path


class TwilioServer(ScriptedLoopbackServer[Reply]):
    """Start with ``with TwilioServer(sid, token) as twilio:``; ``twilio.url`` is the base URL.

    ``script`` answers the next Messages POSTs; a scripted hang then creates the message anyway.
    """

    def __init__(self, account_sid: str, auth_token: str) -> None:
        super().__init__("fake-twilio")
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.messages: list[dict[str, Any]] = []
        self.whatsapp = WhatsApp(self)

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
        if (to or "").startswith(WHATSAPP) or (sender or "").startswith(WHATSAPP):
            return self.whatsapp.create(request)
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
        resource = self.message_resource(to, sender, body, service, callback)
        return 201, resource, {}

    def message_resource(
        self, to: str, sender: str | None, body: str | None, service: str | None, callback: str | None = None
    ) -> dict[str, Any]:
        """A new outbound Message resource as the API returns it (queued), recorded with its StatusCallback."""
        sid = "SM" + secrets.token_hex(16)
        now = format_datetime(datetime.now(UTC))
        resource = {
            "account_sid": self.account_sid, "api_version": "2010-04-01", "body": body,
            "date_created": now, "date_sent": None, "date_updated": now, "direction": "outbound-api",
            "error_code": None, "error_message": None, "from": sender, "messaging_service_sid": service,
            "num_media": "0", "num_segments": "1", "price": None, "price_unit": "USD", "sid": sid,
            "status": "accepted" if service else "queued", "to": to,
            "subresource_uris": {"media": f"{API}/Accounts/{self.account_sid}/Messages/{sid}/Media.json"},
            "uri": f"{API}/Accounts/{self.account_sid}/Messages/{sid}.json",
        }
        with self._lock:
            self.messages.append({**resource, "_status_callback": callback})
        return resource

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


# --- WhatsApp ---------------------------------------------------------------------------------

WHATSAPP = "whatsapp:"
WINDOW = timedelta(hours=24)


@dataclass(frozen=True)
class Content:
    """An approved Content template of the account: its Meta category and its placeholders."""

    category: str
    variables: frozenset[str]


class WhatsApp:
    """WhatsApp on the fake Twilio, as the real Messages API behaves for ``whatsapp:`` addresses.

    * ``From`` must be the account's WhatsApp sender (else 63007); ``To`` a ``whatsapp:+E164``.
    * A message is either ``ContentSid`` (an approved template of the account, else 21655) with
      ``ContentVariables`` (a JSON object of strings, else 21656), or free-form ``Body``.
    * The request is accepted (201, ``queued``); WhatsApp's verdict comes later, by status callback:
      free-form outside the customer's 24-hour window fails with 63016; a marketing template to a
      user Meta holds marketing back from (``hold_marketing``) fails with 63049; else ``sent`` then
      ``delivered``. Callbacks wait in ``callbacks`` (signed) until a test delivers them.
    * ``customer_writes`` is the customer's own message: it opens the window, and gives the signed
      inbound webhook Twilio would post.
    """

    def __init__(self, server: TwilioServer) -> None:
        self.server = server
        self.sender: str | None = None
        self.contents: dict[str, Content] = {}
        self.last_inbound: dict[str, datetime] = {}
        self.marketing_held: set[str] = set()
        self.callbacks: list[Callback] = []

    def approve(self, content_sid: str, category: str, variables: set[str]) -> None:
        """Create an approved Content template in the account."""
        self.contents[content_sid] = Content(category, frozenset(variables))

    def hold_marketing(self, phone: str) -> None:
        """Meta will not deliver marketing templates to this user (per-user marketing limits)."""
        self.marketing_held.add(phone)

    def customer_writes(self, phone: str, body: str, inbound_url: str) -> Callback:
        """The customer sends us a WhatsApp message: the window opens; Twilio's inbound webhook."""
        self.last_inbound[phone] = datetime.now(UTC)
        params = {
            "AccountSid": self.server.account_sid, "ApiVersion": "2010-04-01", "Body": body,
            "From": WHATSAPP + phone, "MessageSid": "SM" + secrets.token_hex(16), "NumMedia": "0",
            "NumSegments": "1", "ProfileName": "Customer", "SmsStatus": "received",
            "To": self.sender or "", "WaId": phone.lstrip("+"),
        }
        return self._signed(inbound_url, params)

    def sent(self) -> list[Recorded]:
        """The WhatsApp message-creating requests received."""
        return [r for r in self.server.sent() if (r.field("To") or "").startswith(WHATSAPP)]

    def take_callbacks(self) -> list[Callback]:
        with self.server._lock:
            taken, self.callbacks = self.callbacks, []
        return taken

    def create(self, request: Recorded) -> tuple[int, dict[str, Any], dict[str, str]]:
        to, sender = request.field("To") or "", request.field("From") or ""
        body, content_sid = request.field("Body"), request.field("ContentSid")
        if sender != self.sender:
            return 400, _error_body(400, 63007, "Twilio could not find a Channel with the specified From address"), {}
        if not to.startswith(WHATSAPP) or not to.removeprefix(WHATSAPP).startswith("+"):
            return 400, _error_body(400, 21211, "Invalid 'To' Phone Number"), {}
        if content_sid is not None:
            content = self.contents.get(content_sid)
            if content is None:
                return 400, _error_body(400, 21655, "The ContentSid is Invalid"), {}
            try:
                variables = json.loads(request.field("ContentVariables") or "{}")
            except ValueError:
                variables = None
            if not isinstance(variables, dict) or not all(isinstance(v, str) for v in variables.values()):
                return 400, _error_body(400, 21656, "The ContentVariables Parameter is invalid"), {}
        elif not body:
            return 400, _error_body(400, 21619, "A text message body or media urls must be specified."), {}
        resource = self.server.message_resource(to, sender, body, None)
        phone = to.removeprefix(WHATSAPP)
        last = self.last_inbound.get(phone)
        if content_sid is None and (last is None or datetime.now(UTC) - last >= WINDOW):
            verdict = [("failed", "63016")]
        elif content_sid is not None and self.contents[content_sid].category == "marketing" and (
            phone in self.marketing_held
        ):
            verdict = [("failed", "63049")]
        else:
            verdict = [("sent", ""), ("delivered", "")]
        callback_url = request.field("StatusCallback")
        if callback_url:
            for status, code in verdict:
                params = {
                    "AccountSid": self.server.account_sid, "ApiVersion": "2010-04-01", "ChannelPrefix": "whatsapp",
                    "From": sender, "MessageSid": resource["sid"], "MessageStatus": status,
                    "SmsSid": resource["sid"], "SmsStatus": status, "To": to,
                }
                if code:
                    params["ErrorCode"] = code
                with self.server._lock:
                    self.callbacks.append(self._signed(callback_url, params))
        return 201, resource, {}

    def _signed(self, url: str, params: dict[str, str]) -> Callback:
        payload = url + "".join(name + params[name] for name in sorted(params))
        digest = hmac.new(self.server.auth_token.encode(), payload.encode(), hashlib.sha1).digest()
        return Callback(url, params, base64.b64encode(digest).decode())
