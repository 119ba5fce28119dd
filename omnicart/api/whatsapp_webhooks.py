"""Twilio's WhatsApp webhooks: delivery reports, and the customer's own messages, back into journeys.

Both routes check ``X-Twilio-Signature`` exactly as the SMS webhooks do (the same function), so a
forged request changes nothing; event ids derive from Twilio's ``MessageSid``, so a replay is ignored.
Like them, a verified request is stored in the webhook inbox and answered at once, and applied then
or after a Temporal outage (``omnicart.api.webhook_inbox``: Twilio does not retry a 5xx).

* ``POST /webhooks/twilio/whatsapp/status`` is the status callback URL the WhatsApp sender gives
  Twilio. ``delivered`` and ``read`` become ``message_delivered``; ``failed`` and ``undelivered``
  become ``message_failed`` with the error code and ``fallback: true`` when the code is final for
  the message (``omnicart.channels.twilio_whatsapp.classify_whatsapp_error``: 63049, a marketing
  template Meta held back; 63016, free text outside the window; ...). WhatsApp refuses most messages
  only here, after Twilio accepted them, so this is where the journey learns to try SMS or email.
* ``POST /webhooks/twilio/whatsapp/inbound`` is the WhatsApp sender's incoming-message URL. Every
  message becomes ``message_received`` (channel ``whatsapp``) for each customer at that number: it
  opens the 24-hour window for free-form text. Twilio's STOP handling does not cover WhatsApp, so
  omnicart handles opt-out itself: a message that is exactly an opt-out keyword (``OPT_OUT``, in
  English, Turkish, Spanish, ...) also becomes ``consent_changed`` whatsapp ``granted: false`` (SMS
  and email consent are untouched: each channel is its own consent), and is answered with a
  confirmation in the keyword's language, inside the window the message itself opened. Opt-in is
  never taken from a keyword: WhatsApp consent is given where the shop collects it.

Phone numbers and message texts never reach the logs; only ids and the customer's safe reference.
"""

from __future__ import annotations

import asyncio
import logging
import unicodedata
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, HTTPException, Request, Response
from twilio.twiml.messaging_response import MessagingResponse

from omnicart.analytics.outcomes import outcome
from omnicart.analytics.store import record_outcomes
from omnicart.api.twilio_webhooks import (
    StatusCallbackResult,
    _form,
    _ingest,
    _verified_params,
    forward_delivery,
    status_of,
    store_status,
)
from omnicart.api.webhook_inbox import InboxItem, applier, receive
from omnicart.channels.twilio_whatsapp import PREFIX, STATUS_CALLBACK_PATH, classify_whatsapp_error
from omnicart.consent.provenance import provenance
from omnicart.customers.profiles import CustomerProfiles
from omnicart.events import Event
from omnicart.ledger import MessageLedger
from omnicart.security.pseudonym import customer_ref
from omnicart.settings import Settings, get_settings

log = logging.getLogger(__name__)

router = APIRouter(tags=["webhooks"])

STATUS_PATH = STATUS_CALLBACK_PATH
INBOUND_PATH = "/webhooks/twilio/whatsapp/inbound"
STATUS_KIND = "whatsapp_status"
INBOUND_KIND = "whatsapp_inbound"

DELIVERY_EVENTS = {
    "delivered": "message_delivered",
    "read": "message_delivered",
    "undelivered": "message_failed",
    "failed": "message_failed",
}
OPT_OUT: dict[str, str] = {
    # keyword (upper case, accents removed) -> the language of the confirmation
    "STOP": "en",
    "STOPALL": "en",
    "UNSUBSCRIBE": "en",
    "CANCEL": "en",
    "OPTOUT": "en",
    "DUR": "tr",
    "IPTAL": "tr",
    "BAJA": "es",
    "CANCELAR": "es",
}
CONFIRMATION = {
    "en": "You will get no more WhatsApp messages from us.",
    "tr": "Artık bizden WhatsApp mesajı almayacaksınız.",
    "es": "Ya no recibirás más mensajes de WhatsApp de nuestra parte.",
}


def opt_out_language(body: str) -> str | None:
    """The confirmation's language when ``body`` is exactly an opt-out keyword, else None.

    Case, surrounding blanks and accents do not matter ("İptal", "iptal", " STOP ").
    """
    folded = unicodedata.normalize("NFKD", body.strip().upper())
    keyword = "".join(char for char in folded if not unicodedata.combining(char))
    return OPT_OUT.get(keyword)


@router.post(STATUS_PATH, response_model=StatusCallbackResult)
async def whatsapp_status(request: Request) -> StatusCallbackResult:
    """A WhatsApp status callback: stored, then applied (delivered / read / failed / undelivered
    become journey events)."""
    return await store_status(request, STATUS_KIND)


