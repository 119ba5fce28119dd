"""A Segment-compatible HTTP Tracking API: ``identify``, ``track``, ``page`` and ``batch`` calls.

Any source that can send to Segment (or RudderStack, which speaks the same API) can feed omnicart:
point it at ``<omnicart>/segment`` as its API host (libraries then post to ``/segment/v1/batch``),
or post to ``/v1/segment/{identify,track,page,batch}``. The write key is the Basic-auth user with an
empty password (or ``writeKey`` in the body), one of ``OMNICART_SEGMENT_WRITE_KEYS``.

* ``identify`` traits become ``customer_updated`` (email, phone, first name; time zone and locale
  from ``context``);
* ``track`` events go through the mapping file (``omnicart.connectors.segment_mapping``);
* ``page`` becomes what the mapping's ``page`` says (``page_viewed``), or nothing;
* ``anonymousId`` becomes the event's ``anonymous_id``: a call with only that is an anonymous
  visitor's (their carts and views wait for them), and a call with both links the visitor to the
  known customer, whose journeys then go on as one (``docs/IDENTITY.md``); a call with neither is
  quarantined with reason ``anonymous``;
* ``messageId`` is the dedupe key (event id ``segment:<messageId>``);
* time: an explicit ``timestamp`` is used as sent (historical imports); otherwise
  ``originalTimestamp`` corrected for the sender's clock skew, ``receivedAt - (sentAt -
  originalTimestamp)``, as Segment does; otherwise the time omnicart received it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from datetime import UTC, datetime
from typing import Any

from fastapi import HTTPException
from pydantic import SecretStr

from omnicart.connectors.core import Unmappable, as_object, envelope
from omnicart.connectors.quarantine import Delivery
from omnicart.connectors.segment_mapping import SegmentMapping

CONNECTOR = "segment"
PREFIX = "segment:"
CALLS = ("identify", "track", "page")
BATCH_CALLS = ("batch", "import")  # Segment's /v1/import is the batch call under another name
MAX_BATCH_BYTES = 500 * 1024  # Segment's own limits: 500 KB a batch, 32 KB a call
MAX_CALL_BYTES = 32 * 1024


def require_write_key(keys: SecretStr | None, authorization: str | None, body: dict[str, Any]) -> None:
    """401 unless the Basic-auth user (or the body's ``writeKey``) is one of ``keys``; 503 unconfigured."""
    if keys is None:
        raise HTTPException(status_code=503, detail="no Segment write key is configured", headers={"Retry-After": "60"})
    given = _basic_user(authorization)
    if given is None and isinstance(body.get("writeKey"), str):
        given = body["writeKey"]
    accepted = [key.strip() for key in keys.get_secret_value().split(",") if key.strip()]
    # Compare with every key (constant time each) so the answer's timing does not say which matched.
    matches = [hmac.compare_digest((given or "").encode(), key.encode()) for key in accepted]
    if given is None or not any(matches):
        raise HTTPException(status_code=401, detail="missing or unknown write key",
                            headers={"WWW-Authenticate": 'Basic realm="segment"'})


def deliveries_of(call: str, body: dict[str, Any], received_at: datetime) -> list[Delivery]:
    """One delivery per message of a call (a ``batch`` holds many); 400 for a body of the wrong shape."""
    if call in BATCH_CALLS:
        messages = body.get("batch")
        if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
            raise HTTPException(status_code=400, detail="a batch is {\"batch\": [messages]}")
        shared = {key: body[key] for key in ("context", "integrations", "sentAt") if key in body}
        messages = [{**shared, **message} for message in messages]
    else:
        messages = [{**body, "type": call}]
    deliveries = []
    for message in messages:
        payload = json.dumps(message, sort_keys=True, separators=(",", ":")).encode()
        if len(payload) > MAX_CALL_BYTES:
            raise HTTPException(status_code=413, detail=f"a call is at most {MAX_CALL_BYTES} bytes")
        message_id = message.get("messageId")
        if not isinstance(message_id, str) or not message_id:
            message_id = "body-" + hashlib.sha256(payload).hexdigest()[:32]
        kind = message.get("type") if isinstance(message.get("type"), str) else "?"
        topic = f"track {message['event']}" if kind == "track" and isinstance(message.get("event"), str) else kind
        deliveries.append(Delivery(
            connector=CONNECTOR,
            delivery_id=message_id[:200],
            topic=topic[:100],
            payload=payload,
            occurred_at=received_at,  # Segment's receivedAt; the mapping reads the message's own time
            context={},
        ))
    return deliveries


class SegmentCalls:
    """The inbox mapping of the ``segment`` connector: one Segment message → its envelope."""

    def __init__(self, mapping: SegmentMapping) -> None:
        self.mapping = mapping

    def __call__(self, delivery: Delivery) -> list[dict[str, Any]]:
        message = delivery.json()
        if not isinstance(message, dict):
            raise Unmappable("the call is not a JSON object")
        kind = message.get("type")
        if kind not in CALLS:
            raise Unmappable(f"{kind!r} calls are not mapped (identify, track and page are)")
        user_id, anonymous_id = _id(message.get("userId")), _id(message.get("anonymousId"))
        if not user_id and not anonymous_id:
            raise Unmappable("anonymous: neither userId nor anonymousId")
        context = as_object(message.get("context"))
        properties = as_object(message.get("properties"))
        if kind == "identify":
            event_type, mapped = "customer_updated", _traits(message.get("traits"), context)
        elif kind == "track":
            if not isinstance(message.get("event"), str):
                raise Unmappable("a track call without an event name")
            event_type, mapped = self.mapping.track_event(message["event"], properties)
        else:
            if self.mapping.page is None:
                return []
            event_type = self.mapping.page
            mapped = {key: properties.get(key) for key in ("url", "path", "title", "referrer")}
            mapped["name"] = message.get("name") if isinstance(message.get("name"), str) else None
        timestamp = _event_time(message, delivery.occurred_at)
        source = "web" if kind != "identify" else "api"
        return [envelope(PREFIX + delivery.delivery_id, event_type, user_id, timestamp, source, mapped,
                         anonymous_id=anonymous_id)]


def _id(value: Any) -> str:
    """A Segment id as text ("" when absent): libraries send strings, some servers numbers."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value if isinstance(value, str) else ""


def _traits(traits: Any, context: dict[str, Any]) -> dict[str, Any]:
    traits = as_object(traits)
    return {
        "email": traits.get("email") or None,
        "phone": traits.get("phone") or None,
        "first_name": traits.get("firstName") or traits.get("first_name") or None,
        "timezone": context.get("timezone") or None,
        "locale": context.get("locale") or None,
    }


def _event_time(message: dict[str, Any], received_at: datetime) -> datetime:
    explicit = _instant(message.get("timestamp"), "timestamp")
    if explicit is not None:
        return explicit
    original = _instant(message.get("originalTimestamp"), "originalTimestamp")
    sent = _instant(message.get("sentAt"), "sentAt")
    if original is not None and sent is not None:
        return received_at - (sent - original)
    return original or received_at


def _instant(value: Any, name: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise Unmappable(f"{name} is not an ISO 8601 time")
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise Unmappable(f"{name} is not an ISO 8601 time") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _basic_user(authorization: str | None) -> str | None:
    if not authorization or not authorization.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    return decoded.split(":", 1)[0]
