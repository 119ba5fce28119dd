"""SendGrid's Event Webhook: what happens to an email after we sent it, back into the journeys.

SendGrid signs each POST with ECDSA P-256 over ``timestamp + body``; we verify it with the SDK's
``EventWebhook`` helper against the public key from ``OMNICART_SENDGRID_WEBHOOK_PUBLIC_KEY``. Forged
or unsigned requests get 401/403 and change nothing. A replay is refused when its signed timestamp
is more than ``MAX_AGE`` old; a replay inside that window repeats ``sg_event_id``, and our event id
is derived from it, so the ingest side ignores it and the ledger's evidence does not change.

Every event that names one of our messages (``custom_args.message_id``) is recorded in the message
ledger as evidence that SendGrid accepted it (this is what settles a send left in doubt by a
crash); the ones journeys care about become our events:

============================  ====================================================
delivered                     ``message_delivered``
open                          ``message_opened``
click                         ``message_clicked`` (with ``url``)
bounce                        ``message_bounced`` (with SendGrid's bounce type)
dropped                       ``message_failed`` (with SendGrid's reason)
spamreport, unsubscribe,      ``consent_changed`` (email, granted false)
group_unsubscribe
group_resubscribe             ``consent_changed`` (email, granted true)
============================  ====================================================

Each event about one of our messages is also stored as its outcome for analytics
(``omnicart.analytics.outcomes``): delivered, opened (an Apple Mail privacy-proxy open, which
SendGrid marks ``sg_machine_open``, as a machine open), clicked, bounced, failed (dropped) and
unsubscribed (unsubscribe, group_unsubscribe, spamreport), once per ``sg_event_id``.

An event for a message id the ledger does not know is accepted and logged (ids only), not an
error: engagement for it is dropped, but an opt-out is still honoured when the event names a
customer, because losing an unsubscribe is worse than a stray event.
"""

from __future__ import annotations

import asyncio
import binascii
import json
import logging
import time
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, ValidationError
from sendgrid.helpers.eventwebhook import EventWebhook, EventWebhookHeader

from omnicart.analytics.outcomes import from_sendgrid
from omnicart.analytics.rows import MessageOutcomeRow
from omnicart.analytics.store import record_outcomes
from omnicart.consent.provenance import provenance
from omnicart.events import Event
from omnicart.ledger import MessageLedger
from omnicart.settings import Settings, get_settings

log = logging.getLogger(__name__)

router = APIRouter(tags=["webhooks"])

MAX_AGE = 600.0
"""Seconds a signed timestamp stays acceptable (also the allowed clock skew into the future)."""

MESSAGE_EVENTS = {
    "delivered": "message_delivered",
    "open": "message_opened",
    "click": "message_clicked",
    "bounce": "message_bounced",
    "dropped": "message_failed",
}
CONSENT_EVENTS = {
    "spamreport": False,
    "unsubscribe": False,
    "group_unsubscribe": False,
    "group_resubscribe": True,
}


class WebhookSummary(BaseModel):
    """What we did with a webhook call (no personal data)."""

    received: int
    forwarded: int
    unknown_messages: int
    ignored: int


@router.post("/webhooks/sendgrid", response_model=WebhookSummary)
async def sendgrid_events(request: Request) -> WebhookSummary:
    settings: Settings = getattr(request.app.state, "settings", None) or get_settings()
    body = await request.body()
    _verify(settings, request, body)
    try:
        payload = json.loads(body)
    except ValueError:
        raise HTTPException(status_code=400, detail="body is not JSON") from None
    if not isinstance(payload, list) or not all(isinstance(item, dict) for item in payload):
        raise HTTPException(status_code=400, detail="body must be a JSON array of event objects")

    ledger: MessageLedger = request.app.state.ledger
    events: list[Event] = []
    unknown = 0
    known: set[str] = set()
    for index, item in enumerate(payload):
        message_id = _arg(item, "message_id")
        entry = await asyncio.to_thread(ledger.find, message_id) if message_id else None
        if entry is not None:
            known.add(entry.message_id)
        if message_id and entry is None:
            unknown += 1
            log.info(
                "sendgrid event %r (#%d) for unknown message %s: accepted",
                item.get("event"),
                index,
                message_id,
            )
        try:
            event = to_event(item, known_customer=entry.customer_id if entry else None, known=entry is not None)
        except ValueError as exc:  # pydantic's ValidationError included
            log.warning("sendgrid event #%d ignored: %s", index, _describe(exc))
            continue
        if event is not None:
            events.append(event)

    if events:
        ingest = getattr(request.app.state, "ingest", None)
        if ingest is None:
            raise HTTPException(status_code=503, detail="not ready yet", headers={"Retry-After": "5"})
        await ingest.submit(events)
    # Evidence after forwarding: a call that fails above is retried by SendGrid as a whole.
    for item in payload:
        message_id, kind = _arg(item, "message_id"), item.get("event")
        if message_id and isinstance(kind, str):
            await asyncio.to_thread(ledger.record_event, message_id, kind)
    await asyncio.to_thread(record_outcomes, ledger.engine, _outcomes(payload, known))
    return WebhookSummary(
        received=len(payload),
        forwarded=len(events),
        unknown_messages=unknown,
        ignored=len(payload) - len(events),
    )


