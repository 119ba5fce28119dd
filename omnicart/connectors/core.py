"""The shared core of every connector: check the platform's signature, map, then ingest or quarantine.

A connector (``shopify``, ``woocommerce``, ``segment``) only knows its platform: how a request is
signed, which header carries the delivery id and the event time, and how one payload becomes
omnicart event envelopes (its *mapping*). Everything after that is here, and the same for all:

* each envelope goes through :meth:`omnicart.events.Event.parse` (limits, tracking plan) and the one
  :class:`omnicart.api.ingest.Ingest` (event log dedupe, catalog events applied, customer events
  forwarded), so a connector gets exactly the guarantees of ``POST /v1/events``;
* a delivery is all or nothing: if any of its envelopes is refused, none is taken and the whole
  delivery goes to the quarantine (``omnicart.connectors.quarantine``) with the reason;
* a genuine delivery is always answered ``2xx`` unless omnicart itself is down (``503``, so the
  platform retries): platforms disable subscriptions that keep failing.

Event ids derive from the platform's delivery id, so a redelivery is a duplicate in the event log.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from fastapi import HTTPException
from pydantic import BaseModel, Field, SecretStr, ValidationError

from omnicart import limits
from omnicart.api.ingest import Ingest
from omnicart.connectors.quarantine import ConnectorQuarantine, Delivery
from omnicart.events import Event, describe_error
from omnicart.journey.model import DATE_REACHED
from omnicart.observability import count_rejected

logger = logging.getLogger(__name__)

MAX_WEBHOOK_BYTES = 1_000_000
"""Shopify's and WooCommerce's largest payloads (an order with hundreds of lines) stay well below."""


class Unmappable(Exception):
    """A genuine payload the mapping cannot turn into events; ``reason`` names what is missing,
    never a value from the payload (the reason is shown to operators and logged)."""

    def __init__(self, reason: str, customer_id: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.customer_id = customer_id


class EventMapping(Protocol):
    """One platform's mapping: a delivery in, event envelopes (JSON objects) out, or :class:`Unmappable`."""

    def __call__(self, delivery: Delivery) -> list[dict[str, Any]]: ...


TopicHandler = Callable[[Delivery, dict[str, Any]], list[dict[str, Any]]]


class TopicMapping:
    """A webhook platform's mapping: one handler per topic, each given the payload as a JSON object."""

    topics: dict[str, TopicHandler]

    def __call__(self, delivery: Delivery) -> list[dict[str, Any]]:
        handler = self.topics.get(delivery.topic)
        if handler is None:
            raise Unmappable(f"topic {delivery.topic!r} is not mapped ({', '.join(self.topics)} are)")
        payload = delivery.json()
        if not isinstance(payload, dict):
            raise Unmappable("the body is not a JSON object")
        return handler(delivery, payload)


class ConnectorAnswer(BaseModel):
    """What a platform is told about one delivery (nothing personal)."""

    accepted: int = Field(description="Events taken in.")
    duplicates: int = Field(description="Events already taken from an earlier delivery of the same thing.")
    quarantined: int = Field(default=0, description="Deliveries kept for an operator instead (2xx all the same).")
    reason: str | None = Field(default=None, description="Why the delivery was quarantined.")


