"""Twilio's webhooks: SMS delivery reports and inbound replies (STOP / START), back into journeys.

Both routes verify ``X-Twilio-Signature`` with the SDK's ``RequestValidator`` (HMAC over the URL
Twilio called, as we published it under ``OMNICART_PUBLIC_URL``, plus the sorted form parameters)
before they read anything; a forged or unsigned request gets 403 and changes nothing. Twilio's
signature carries no timestamp, so a replay is neutralised by the event ids instead: they derive
from Twilio's ``MessageSid`` (plus the status), and the ingest side ignores an id it has seen.

Once verified, a request is stored in the webhook inbox and answered at once; it is applied then,
or after a Temporal outage (``omnicart.api.webhook_inbox``: Twilio does not retry a 5xx).

* ``POST /webhooks/twilio/status`` is the status callback URL the SMS sender gives Twilio, with our
  ``message_id`` in its query string. ``delivered`` becomes ``message_delivered``; ``undelivered``
  and ``failed`` become ``message_failed`` with the 30xxx ``reason``, or ``message_bounced`` (the
  number is marked undeliverable) for 30005 and 30006. Every callback for a known message is also recorded in
  the message ledger as evidence that Twilio accepted it (this settles a send left in doubt by a
  crash).
* ``POST /webhooks/twilio/inbound`` is the number's (or Messaging Service's) incoming-message URL.
  A body that is exactly an opt-out keyword (STOP, STOPALL, UNSUBSCRIBE, CANCEL, END, QUIT, OPTOUT,
  REVOKE; any case, surrounding blanks ignored) becomes ``consent_changed`` sms ``granted: false``
  for every customer we have messaged at that number (a phone can be shared); START, UNSTOP and YES
  give consent back. With Advanced Opt-Out, Twilio's ``OptOutType`` decides instead (custom keywords
  included), see :func:`consent_keyword`. The answer is an empty TwiML ``<Response/>``: Twilio's own opt-out handling
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
from collections.abc import Mapping
from datetime import datetime
from typing import Any, cast
from urllib.parse import parse_qsl

from fastapi import APIRouter, HTTPException, Request, Response
from pydantic import BaseModel
from starlette.datastructures import ImmutableMultiDict
from twilio.request_validator import RequestValidator
from twilio.twiml.messaging_response import MessagingResponse

from omnicart.analytics.outcomes import outcome, outcomes_of
from omnicart.analytics.store import record_outcomes
from omnicart.api.webhook_inbox import InboxItem, TemporalNotReady, applier, read_body, receive
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
# Delivery errors of a status callback (https://www.twilio.com/docs/api/errors/30003 to 30008).
DELIVERY_ERRORS = {
    30003: "unreachable_handset",  # switched off or out of coverage: temporary
    30004: "message_blocked",  # the recipient or their carrier blocks us
    30005: "unknown_handset",  # the number does not exist (any more)
    30006: "landline_or_unreachable_carrier",  # a landline, or a carrier that takes no SMS
    30007: "carrier_filtered",  # filtered as spam by the carrier: our content or sender, not the number
    30008: "unknown_error",
}
# The number itself cannot receive SMS: it is marked undeliverable and the journey's fallback runs.
UNREACHABLE_NUMBER_ERRORS = frozenset({30005, 30006})
STATUS_KIND = "twilio_status"
INBOUND_KIND = "twilio_inbound"

# Twilio's default opt-out and opt-in keywords (Advanced Opt-Out), so our consent matches its own block list.
OPT_OUT_KEYWORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPTOUT", "REVOKE"})
OPT_IN_KEYWORDS = frozenset({"START", "UNSTOP", "YES"})


class StatusCallbackResult(BaseModel):
    """What we did with one status callback (no personal data); ``stored`` when it waits to be applied."""

    message_id: str | None
    status: str
    known: bool
    forwarded: str | None = None
    stored: bool = False


@router.post(STATUS_PATH, response_model=StatusCallbackResult)
async def twilio_status(request: Request) -> StatusCallbackResult:
    """A status callback: stored, then applied (delivered / undelivered / failed become journey events)."""
    return await store_status(request, STATUS_KIND)


async def store_status(request: Request, kind: str) -> StatusCallbackResult:
    """Any Twilio channel's status callback, verified and stored in the inbox under ``kind``: what
    its applier did when it could run at once, else that it waits (``stored``)."""
    params, body = await _verified_params(request)
    _, status = status_of(params)
    query = request.scope.get("query_string", b"").decode("latin-1")
    applied, result = await receive(request.app.state, "twilio", kind, query, body)
    if applied:
        return cast(StatusCallbackResult, result)
    return StatusCallbackResult(
        message_id=request.query_params.get("message_id"), status=status, known=False, stored=True
    )


@applier(STATUS_KIND)
async def apply_status(state: Any, item: InboxItem) -> StatusCallbackResult:
    """What a stored status callback changes: ledger evidence, a journey event, an outcome."""
    params = _form(item.body)
    sid = params.get("MessageSid") or params.get("SmsSid") or ""
    status = params.get("MessageStatus") or params.get("SmsStatus") or ""
    message_id = dict(parse_qsl(item.query)).get("message_id")
    if not message_id:
        log.info("twilio status %r for %s without a message_id: accepted", status, sid)
        return StatusCallbackResult(message_id=None, status=status, known=False)

    ledger: MessageLedger = state.ledger
    entry = await asyncio.to_thread(ledger.find, message_id)
    if entry is None:
        log.info("twilio status %r for unknown message %s (%s): accepted", status, message_id, sid)
        return StatusCallbackResult(message_id=message_id, status=status, known=False)

    error_code = _int(params.get("ErrorCode"))
    event_type = delivery_event(status, error_code)
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
            if error_code in DELIVERY_ERRORS:
                properties["reason"] = DELIVERY_ERRORS[error_code]
        await forward_delivery(state, entry, f"twilio_{sid}_{status}", event_type, properties, item.received_at)
        log.info("twilio status %r for message %s -> %s", status, message_id, event_type)
    # Evidence after forwarding: a row that failed above stays pending and is applied again.
    await asyncio.to_thread(ledger.record_event, message_id, status)
    return StatusCallbackResult(message_id=message_id, status=status, known=True, forwarded=event_type)


def status_of(params: Mapping[str, str]) -> tuple[str, str]:
    """A status callback's message SID and status (400 without them), for every Twilio channel."""
    sid = params.get("MessageSid") or params.get("SmsSid")
    status = params.get("MessageStatus") or params.get("SmsStatus")
    if not sid or not status:
        raise HTTPException(status_code=400, detail="a status callback needs MessageSid and MessageStatus")
    return sid, status


