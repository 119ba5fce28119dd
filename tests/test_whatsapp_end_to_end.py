"""WhatsApp end to end on the real Temporal dev server, through the real ``twilio`` SDK.

The product runs as in production (ingest API with its signed webhooks, the customer workflow and
the send activity on a real worker); only Twilio's far end is the loopback fake, which speaks
WhatsApp as the Messages API does: ``whatsapp:`` addresses, Content templates by ``ContentSid`` and
``ContentVariables``, free-form ``Body`` refused (63016) outside the customer's 24-hour window,
Meta's refusal of a marketing template (63049), and status callbacks signed with the auth token.
WhatsApp's verdicts arrive by status callback, so each test delivers the fake's callbacks to our
webhook, as Twilio would.

The journey (``tests/journeys_e2e/whatsapp_cart.yaml``): a WhatsApp template one second after the
checkout, falling back to SMS then email; then it waits for the customer's reply and answers it.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx
from temporalio.testing import WorkflowEnvironment

from omnicart.ledger import MessageLedger
from omnicart.storage import get_engine
from tests import test_channels_end_to_end as channels
from tests.providers.twilio_server import Callback, Recorded
from tests.providers.twilio_server import Reply as TwilioReply
from tests.support.runtime import journal
from tests.support.timelines import describe
from tests.test_channels_end_to_end import (
    PHONE,
    SHOP_URL,
    Providers,
    abandoned_checkout,
    customer_state,
    eventually,
    journal_until,
    mails_of,
    new_customer,
    product,
    product_settings,
    published,
)

WHATSAPP_SENDER = "+15005550009"
OPENER = "HXb5b62575e6e4ff6129ad7c8efe1f983e"  # tests/journeys_e2e/templates/cart_whatsapp.yaml
ANSWER = "HX2f1c1bd1c3b14b9e8c6a5a8e2f6e1d77"  # cart_whatsapp_answer.yaml
INBOUND_URL = f"{SHOP_URL}/webhooks/twilio/whatsapp/inbound"
ALL_CONSENT = {"email": True, "sms": True, "push": False, "whatsapp": True}

# The loopback providers and their keys, as the channels' end-to-end tests set them up.
providers = channels.providers
webhook_key = channels.webhook_key
service_account_key = channels.service_account_key


def whatsapp_settings(providers: Providers, tmp_path: Path) -> Any:
    """The product with Twilio's WhatsApp sender configured, and the account's approved templates."""
    providers.twilio.whatsapp.sender = f"whatsapp:{WHATSAPP_SENDER}"
    providers.twilio.whatsapp.approve(OPENER, "marketing", {"1", "2"})
    providers.twilio.whatsapp.approve(ANSWER, "utility", {"1"})
    return product_settings(
        providers, tmp_path, published(tmp_path, "whatsapp_cart.yaml"), twilio_whatsapp_from=WHATSAPP_SENDER
    )


async def post_callbacks(http: httpx.AsyncClient, callbacks: list[Callback]) -> list[httpx.Response]:
    """Twilio calling our webhooks: the form, signed, at the URL it was given."""
    answers = []
    for callback in callbacks:
        response = await http.post(
            callback.path_and_query, data=callback.params, headers={"X-Twilio-Signature": callback.signature}
        )
        assert response.status_code == 200, response.text
        answers.append(response)
    return answers


async def whatsapp_messages(providers: Providers, count: int) -> list[Recorded]:
    async def probe() -> list[Recorded] | None:
        sent = providers.twilio.whatsapp.sent()
        return sent if len(sent) >= count else None

    return await eventually(probe, f"Twilio to receive {count} WhatsApp message(s)")


async def deliver_status(http: httpx.AsyncClient, providers: Providers, count: int) -> None:
    """Wait for the fake's next ``count`` status callbacks, then post them to our webhook."""

    async def probe() -> list[Callback] | None:
        return list(providers.twilio.whatsapp.callbacks) if len(providers.twilio.whatsapp.callbacks) >= count else None

    await eventually(probe, f"{count} WhatsApp status callback(s)")
    await post_callbacks(http, providers.twilio.whatsapp.take_callbacks())


