"""WhatsApp through Twilio's Messages API, with the same official ``twilio`` SDK as SMS.

WhatsApp differs from SMS in what may be sent, not in how: the same ``Messages.json`` request, with
``whatsapp:+E164`` addresses. A business may open a conversation only with a template Meta approved,
sent as Twilio Content (``ContentSid`` plus ``ContentVariables``, a JSON object of the placeholders);
free-form text (``Body``) is allowed only inside the 24-hour customer-service window that the
customer's own last message opened. That choice is the journey's (the interpreter knows the last
inbound message and puts ``free_form`` on the send); this module only carries it out.

WhatsApp refuses most messages *after* Twilio accepted them: the status callback reports ``failed``
or ``undelivered`` with an error code. :func:`classify_whatsapp_error` says which of those codes
are final for this message, so the webhook can send the journey on to its fallback channel (SMS,
email), and which mean the number has no WhatsApp at all.

Transport, timeouts, error classification at request time and phone-number redaction are the SMS
sender's (``omnicart.channels.twilio_sms``), reused as they are.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any
from urllib.parse import urlencode

from twilio.http import HttpClient

from omnicart.channels.base import Delivery, PermanentChannelError, RenderedMessage
from omnicart.channels.twilio_sms import TwilioSmsSender
from omnicart.observability import provider_span
from omnicart.security.pseudonym import customer_ref
from omnicart.settings import Settings

log = logging.getLogger(__name__)

PREFIX = "whatsapp:"
STATUS_CALLBACK_PATH = "/webhooks/twilio/whatsapp/status"

# https://www.twilio.com/docs/api/errors (63xxx: WhatsApp). Final for this message: the journey
# moves on to its fallback channel.
FALLBACK_CODES = frozenset(
    {
        63016,  # free-form message outside the 24-hour window (or a template sent as Body)
        63049,  # Meta chose not to deliver this marketing template (per-user marketing limits)
        63032,  # WhatsApp will not deliver to this user (e.g. a user in an experiment group)
        63024,  # invalid message recipient
        63003,  # the number has no WhatsApp account
        63030,  # unsupported parameter for this type of message
        63013,  # the message violates WhatsApp's policy
        63018,  # the sender's rate limit: this message is dropped, not queued (pace the channel: send_rates)
    }
)
NOT_ON_WHATSAPP = frozenset({63003, 63024})
"""The number cannot receive WhatsApp at all: marked undeliverable for the channel (not for SMS)."""


def classify_whatsapp_error(code: int | None) -> tuple[bool, bool]:
    """(``fallback``, ``invalid_address``) for a failed WhatsApp delivery's error code.

    An unknown code is not final: an operator reads it in the ledger's evidence and the logs, and
    the customer is not moved to another channel on a guess.
    """
    if code is None:
        return False, False
    return code in FALLBACK_CODES, code in NOT_ON_WHATSAPP


class TwilioWhatsAppSender:
    """The ``whatsapp`` channel on Twilio: one template or free-form message to one number per send."""

    provider = "twilio"

    def __init__(self, settings: Settings, http_client: HttpClient | None = None, *, timeout: float = 10.0) -> None:
        """Configure from settings: the Twilio account, and ``twilio_whatsapp_from`` as the sender.

        The SMS sender does the talking (same account, transport and error mapping); it is given the
        WhatsApp number as its sender and no Messaging Service, since WhatsApp here sends from one
        approved number.
        """
        if not settings.twilio_whatsapp_from:
            raise ValueError("WhatsApp needs OMNICART_TWILIO_WHATSAPP_FROM (the approved WhatsApp sender)")
        self._settings = settings
        self._sender = f"{PREFIX}{settings.twilio_whatsapp_from.removeprefix(PREFIX)}"
        self._twilio = TwilioSmsSender(
            settings.model_copy(update={"twilio_from_number": self._sender, "twilio_messaging_service_sid": None}),
            http_client,
            timeout=timeout,
        )

    def fields_of(self, message: RenderedMessage) -> dict[str, Any]:
        """The Messages API fields for this message: the template, or free text when the journey chose it."""
        if len(message.to) != 1:
            raise PermanentChannelError(
                f"WhatsApp message {message.message_id} needs exactly one phone number, got {len(message.to)}",
                invalid_address=not message.to,
            )
        fields: dict[str, Any] = {
            "to": f"{PREFIX}{message.to[0].removeprefix(PREFIX)}",
            "from_": self._sender,
            "status_callback": self.status_callback_url(message.message_id),
        }
        if message.free_form:
            if not (message.body or "").strip():
                raise PermanentChannelError(f"WhatsApp message {message.message_id} has an empty body")
            fields["body"] = message.body
        else:
            if not message.content_sid:
                raise PermanentChannelError(f"WhatsApp message {message.message_id} has no content_sid")
            fields["content_sid"] = message.content_sid
            if message.content_variables:
                fields["content_variables"] = json.dumps(message.content_variables, ensure_ascii=False)
        return fields

    def status_callback_url(self, message_id: str) -> str:
        """Where Twilio reports delivery; the message id rides along so the webhook finds the send."""
        base = self._settings.public_url.rstrip("/")
        return f"{base}{STATUS_CALLBACK_PATH}?{urlencode({'message_id': message_id})}"

    async def send(self, message: RenderedMessage) -> Delivery:
        """Hand one WhatsApp message to Twilio. Acceptance is not delivery: see the status webhook."""
        fields = self.fields_of(message)
        client = self._twilio.client
        with provider_span(self.provider, "send", message.message_id, message.channel):
            created = await asyncio.to_thread(self._twilio.call, lambda: client.messages.create(**fields))
        log.info(
            "twilio accepted whatsapp message %s for customer %s as %s (%s)",
            message.message_id,
            customer_ref(message.customer_id),
            created.sid,
            "free-form" if message.free_form else "template",
        )
        return Delivery(provider=self.provider, provider_message_id=created.sid)