async def forward_delivery(
    state: Any, entry: LedgerEntry, event_id: str, event_type: str, properties: dict[str, Any], at: datetime
) -> None:
    """A delivery report about one of our messages, as a journey event for its customer (and for
    analytics); shared by every Twilio channel, whose ``properties`` name it. ``at``: when Twilio
    reported it (the inbox's receipt time, also when it is applied after an outage)."""
    ledger: MessageLedger = state.ledger
    event = Event.parse(
        {
            "id": event_id,
            "type": event_type,
            "customer_id": entry.customer_id,
            "timestamp": at.isoformat(),
            "source": properties["channel"],
            "properties": properties,
        }
    )
    await _ingest(state).submit([event])
    await asyncio.to_thread(record_outcomes, ledger.engine, outcomes_of([event]))


def delivery_event(status: str, error_code: int | None) -> str | None:
    """Our event for a final status: a landline or an unknown handset (30006, 30005) is a bounce,
    which marks the number undeliverable; other failures are ``message_failed``."""
    if status in ("undelivered", "failed") and error_code in UNREACHABLE_NUMBER_ERRORS:
        return "message_bounced"
    return DELIVERY_EVENTS.get(status)


@router.post(INBOUND_PATH)
async def twilio_inbound(request: Request) -> Response:
    """An SMS to our number: stored, then applied (opt-out and opt-in change the customer's consent)."""
    params, body = await _verified_params(request)
    sid = params.get("MessageSid") or params.get("SmsMessageSid") or params.get("SmsSid") or ""
    if consent_keyword(params) is None or not params.get("From"):
        log.info("twilio inbound %s is not a consent keyword: nothing to do", sid or "(no sid)")
        return _twiml()
    if not sid:
        raise HTTPException(status_code=400, detail="an inbound message needs MessageSid")
    await receive(request.app.state, "twilio", INBOUND_KIND, "", body)
    return _twiml()


