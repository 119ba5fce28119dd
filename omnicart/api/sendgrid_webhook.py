"""SendGrid's Event Webhook: what happens to an email after we sent it, back into the journeys.

SendGrid signs each POST with ECDSA P-256 over ``timestamp + body``; we verify it with the SDK's
``EventWebhook`` helper (after refusing a body over ``MAX_BODY_BYTES`` and a timestamp that is not a
finite number) against the public key from ``OMNICART_SENDGRID_WEBHOOK_PUBLIC_KEY``. Forged
or unsigned requests get 401/403 and change nothing. A replay is refused when its signed timestamp
is more than ``MAX_AGE`` old; a replay inside that window repeats ``sg_event_id``, and our event id
is derived from it, so the ingest side ignores it and the ledger's evidence does not change.
Once verified, a request is stored in the webhook inbox and answered at once; it is applied then,
or after a Temporal outage (``omnicart.api.webhook_inbox``).

Every event that names one of our messages (``custom_args.message_id``) is recorded in the message
ledger as evidence that SendGrid accepted it (this is what settles a send left in doubt by a
crash); the ones journeys care about become our events:

============================  ====================================================
delivered                     ``message_delivered``
open                          ``message_opened`` (not for ``sg_machine_open``)
click                         ``message_clicked`` (with ``url``)
bounce                        ``message_bounced`` (with SendGrid's bounce type);
                              ``message_failed`` for ``type: blocked``
dropped                       ``message_failed`` (with SendGrid's reason); see
                              :func:`to_events` for suppressed addresses
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
import math
import time
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, cast

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, ValidationError
from sendgrid.helpers.eventwebhook import EventWebhook, EventWebhookHeader

from omnicart.analytics.outcomes import from_sendgrid
from omnicart.analytics.rows import MessageOutcomeRow
from omnicart.analytics.store import record_outcomes
from omnicart.api.webhook_inbox import InboxItem, TemporalNotReady, applier, read_body, receive
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


# SendGrid's reasons for dropping a message to an address it suppresses.
DROPPED_BOUNCED = frozenset({"Bounced Address"})
DROPPED_OPTED_OUT = {"Unsubscribed Address": "unsubscribed", "Spam Reporting Address": "spamreport"}
CONSENT_SUFFIX = "_consent"
EVENTS_KIND = "sendgrid_events"
MAX_BODY_BYTES = 1024 * 1024
"""SendGrid posts a batch every 30 seconds or once it holds 768 KB of events, whichever comes first
(https://www.twilio.com/docs/sendgrid/for-developers/tracking-events/getting-started-event-webhook):
anything much larger is not SendGrid, and is refused (413) before it is read further or verified."""


class WebhookSummary(BaseModel):
    """What we did with a webhook call (no personal data); ``stored`` when it waits to be applied."""

    received: int
    forwarded: int
    unknown_messages: int
    ignored: int
    stored: bool = False


@router.post("/webhooks/sendgrid", response_model=WebhookSummary, response_model_exclude_defaults=True)
async def sendgrid_events(request: Request) -> WebhookSummary:
    """Verify, store (``omnicart.api.webhook_inbox``), answer; applied at once or when Temporal is back."""
    settings: Settings = getattr(request.app.state, "settings", None) or get_settings()
    body = await read_body(request, MAX_BODY_BYTES)
    _verify(settings, request, body)
    payload = _events_of(body)
    applied, summary = await receive(request.app.state, "sendgrid", EVENTS_KIND, "", body)
    if applied:
        return cast(WebhookSummary, summary)
    return WebhookSummary(received=len(payload), forwarded=0, unknown_messages=0, ignored=0, stored=True)


@applier(EVENTS_KIND)
async def apply_events(state: Any, item: InboxItem) -> WebhookSummary:
    """What a stored batch of SendGrid events changes: journey events, ledger evidence, outcomes."""
    payload = _events_of(item.body)
    ledger: MessageLedger = state.ledger
    events: list[Event] = []
    unknown = 0
    known: set[str] = set()
    for index, event_item in enumerate(payload):
        message_id = _arg(event_item, "message_id")
        entry = await asyncio.to_thread(ledger.find, message_id) if message_id else None
        if entry is not None:
            known.add(entry.message_id)
        if message_id and entry is None:
            unknown += 1
            log.info(
                "sendgrid event %r (#%d) for unknown message %s: accepted",
                event_item.get("event"),
                index,
                message_id,
            )
        try:
            found = to_events(event_item, known_customer=entry.customer_id if entry else None, known=entry is not None)
        except ValueError as exc:  # pydantic's ValidationError included
            log.warning("sendgrid event #%d ignored: %s", index, _describe(exc))
            continue
        events.extend(found)

    if events:
        ingest = getattr(state, "ingest", None)
        if ingest is None:
            raise TemporalNotReady("the API is not connected to Temporal yet")
        await ingest.submit(events)
    # Evidence after forwarding: a row that fails above stays pending and is applied again whole.
    for event_item in payload:
        message_id, kind = _arg(event_item, "message_id"), event_item.get("event")
        if message_id and isinstance(kind, str):
            await asyncio.to_thread(ledger.record_event, message_id, kind)
    await asyncio.to_thread(record_outcomes, ledger.engine, _outcomes(payload, known))
    handled = len({event.id.removesuffix(CONSENT_SUFFIX) for event in events})
    return WebhookSummary(
        received=len(payload),
        forwarded=handled,
        unknown_messages=unknown,
        ignored=len(payload) - handled,
    )


def _events_of(body: bytes) -> list[dict[str, Any]]:
    try:
        payload = json.loads(body)
    except ValueError:
        raise HTTPException(status_code=400, detail="body is not JSON") from None
    if not isinstance(payload, list) or not all(isinstance(item, dict) for item in payload):
        raise HTTPException(status_code=400, detail="body must be a JSON array of event objects")
    return payload


def to_events(item: dict[str, Any], *, known_customer: str | None = None, known: bool = True) -> list[Event]:
    """Our events for one SendGrid event: none when journeys have no use for it (processed, ...).

    ``known`` says whether the ledger knows the message; engagement with an unknown message is
    dropped, opt-outs are kept. Raises ``ValueError`` when the event lacks what we need.

    * A ``bounce`` of ``type: "blocked"`` is a temporary block (the receiving server refused us for
      now, often over reputation), not a bad address: ``message_failed`` with ``bounce_type``, and
      the address stays deliverable (https://www.twilio.com/docs/sendgrid/for-developers/tracking-events/event#delivery-events).
    * An ``open`` that SendGrid marks ``sg_machine_open`` (Apple Mail Privacy Protection fetched the
      pixel, no person opened it) reaches no journey, so ``engagement.opened`` counts people only;
      it is stored apart as a machine open (``omnicart report``'s machine opens), see ``_outcomes``.
    * A ``dropped`` for an address SendGrid suppresses says why: ``Unsubscribed Address`` and
      ``Spam Reporting Address`` also withdraw email consent, ``Bounced Address`` is a bounce (the
      address is marked undeliverable); each is a failure of the message, so the step falls back.
    """
    kind = item.get("event")
    if kind not in MESSAGE_EVENTS and kind not in CONSENT_EVENTS:
        return []
    if kind in MESSAGE_EVENTS and not known:
        return []
    if kind == "open" and item.get("sg_machine_open") is True:
        return []  # a proxy, not a person: counted apart, as a machine open, by analytics only
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
    timestamp = _timestamp(item.get("timestamp")).isoformat()
    also: list[Event] = []
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
            if item.get("type") == "blocked":
                event_type = "message_failed"
        if kind == "dropped" and isinstance(item.get("reason"), str):
            reason = item["reason"]
            properties["reason"] = reason
            if reason in DROPPED_BOUNCED:
                event_type = "message_bounced"
            elif reason in DROPPED_OPTED_OUT:
                via = f"sendgrid_dropped_{DROPPED_OPTED_OUT[reason]}"
                consent: dict[str, Any] = {"channel": "email", "granted": False, "via": via}
                if message_id:
                    consent["message_id"] = message_id
                consent_id = f"sg_{sg_event_id}{CONSENT_SUFFIX}"
                also.append(_event(consent_id, "consent_changed", customer_id, timestamp, consent))
    # The consent change first: the fallback the failure starts must already see it.
    return [*also, _event(f"sg_{sg_event_id}", event_type, customer_id, timestamp, properties)]


def _event(event_id: str, event_type: str, customer_id: str, timestamp: str, properties: dict[str, Any]) -> Event:
    return Event.parse(
        {
            "id": event_id,
            "type": event_type,
            "customer_id": customer_id,
            "timestamp": timestamp,
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
        signed_at = math.nan
    if not math.isfinite(signed_at):  # "nan" and "inf" parse as floats, and nan passes any age check
        raise HTTPException(status_code=403, detail="the signature timestamp is not a Unix time")
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
