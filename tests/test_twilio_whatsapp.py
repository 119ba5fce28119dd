"""The Twilio WhatsApp channel, through the real ``twilio`` SDK, against the local Messages API.

What goes on the wire (``whatsapp:`` addresses, ``ContentSid`` and ``ContentVariables`` as JSON, or
``Body`` when the journey chose free-form) and what the fake, like Twilio, answers: an unknown
template refused at once (21655), free text outside the 24-hour window accepted but failed by status
callback with 63016.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from omnicart.channels.base import PermanentChannelError, RenderedMessage
from omnicart.channels.twilio_whatsapp import TwilioWhatsAppSender
from omnicart.settings import Settings
from tests.providers.twilio_server import TwilioServer
from tests.test_twilio_sms import PHONE, SID, TOKEN, make_settings

SENDER = "+15005550009"
OPENER = "HX" + "1" * 32


@pytest.fixture
def twilio() -> Iterator[TwilioServer]:
    with TwilioServer(SID, TOKEN) as server:
        server.whatsapp.sender = f"whatsapp:{SENDER}"
        server.whatsapp.approve(OPENER, "marketing", {"1", "2"})
        yield server


def settings_for(twilio: TwilioServer) -> Settings:
    return make_settings(twilio, twilio_whatsapp_from=SENDER)


def whatsapp(**overrides: Any) -> RenderedMessage:
    values: dict[str, Any] = {
        "message_id": "msg_wa_1", "customer_id": "cus_42", "journey": "abandoned_cart", "run_id": "run_1",
        "step_id": "whatsapp", "channel": "whatsapp", "template_name": "cart_whatsapp", "to": [PHONE],
        "content_sid": OPENER, "content_variables": {"1": "Ayşe", "2": "https://shop.example/c/1"},
        "body": "Your cart: https://shop.example/c/1",
    }
    values.update(overrides)
    return RenderedMessage(**values)


async def test_a_template_goes_as_content_sid_and_json_variables_from_the_whatsapp_sender(
    twilio: TwilioServer,
) -> None:
    delivery = await TwilioWhatsAppSender(settings_for(twilio)).send(whatsapp())
    [request] = twilio.whatsapp.sent()
    assert request.field("From") == f"whatsapp:{SENDER}" and request.field("To") == f"whatsapp:{PHONE}"
    assert request.field("ContentSid") == OPENER and request.field("Body") is None
    assert json.loads(request.field("ContentVariables") or "") == {"1": "Ayşe", "2": "https://shop.example/c/1"}
    assert request.field("StatusCallback") == "https://shop.example/webhooks/twilio/whatsapp/status?message_id=msg_wa_1"
    assert delivery.provider_message_id and delivery.provider_message_id.startswith("SM")
    assert [c.params["MessageStatus"] for c in twilio.whatsapp.take_callbacks()] == ["sent", "delivered"]


async def test_free_text_outside_the_window_is_accepted_then_failed_with_63016(twilio: TwilioServer) -> None:
    await TwilioWhatsAppSender(settings_for(twilio)).send(whatsapp(free_form=True))
    [request] = twilio.whatsapp.sent()
    assert request.field("Body") == "Your cart: https://shop.example/c/1" and request.field("ContentSid") is None
    [callback] = twilio.whatsapp.take_callbacks()
    assert (callback.params["MessageStatus"], callback.params["ErrorCode"]) == ("failed", "63016")


async def test_free_text_inside_the_window_is_delivered(twilio: TwilioServer) -> None:
    twilio.whatsapp.customer_writes(PHONE, "hello", "https://shop.example/webhooks/twilio/whatsapp/inbound")
    await TwilioWhatsAppSender(settings_for(twilio)).send(whatsapp(free_form=True))
    assert [c.params["MessageStatus"] for c in twilio.whatsapp.take_callbacks()] == ["sent", "delivered"]


async def test_an_unapproved_template_is_refused_for_good(twilio: TwilioServer) -> None:
    with pytest.raises(PermanentChannelError, match="21655"):
        await TwilioWhatsAppSender(settings_for(twilio)).send(whatsapp(content_sid="HX" + "9" * 32))


def test_whatsapp_needs_its_own_sender(twilio: TwilioServer) -> None:
    with pytest.raises(ValueError, match="OMNICART_TWILIO_WHATSAPP_FROM"):
        TwilioWhatsAppSender(make_settings(twilio))