def consent_keyword(params: Mapping[str, str]) -> tuple[bool, str] | None:
    """``(granted, keyword)`` when an inbound message changes SMS consent, else None.

    Twilio's Advanced Opt-Out tells us what it did with ``OptOutType`` (``STOP``, ``START`` or
    ``HELP``), also for custom keywords such as Spanish ``PARAR`` that our own list does not know
    (https://www.twilio.com/docs/messaging/tutorials/advanced-opt-out#opt-out-type): Twilio blocks
    or unblocks the number on its side, so consent here must follow. Without ``OptOutType`` (Advanced
    Opt-Out off) the default keywords decide. ``HELP`` changes nothing.
    """
    keyword = (params.get("Body") or "").strip().upper()
    opt_out_type = (params.get("OptOutType") or "").strip().upper()
    if opt_out_type == "STOP":
        return False, keyword or "stop"
    if opt_out_type == "START":
        return True, keyword or "start"
    if opt_out_type:
        return None
    if keyword in OPT_OUT_KEYWORDS:
        return False, keyword
    if keyword in OPT_IN_KEYWORDS:
        return True, keyword
    return None


@applier(INBOUND_KIND)
async def apply_inbound(state: Any, item: InboxItem) -> None:
    """What a stored consent reply changes: every customer we texted at that number."""
    params = _form(item.body)
    sid = params.get("MessageSid") or params.get("SmsMessageSid") or params.get("SmsSid") or ""
    found = consent_keyword(params)
    sender = params.get("From")
    if found is None or not sender:
        return
    granted, keyword = found
    ledger: MessageLedger = state.ledger
    last_messages = await asyncio.to_thread(ledger.last_messages_to, "sms", sender)
    customer_ids = list(last_messages)
    if not customer_ids:
        log.info("twilio inbound %s (%s) from a number we never messaged: accepted", sid, _safe(keyword))
        return
    events = [
        Event.parse(
            {
                "id": f"twilio_{sid}_consent_{customer_id}",
                "type": "consent_changed",
                "customer_id": customer_id,
                "timestamp": item.received_at.isoformat(),
                "source": "sms",
                "properties": {"channel": "sms", "granted": granted, "via": f"twilio_{_safe(keyword).lower()}",
                               **provenance("sms_keyword", keyword=_safe(keyword), message_sid=sid)},
            }
        )
        for customer_id in customer_ids
    ]
    await _ingest(state).submit(events)
    if not granted:  # the reply answers the last text each of them got from us at that number
        stopped = [
            outcome(message_id, "unsubscribed", item.received_at, f"twilio_{sid}", channel="sms")
            for message_id in last_messages.values()
        ]
        await asyncio.to_thread(record_outcomes, ledger.engine, stopped)
    log.info(
        "twilio inbound %s: sms consent %s for customers %s",
        sid,
        "granted" if granted else "revoked",
        ", ".join(customer_ref(customer_id) for customer_id in customer_ids),
    )


async def _verified_params(request: Request) -> tuple[ImmutableMultiDict[str, str], bytes]:
    """The form parameters, once the signature proves Twilio sent them; else 403 (503 unconfigured)."""
    settings: Settings = getattr(request.app.state, "settings", None) or get_settings()
    if settings.twilio_auth_token is None:
        log.error("twilio webhook refused: OMNICART_TWILIO_AUTH_TOKEN is not set, signatures cannot be checked")
        raise HTTPException(status_code=503, detail="webhook verification token is not configured")
    body = await read_body(request, MAX_BODY_BYTES)
    try:
        params = _form(body)
    except UnicodeDecodeError:
        raise HTTPException(status_code=403, detail="the body is not a signed Twilio form") from None
    signature = request.headers.get(SIGNATURE_HEADER)
    if not signature:
        raise HTTPException(status_code=403, detail=f"unsigned: the {SIGNATURE_HEADER} header is required")
    url = public_url_of(settings, request)
    if not RequestValidator(settings.twilio_auth_token.get_secret_value()).validate(url, params, signature):
        log.warning("twilio webhook %s refused: the signature does not match", request.url.path)
        raise HTTPException(status_code=403, detail="the signature does not match")
    return params, body


def _form(body: bytes) -> ImmutableMultiDict[str, str]:
    return ImmutableMultiDict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value else None
    except ValueError:
        return None


def _safe(keyword: str) -> str:
    """A keyword as it may appear in an event id or a log: letters only, at most 20 (never a body)."""
    return "".join(c for c in keyword if c.isascii() and c.isalpha())[:20] or "keyword"


def public_url_of(settings: Settings, request: Request) -> str:
    """The URL Twilio called, as Twilio knows it: our public URL, the path, the raw query string."""
    query = request.scope.get("query_string", b"").decode("latin-1")
    url = settings.public_url.rstrip("/") + request.url.path
    return f"{url}?{query}" if query else url


def _ingest(state: Any) -> Any:
    ingest = getattr(state, "ingest", None)
    if ingest is None:
        raise TemporalNotReady("the API is not connected to Temporal yet")
    return ingest


def _twiml() -> Response:
    return Response(content=str(MessagingResponse()), media_type="text/xml")
