"""Twilio's webhooks: SMS delivery reports and inbound replies (STOP / START), back into journeys.

Both routes verify ``X-Twilio-Signature`` with the SDK's ``RequestValidator`` (HMAC over the URL
Twilio called, as we published it under ``OMNICART_PUBLIC_URL``, plus the sorted form parameters)
before they read anything; a forged or unsigned request gets 403 and changes nothing. Twilio's
signature carries no timestamp, so a replay is neutralised by the event ids instead: they derive
from Twilio's ``MessageSid`` (plus the status), and the ingest side ignores an id it has seen.

* ``POST /webhooks/twilio/status`` is the status callback URL the SMS sender gives Twilio, with our
  ``message_id`` in its query string. ``delivered`` becomes ``message_delivered``; ``undelivered``
  and ``failed`` become ``message_failed``. Every callback for a known message is also recorded in
  the message ledger as evidence that Twilio accepted it (this settles a send left in doubt by a
  crash).
* ``POST /webhooks/twilio/inbound`` is the number's (or Messaging Service's) incoming-message URL.
  A body that is exactly an opt-out keyword (STOP, STOPALL, UNSUBSCRIBE, CANCEL, END, QUIT, OPTOUT,
  REVOKE; any case, surrounding blanks ignored) becomes ``consent_changed`` sms ``granted: false``
  for every customer we have messaged at that number (a phone can be shared); START, UNSTOP and YES
  give consent back. The answer is an empty TwiML ``<Response/>``: Twilio's own opt-out handling
  sends the confirmation text.

Both also record what became of the message for analytics (``omnicart.analytics.outcomes``):
``delivered`` or ``failed`` from a status callback, ``unsubscribed`` for the last text each
customer got at a number that replies STOP.

A callback for a message id or phone number we do not know is accepted and logged (by ids only;
phone numbers and message bodies never reach the logs).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, HTTPException, Request, Response
from pydantic import BaseModel
from starlette.datastructures import ImmutableMultiDict
from twilio.request_validator import RequestValidator
from twilio.twiml.messaging_response import MessagingResponse

from omnicart.analytics.outcomes import outcome, outcomes_of
from omnicart.analytics.store import record_outcomes
from omnicart.consent.provenance import provenance
from omnicart.events import Event
from omnicart.ledger import LedgerEntry, MessageLedger
from omnicart.security.pseudonym import customer_ref
from omnicart.settings import Settings, get_settings

log = logging.getLogger(__name__)

router = APIRouter(tags=["webhooks"])

STATUS_PATH = "/webhooks/twilio/status"
INBOUND_PATH = "/webhooks/twilio/inbound"
MAX_BODY_BYTES = 64 * 1024
SIGNATURE_HEADER = "X-Twilio-Signature"

DELIVERY_EVENTS = {
    "delivered": "message_delivered",
    "undelivered": "message_failed",
    "failed": "message_failed",
}
# Twilio's default opt-out and opt-in keywords (Advanced Opt-Out), so our consent matches its own block list.
OPT_OUT_KEYWORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPTOUT", "REVOKE"})
OPT_IN_KEYWORDS = frozenset({"START", "UNSTOP", "YES"})


class StatusCallbackResult(BaseModel):
    """What we did with one status callback (no personal data)."""

    message_id: str | None
    status: str
    known: bool
    forwarded: str | None = None


@router.post(STATUS_PATH, response_model=StatusCallbackResult)
async def twilio_status(request: Request) -> StatusCallbackResult:
    """A status callback: delivered / undelivered / failed become journey events."""
    params = await _verified_params(request)
    sid, status = status_of(params)
    message_id = request.query_params.get("message_id")
    if not message_id:
        log.info("twilio status %r for %s without a message_id: accepted", status, sid)
        return StatusCallbackResult(message_id=None, status=status, known=False)

    ledger: MessageLedger = request.app.state.ledger
    entry = await asyncio.to_thread(ledger.find, message_id)
    if entry is None:
        log.info("twilio status %r for unknown message %s (%s): accepted", status, message_id, sid)
        return StatusCallbackResult(message_id=message_id, status=status, known=False)

    event_type = DELIVERY_EVENTS.get(status)
    if event_type is not None:
        properties: dict[str, Any] = {
            "channel": "sms",
            "message_id": message_id,
            "journey": entry.journey,
            "provider_message_id": sid,
            "status": status,
        }
        if params.get("ErrorCode"):
            properties["error_code"] = params["ErrorCode"]
        await forward_delivery(request, entry, f"twilio_{sid}_{status}", event_type, properties)
        log.info("twilio status %r for message %s -> %s", status, message_id, event_type)
    # Evidence after forwarding: a call that failed above is answered 5xx and Twilio may retry it.
    await asyncio.to_thread(ledger.record_event, message_id, status)
    return StatusCallbackResult(message_id=message_id, status=status, known=True, forwarded=event_type)


def status_of(params: ImmutableMultiDict[str, str]) -> tuple[str, str]:
    """A status callback's message SID and status (400 without them), for every Twilio channel."""
    sid = params.get("MessageSid") or params.get("SmsSid")
    status = params.get("MessageStatus") or params.get("SmsStatus")
    if not sid or not status:
        raise HTTPException(status_code=400, detail="a status callback needs MessageSid and MessageStatus")
    return sid, status