def hmac_sha256_base64(secret: SecretStr, body: bytes) -> str:
    """Base64 of HMAC-SHA256(secret, body): how Shopify and WooCommerce both sign a webhook."""
    digest = hmac.new(secret.get_secret_value().encode(), body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def require_signature(connector: str, secret: SecretStr | None, body: bytes, signature: str | None) -> None:
    """401 unless ``signature`` is the base64 HMAC-SHA256 of ``body``, compared in constant time;
    503 when the secret is not configured (nothing can be verified, the platform should retry)."""
    if secret is None:
        logger.error("%s webhook refused: its secret is not configured", connector)
        raise HTTPException(status_code=503, detail=f"the {connector} secret is not configured",
                            headers={"Retry-After": "60"})
    try:
        given = base64.b64decode((signature or "").encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        given = b""
    expected = base64.b64decode(hmac_sha256_base64(secret, body))
    if not given or not hmac.compare_digest(given, expected):
        count_rejected(401, "signature")
        logger.warning("%s webhook refused: the signature does not match", connector)
        raise HTTPException(status_code=401, detail="the signature does not match the body")


def json_object(body: bytes) -> dict[str, Any] | None:
    """The body as a JSON object, or None when it is not one (such a delivery is quarantined)."""
    try:
        data = limits.load_json(body)
    except limits.InvalidJson:
        return None
    return data if isinstance(data, dict) else None


class ConnectorInbox:
    """Map a genuine delivery and take its events in, or keep it in the quarantine with the reason."""

    def __init__(self, ingest: Ingest, quarantine: ConnectorQuarantine, mappings: Mapping[str, EventMapping],
                 max_event_bytes: int = limits.MAX_EVENT_BYTES) -> None:
        self.ingest = ingest
        self.quarantine = quarantine
        self.mappings = mappings
        self.max_event_bytes = max_event_bytes

    async def take(self, delivery: Delivery) -> ConnectorAnswer:
        """Map and ingest ``delivery``; raises :class:`omnicart.api.ingest.ForwardingFailed` (503) only."""
        return await self.take_all([delivery])

    async def take_all(self, deliveries: Sequence[Delivery]) -> ConnectorAnswer:
        """Every delivery's events in one ingest (all or nothing); the unmappable ones quarantined."""
        events: list[Event] = []
        reasons: list[str] = []
        for delivery in deliveries:
            mapped = self.events_of(delivery)
            if isinstance(mapped, Unmappable):
                kept = await asyncio.to_thread(self.quarantine.keep, delivery, mapped.reason, mapped.customer_id)
                logger.info("%s delivery %s (%s) quarantined%s: %s", delivery.connector, delivery.delivery_id,
                            delivery.topic, "" if kept else " already", mapped.reason)
                reasons.append(mapped.reason)
            else:
                events += mapped
        answer = ConnectorAnswer(accepted=0, duplicates=0, quarantined=len(reasons),
                                 reason="; ".join(dict.fromkeys(reasons)) or None)
        if events:
            result = await self.ingest.submit(events)
            answer.accepted, answer.duplicates = result.accepted, result.duplicates
        return answer

    def events_of(self, delivery: Delivery) -> list[Event] | Unmappable:
        """The delivery's events, validated as ``POST /v1/events`` validates them, or why not."""
        mapping = self.mappings.get(delivery.connector)
        if mapping is None:
            return Unmappable(f"no mapping for connector {delivery.connector!r}")
        try:
            envelopes = mapping(delivery)
        except Unmappable as unmappable:
            return unmappable
        except Exception as error:  # a mapping bug: keep the delivery for a replay once it is fixed
            logger.exception("%s mapping failed on delivery %s", delivery.connector, delivery.delivery_id)
            return Unmappable(f"the {delivery.connector} mapping failed ({type(error).__name__}): replay after a fix")
        events: list[Event] = []
        for envelope in envelopes:
            try:
                event = Event.parse(envelope, self.max_event_bytes)
            except ValidationError as invalid:
                problems = "; ".join("{}: {}".format(*describe_error(error)) for error in invalid.errors()[:5])
                customer = envelope.get("customer_id") if isinstance(envelope.get("customer_id"), str) else None
                return Unmappable(f"{envelope.get('type')} refused by validation: {problems}", customer)
            if event.type == DATE_REACHED:
                return Unmappable(f"{DATE_REACHED} comes only from omnicart's schedule")
            events.append(event)
        return events

    async def replay(self, connector: str | None = None, limit: int = 1000) -> list[tuple[Delivery, ConnectorAnswer]]:
        """Take every open quarantined delivery again through the current mapping (after a fix).

        One taken in is marked replayed; one still unmappable stays, with its newest reason.
        """
        entries = await asyncio.to_thread(self.quarantine.open_entries, connector, limit)
        outcomes: list[tuple[Delivery, ConnectorAnswer]] = []
        for entry in entries:
            delivery = entry.delivery
            events = self.events_of(delivery)
            if isinstance(events, Unmappable):
                await asyncio.to_thread(self.quarantine.note_reason, delivery, events.reason)
                outcomes.append((delivery, ConnectorAnswer(accepted=0, duplicates=0, quarantined=1,
                                                           reason=events.reason)))
                continue
            result = await self.ingest.submit(events) if events else None
            await asyncio.to_thread(self.quarantine.mark_replayed, delivery)
            outcomes.append((delivery, ConnectorAnswer(accepted=result.accepted if result else 0,
                                                       duplicates=result.duplicates if result else 0)))
        return outcomes


def envelope(event_id: str, event_type: str, customer_id: str, timestamp: datetime, source: str,
             properties: dict[str, Any], anonymous_id: str | None = None) -> dict[str, Any]:
    """An omnicart event envelope as a mapping makes it: properties that are None are left out (the
    platform did not say), no ``customer_id`` for catalog events, and the ``anonymous_id`` of a
    visitor not known yet (both ids: the event links them, ``docs/IDENTITY.md``)."""
    made: dict[str, Any] = {
        "id": event_id,
        "type": event_type,
        "timestamp": timestamp.isoformat(),
        "source": source,
        "properties": {key: value for key, value in properties.items() if value is not None},
    }
    if customer_id:
        made["customer_id"] = customer_id
    if anonymous_id:
        made["anonymous_id"] = anonymous_id
    return made


def money(value: Any, what: str) -> float | None:
    """A platform's price ("19.99" as text, or a number) as a number; Unmappable when it is neither."""
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise Unmappable(f"{what} is not a number") from None
    if number != number or number in (float("inf"), float("-inf")):
        raise Unmappable(f"{what} is not a finite number")
    return number


def as_object(value: Any) -> dict[str, Any]:
    """``value`` when it is a JSON object, else an empty one: payload fields are read leniently, and
    what a mapping needs but cannot find is an :class:`Unmappable` with a reason."""
    return value if isinstance(value, dict) else {}


def as_objects(value: Any) -> list[dict[str, Any]]:
    """The JSON objects of a list (anything else in it, or a value that is no list, is skipped)."""
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def text_id(value: Any) -> str | None:
    """An id the platform sends as a number or text, as text (None when absent)."""
    if isinstance(value, bool) or value is None or value == "":
        return None
    if isinstance(value, int | str):
        return str(value)
    return None