@applier(STATUS_KIND)
async def apply_whatsapp_status(state: Any, item: InboxItem) -> StatusCallbackResult:
    """What a stored WhatsApp status callback changes: a journey event (with ``fallback`` when the
    error is final for the message), ledger evidence, an outcome."""
    params = _form(item.body)
    sid, status = status_of(params)
    message_id = dict(parse_qsl(item.query)).get("message_id")
    ledger: MessageLedger = state.ledger
    entry = await asyncio.to_thread(ledger.find, message_id) if message_id else None
    if entry is None:
        log.info("whatsapp status %r for unknown message %s (%s): accepted", status, message_id, sid)
        return StatusCallbackResult(message_id=message_id, status=status, known=False)

    event_type = DELIVERY_EVENTS.get(status)
    if event_type is not None:
        properties: dict[str, Any] = {
            "channel": "whatsapp",
            "message_id": entry.message_id,
            "journey": entry.journey,
            "provider_message_id": sid,
            "status": status,
        }
        code = params.get("ErrorCode")
        if event_type == "message_failed":
            fallback, invalid_address = classify_whatsapp_error(int(code) if code and code.isdigit() else None)
            properties.update(error_code=code or None, fallback=fallback, invalid_address=invalid_address)
        await forward_delivery(state, entry, f"twilio_{sid}_{status}", event_type, properties, item.received_at)
        log.info("whatsapp status %r (error %s) for message %s -> %s", status, code, entry.message_id,
                 event_type)
    await asyncio.to_thread(ledger.record_event, entry.message_id, status)
    return StatusCallbackResult(message_id=entry.message_id, status=status, known=True, forwarded=event_type)


@router.post(INBOUND_PATH)
async def whatsapp_inbound(request: Request) -> Response:
    """A WhatsApp message from a customer: stored, then applied (opens the window; an opt-out keyword
    revokes WhatsApp consent). The confirmation is the answer itself, so it goes out at once."""
    params, body = await _verified_params(request)
    sid = params.get("MessageSid") or params.get("SmsMessageSid") or ""
    sender = (params.get("From") or "").removeprefix(PREFIX)
    if not sid or not sender:
        raise HTTPException(status_code=400, detail="an inbound message needs MessageSid and From")
    await receive(request.app.state, "twilio", INBOUND_KIND, "", body)
    return _reply(opt_out_language(params.get("Body") or ""))


@applier(INBOUND_KIND)
async def apply_whatsapp_inbound(state: Any, item: InboxItem) -> None:
    """Each customer at that number: ``message_received`` (and ``consent_changed`` for an opt-out)."""
    params = _form(item.body)
    sid = params.get("MessageSid") or params.get("SmsMessageSid") or ""
    sender = (params.get("From") or "").removeprefix(PREFIX)
    language = opt_out_language(params.get("Body") or "")
    customer_ids = await asyncio.to_thread(_customers_at, state, sender)
    if not customer_ids:
        log.info("whatsapp inbound %s from a number we do not know: accepted", sid)
        return
    at = item.received_at.isoformat()
    events = []
    for customer_id in customer_ids:
        if language is not None:  # before the message itself, which may resume a journey that would answer
            events.append(
                Event.parse(
                    {
                        "id": f"twilio_{sid}_consent_{customer_id}",
                        "type": "consent_changed",
                        "customer_id": customer_id,
                        "timestamp": at,
                        "source": "whatsapp",
                        "properties": {"channel": "whatsapp", "granted": False, "via": "whatsapp_keyword",
                                       **provenance("sms_keyword", message_sid=sid, language=language)},
                    }
                )
            )
        events.append(
            Event.parse(
                {
                    "id": f"twilio_{sid}_received_{customer_id}",
                    "type": "message_received",
                    "customer_id": customer_id,
                    "timestamp": at,
                    "source": "whatsapp",
                    "properties": {"channel": "whatsapp", "provider_message_id": sid},
                }
            )
        )
    await _ingest(state).submit(events)
    if language is not None:
        await asyncio.to_thread(_record_unsubscribes, state, sender, sid, item.received_at)
    log.info(
        "whatsapp inbound %s%s for customers %s",
        sid,
        " (opt-out)" if language is not None else "",
        ", ".join(customer_ref(customer_id) for customer_id in customer_ids),
    )


def _customers_at(state: Any, phone: str) -> list[str]:
    """Everyone we messaged on WhatsApp at this number, then everyone whose profile has it."""
    ledger: MessageLedger = state.ledger
    settings: Settings = getattr(state, "settings", None) or get_settings()
    found = list(ledger.last_messages_to("whatsapp", phone))
    for profile in CustomerProfiles(ledger.engine, settings.signing_secret).find_by_phone(phone):
        if profile.customer_id and profile.customer_id not in found:
            found.append(profile.customer_id)
    return found


def _record_unsubscribes(state: Any, phone: str, sid: str, at: datetime) -> None:
    """The opt-out answers the last WhatsApp message each customer got at that number (analytics)."""
    ledger: MessageLedger = state.ledger
    stopped = [
        outcome(message_id, "unsubscribed", at, f"twilio_{sid}", channel="whatsapp")
        for message_id in ledger.last_messages_to("whatsapp", phone).values()
    ]
    record_outcomes(ledger.engine, stopped)


def _reply(language: str | None) -> Response:
    """TwiML: the opt-out confirmation (sent by Twilio on WhatsApp, inside the window), or nothing."""
    response = MessagingResponse()
    if language is not None:
        response.message(CONFIRMATION[language])
    return Response(content=str(response), media_type="text/xml")