async def forward_delivery(
    request: Request, entry: LedgerEntry, event_id: str, event_type: str, properties: dict[str, Any]
) -> None:
    """A delivery report about one of our messages, as a journey event for its customer (and for
    analytics); shared by every Twilio channel, whose ``properties`` name it."""
    ledger: MessageLedger = request.app.state.ledger
    event = Event.parse(
        {
            "id": event_id,
            "type": event_type,
            "customer_id": entry.customer_id,
            "timestamp": datetime.now(UTC).isoformat(),
            "source": properties["channel"],
            "properties": properties,
        }
    )
    await _ingest(request).submit([event])
    await asyncio.to_thread(record_outcomes, ledger.engine, outcomes_of([event]))


@router.post(INBOUND_PATH)
async def twilio_inbound(request: Request) -> Response:
    """An SMS to our number: opt-out and opt-in keywords change the customer's SMS consent."""
    params = await _verified_params(request)
    sid = params.get("MessageSid") or params.get("SmsMessageSid") or params.get("SmsSid") or ""
    keyword = (params.get("Body") or "").strip().upper()
    granted = False if keyword in OPT_OUT_KEYWORDS else True if keyword in OPT_IN_KEYWORDS else None
    sender = params.get("From")
    if granted is None or not sender:
        log.info("twilio inbound %s is not a consent keyword: nothing to do", sid or "(no sid)")
        return _twiml()
    if not sid:
        raise HTTPException(status_code=400, detail="an inbound message needs MessageSid")

    ledger: MessageLedger = request.app.state.ledger
    last_messages = await asyncio.to_thread(ledger.last_messages_to, "sms", sender)
    customer_ids = list(last_messages)
    if not customer_ids:
        log.info("twilio inbound %s (%s) from a number we never messaged: accepted", sid, keyword)
        return _twiml()
    events = [
        Event.parse(
            {
                "id": f"twilio_{sid}_consent_{customer_id}",
                "type": "consent_changed",
                "customer_id": customer_id,
                "timestamp": datetime.now(UTC).isoformat(),
                "source": "sms",
                "properties": {"channel": "sms", "granted": granted, "via": f"twilio_{keyword.lower()}",
                               **provenance("sms_keyword", keyword=keyword, message_sid=sid)},
            }
        )
        for customer_id in customer_ids
    ]
    await _ingest(request).submit(events)
    if not granted:  # the reply answers the last text each of them got from us at that number
        now = datetime.now(UTC)
        stopped = [
            outcome(message_id, "unsubscribed", now, f"twilio_{sid}", channel="sms")
            for message_id in last_messages.values()
        ]
        await asyncio.to_thread(record_outcomes, ledger.engine, stopped)
    log.info(
        "twilio inbound %s: sms consent %s for customers %s",
        sid,
        "granted" if granted else "revoked",
        ", ".join(customer_ref(customer_id) for customer_id in customer_ids),
    )
    return _twiml()


async def _verified_params(request: Request) -> ImmutableMultiDict[str, str]:
    """The form parameters, once the signature proves Twilio sent them; else 403 (503 unconfigured)."""
    settings: Settings = getattr(request.app.state, "settings", None) or get_settings()
    if settings.twilio_auth_token is None:
        log.error("twilio webhook refused: OMNICART_TWILIO_AUTH_TOKEN is not set, signatures cannot be checked")
        raise HTTPException(status_code=503, detail="webhook verification token is not configured")
    body = await _read_body(request)
    try:
        params = ImmutableMultiDict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
    except UnicodeDecodeError:
        raise HTTPException(status_code=403, detail="the body is not a signed Twilio form") from None
    signature = request.headers.get(SIGNATURE_HEADER)
    if not signature:
        raise HTTPException(status_code=403, detail=f"unsigned: the {SIGNATURE_HEADER} header is required")
    url = public_url_of(settings, request)
    if not RequestValidator(settings.twilio_auth_token.get_secret_value()).validate(url, params, signature):
        log.warning("twilio webhook %s refused: the signature does not match", request.url.path)
        raise HTTPException(status_code=403, detail="the signature does not match")
    return params


def public_url_of(settings: Settings, request: Request) -> str:
    """The URL Twilio called, as Twilio knows it: our public URL, the path, the raw query string."""
    query = request.scope.get("query_string", b"").decode("latin-1")
    url = settings.public_url.rstrip("/") + request.url.path
    return f"{url}?{query}" if query else url


async def _read_body(request: Request) -> bytes:
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise HTTPException(status_code=413, detail=f"the body is over {MAX_BODY_BYTES} bytes")
    return bytes(body)


def _ingest(request: Request) -> Any:
    ingest = getattr(request.app.state, "ingest", None)
    if ingest is None:
        raise HTTPException(status_code=503, detail="not ready yet", headers={"Retry-After": "5"})
    return ingest


def _twiml() -> Response:
    return Response(content=str(MessagingResponse()), media_type="text/xml")