async def test_a_template_opens_the_conversation_and_a_reply_lets_the_answer_go_free_form(
    dev_env: WorkflowEnvironment, providers: Providers, tmp_path: Path
) -> None:
    settings = whatsapp_settings(providers, tmp_path)
    customer, cart_id = new_customer(), f"cart_{uuid.uuid4().hex[:6]}"
    async with product(dev_env, settings) as http:
        response = await http.post("/v1/events", json=abandoned_checkout(customer, cart_id, consent=ALL_CONSENT))
        assert response.status_code == 202, response.text

        [opener] = await whatsapp_messages(providers, 1)
        await deliver_status(http, providers, 2)  # sent, delivered
        # The customer answers on WhatsApp; Twilio posts it to our inbound URL, signed.
        reply = providers.twilio.whatsapp.customer_writes(PHONE, "Is the tote waterproof?", INBOUND_URL)
        [answered] = await post_callbacks(http, [reply])
        _, answer = await whatsapp_messages(providers, 2)
        await deliver_status(http, providers, 2)
        lines = await journal_until(dev_env.client, customer, "exit completed")
        state = await customer_state(dev_env.client, customer)
        sends = await _journal_entries(dev_env, customer)

    assert "<Message>" not in answered.text  # an ordinary message gets no automatic answer
    assert opener.field("From") == f"whatsapp:{WHATSAPP_SENDER}" and opener.field("To") == f"whatsapp:{PHONE}"
    assert opener.field("ContentSid") == OPENER and opener.field("Body") is None
    assert opener.form["ContentVariables"] == [
        f'{{"1": "Ada", "2": "https://shop.example/cart/{cart_id}/restore"}}'
    ]
    # Inside the window the answer is free text, which the fake (like WhatsApp) delivers.
    assert answer.field("ContentSid") is None
    assert answer.field("Body") == (  # its link tagged like any journey link
        f"Thanks Ada! Your cart is saved here: https://shop.example/cart/{cart_id}/restore"
        "?utm_source=omnicart&utm_medium=whatsapp&utm_campaign=whatsapp_cart&utm_content=answer"
    )
    assert lines == [
        "enter",
        "send whatsapp cart_whatsapp",
        "send whatsapp cart_whatsapp_answer",
        "exit completed",
    ]
    # The status callbacks are recorded: as evidence on the ledger, and as the customer's events.
    ledger = MessageLedger(get_engine(settings.database()))
    for send in sends:
        entry = ledger.find(send["message_id"])
        assert entry is not None and {"sent", "delivered"} <= set(entry.evidence)
    assert state.profile.inbound_at["whatsapp"] is not None
    assert state.delivering == []  # every delivery report arrived
    assert providers.twilio.sent() == providers.twilio.whatsapp.sent()  # no SMS


async def test_without_whatsapp_opt_in_the_step_falls_back_to_sms(
    dev_env: WorkflowEnvironment, providers: Providers, tmp_path: Path
) -> None:
    settings = whatsapp_settings(providers, tmp_path)
    customer = new_customer()
    async with product(dev_env, settings) as http:
        # SMS consent does not imply WhatsApp consent.
        consent = {"email": True, "sms": True, "push": False}
        response = await http.post("/v1/events", json=abandoned_checkout(customer, "cart_wa_no", consent=consent))
        assert response.status_code == 202, response.text
        lines = await journal_until(dev_env.client, customer, "send sms cart_reminder_sms")

        async def texted() -> list[Recorded] | None:
            return providers.twilio.sent() or None

        [text] = await eventually(texted, "Twilio to receive the fallback SMS")
    assert lines[:3] == ["enter", "skip whatsapp cart_whatsapp no_whatsapp_consent", "send sms cart_reminder_sms"]
    assert text.field("To") == PHONE and "Juniper & Co" in (text.field("Body") or "")
    assert providers.twilio.whatsapp.sent() == []