def to_event(item: dict[str, Any], *, known_customer: str | None = None, known: bool = True) -> Event | None:
    """Our event for one SendGrid event, or None when journeys have no use for it (processed, ...).

    ``known`` says whether the ledger knows the message; engagement with an unknown message is
    dropped, opt-outs are kept. Raises ``ValueError`` when the event lacks what we need.
    """
    kind = item.get("event")
    if kind not in MESSAGE_EVENTS and kind not in CONSENT_EVENTS:
        return None
    if kind in MESSAGE_EVENTS and not known:
        return None
    sg_event_id = item.get("sg_event_id")
    if not isinstance(sg_event_id, str) or not sg_event_id:
        raise ValueError(f"{kind} event without sg_event_id")
    customer_id = _arg(item, "customer_id") or known_customer
    if not customer_id:
        raise ValueError(f"{kind} event without custom_args.customer_id")
    message_id = _arg(item, "message_id")
    journey = _arg(item, "journey")
    properties: dict[str, Any] = {"channel": "email"}
    if message_id:
        properties["message_id"] = message_id
    if journey:
        properties["journey"] = journey
    if kind in CONSENT_EVENTS:
        properties["granted"] = CONSENT_EVENTS[kind]
        properties["via"] = f"sendgrid_{kind}"
        properties.update(provenance("provider", provider="sendgrid", event=kind, provider_event_id=sg_event_id))
        event_type = "consent_changed"
    else:
        event_type = MESSAGE_EVENTS[kind]
        if not message_id:
            raise ValueError(f"{kind} event without custom_args.message_id")
        if kind == "click" and isinstance(item.get("url"), str):
            properties["url"] = item["url"]
        if kind == "bounce":
            for key in ("type", "bounce_classification"):
                if isinstance(item.get(key), str):
                    properties["bounce_type" if key == "type" else key] = item[key]
        if kind == "dropped" and isinstance(item.get("reason"), str):
            properties["reason"] = item["reason"]
    return Event.parse(
        {
            "id": f"sg_{sg_event_id}",
            "type": event_type,
            "customer_id": customer_id,
            "timestamp": _timestamp(item.get("timestamp")).isoformat(),
            "source": "email",
            "properties": properties,
        }
    )


def _outcomes(payload: list[dict[str, Any]], known: set[str]) -> list[MessageOutcomeRow]:
    """What became of our messages, for analytics: only messages the ledger knows (ours)."""
    rows = []
    for item in payload:
        message_id = _arg(item, "message_id")
        if message_id in known:
            row = from_sendgrid(item, message_id, _timestamp(item.get("timestamp")))
            if row is not None:
                rows.append(row)
    return rows


def _verify(settings: Settings, request: Request, body: bytes) -> None:
    """401 unsigned, 403 forged or stale; 503 when no key is configured (SendGrid retries later)."""
    if not settings.sendgrid_webhook_public_key:
        log.error("sendgrid webhook refused: OMNICART_SENDGRID_WEBHOOK_PUBLIC_KEY is not set")
        raise HTTPException(status_code=503, detail="webhook verification key is not configured")
    signature = request.headers.get(EventWebhookHeader.SIGNATURE)
    timestamp = request.headers.get(EventWebhookHeader.TIMESTAMP)
    if not signature or not timestamp:
        raise HTTPException(status_code=401, detail="unsigned: signature and timestamp headers are required")
    try:
        signed_at = float(timestamp)
    except ValueError:
        raise HTTPException(status_code=403, detail="the signature timestamp is not a Unix time") from None
    if abs(time.time() - signed_at) > MAX_AGE:
        raise HTTPException(status_code=403, detail="the signature timestamp is too old (replayed?)")
    verifier = _verifier(settings.sendgrid_webhook_public_key)
    try:
        valid = verifier.verify_signature(body.decode("utf-8"), signature, timestamp)
    except (UnicodeDecodeError, binascii.Error, ValueError):
        valid = False
    if not valid:
        raise HTTPException(status_code=403, detail="the signature does not match")


@lru_cache(maxsize=4)
def _verifier(public_key: str) -> EventWebhook:
    # SendGrid shows the key as bare base64; accept a PEM-armoured copy too.
    body = "".join(line.strip() for line in public_key.strip().splitlines() if "PUBLIC KEY" not in line)
    try:
        return EventWebhook(body)
    except ValueError:
        log.error("OMNICART_SENDGRID_WEBHOOK_PUBLIC_KEY is not a valid ECDSA public key")
        raise HTTPException(status_code=503, detail="webhook verification key is not valid") from None


def _arg(item: dict[str, Any], name: str) -> str | None:
    """A custom arg: top level in the event, as SendGrid sends them, or under unique_args."""
    value = item.get(name)
    if value is None:
        for container in ("custom_args", "unique_args"):
            nested = item.get(container)
            if isinstance(nested, dict) and nested.get(name) is not None:
                value = nested[name]
                break
    return str(value) if value is not None and str(value) else None


def _timestamp(value: Any) -> datetime:
    try:
        return datetime.fromtimestamp(float(value), UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return datetime.now(UTC)


def _describe(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}" for error in exc.errors())
    return str(exc)