async def test_iptal_over_whatsapp_revokes_whatsapp_consent_only_and_is_confirmed(
    dev_env: WorkflowEnvironment, providers: Providers, tmp_path: Path
) -> None:
    settings = whatsapp_settings(providers, tmp_path)
    customer = new_customer()
    async with product(dev_env, settings) as http:
        response = await http.post("/v1/events", json=abandoned_checkout(customer, "cart_wa_stop", consent=ALL_CONSENT))
        assert response.status_code == 202, response.text
        await whatsapp_messages(providers, 1)
        # Turkish for "cancel", written with a capital dotted İ, as a Turkish keyboard does.
        stop = providers.twilio.whatsapp.customer_writes(PHONE, " İptal ", INBOUND_URL)
        [answered] = await post_callbacks(http, [stop])
        lines = await journal_until(dev_env.client, customer, "exit completed")
        state = await customer_state(dev_env.client, customer)

    assert "Artık bizden WhatsApp mesajı almayacaksınız." in answered.text
    assert state.profile.consent == {"email": True, "sms": True, "push": False, "whatsapp": False}
    # The reply resumed the journey, whose WhatsApp answer is now skipped: no consent.
    assert lines == [
        "enter",
        "send whatsapp cart_whatsapp",
        "skip whatsapp cart_whatsapp_answer no_whatsapp_consent",
        "exit completed",
    ]
    assert len(providers.twilio.whatsapp.sent()) == 1


async def test_a_marketing_template_meta_refuses_falls_back_to_sms_then_email(
    dev_env: WorkflowEnvironment, providers: Providers, tmp_path: Path
) -> None:
    settings = whatsapp_settings(providers, tmp_path)
    providers.twilio.whatsapp.hold_marketing(PHONE)  # Meta's per-user marketing limit: 63049
    customer = new_customer()
    async with product(dev_env, settings) as http:
        response = await http.post("/v1/events", json=abandoned_checkout(customer, "cart_wa_held", consent=ALL_CONSENT))
        assert response.status_code == 202, response.text
        [opener] = await whatsapp_messages(providers, 1)
        # The SMS that follows is refused too: the number replied STOP to our SMS sender (21610).
        providers.twilio.script(TwilioReply.error(400, 21610, "Attempt to send to unsubscribed recipient"))
        [callback] = await eventually(
            lambda: _ready(providers.twilio.whatsapp.callbacks), "Twilio's 63049 status callback"
        )
        assert callback.params["MessageStatus"] == "failed" and callback.params["ErrorCode"] == "63049"
        await post_callbacks(http, providers.twilio.whatsapp.take_callbacks())
        lines = await journal_until(dev_env.client, customer, "send email cart_reminder_2")
        state = await customer_state(dev_env.client, customer)
        sends = await _journal_entries(dev_env, customer)

        async def mailed() -> list[Any] | None:
            return mails_of(providers.sendgrid, customer) or None

        [mail] = await eventually(mailed, "SendGrid to receive the last fallback")
    assert lines[:6] == [
        "enter",
        "send whatsapp cart_whatsapp",
        "skip whatsapp cart_whatsapp whatsapp_failed",
        "send sms cart_reminder_sms",
        "skip sms cart_reminder_sms sms_failed",
        "send email cart_reminder_2",
    ]
    assert opener.field("ContentSid") == OPENER
    assert mail.json["custom_args"]["template"] == "cart_reminder_2"
    assert state.profile.consent["whatsapp"] is True  # Meta's refusal is no opt-out
    assert state.profile.consent["sms"] is False  # 21610 is
    message_id = next(entry["message_id"] for entry in sends if entry.get("channel") == "whatsapp")
    entry = MessageLedger(get_engine(settings.database())).find(message_id)
    assert entry is not None and "failed" in entry.evidence


async def _ready(callbacks: list[Callback]) -> list[Callback] | None:
    return list(callbacks) or None


async def _journal_entries(dev_env: WorkflowEnvironment, customer: str) -> list[dict[str, Any]]:
    return [entry for entry in await journal(dev_env.client, customer) if describe(entry).startswith("send")]
