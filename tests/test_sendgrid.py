"""SendGrid email through the real ``sendgrid`` SDK, against a local server that speaks the v3 Mail Send API."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import SecretStr

from omnicart.channels.base import (
    PermanentChannelError,
    ProviderConfigurationError,
    RenderedMessage,
    RetryableChannelError,
)
from omnicart.channels.registry import build_senders
from omnicart.channels.sendgrid_email import SendGridEmailSender
from omnicart.settings import Settings
from tests.providers.sendgrid_server import Reply, SendGridServer

API_KEY = "SG.test-key.abcdefghijklmnop"
ADDRESS = "maya.lopez@example.com"
UNSUBSCRIBE = "https://shop.example.com/v1/unsubscribe/tok.sig"


@pytest.fixture
def sendgrid() -> Iterator[SendGridServer]:
    with SendGridServer(API_KEY) as server:
        yield server


def settings_for(server: SendGridServer, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "sendgrid_api_key": SecretStr(API_KEY),
        "sendgrid_host": server.url,
        "sendgrid_from_email": "hello@shop.example.com",
        "sendgrid_from_name": "Example Shop",
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


def message(**overrides: Any) -> RenderedMessage:
    values: dict[str, Any] = {
        "message_id": "msg_cus42_run7_first_reminder_1",
        "customer_id": "cus_42",
        "journey": "abandoned_cart",
        "run_id": "run_7",
        "step_id": "first_reminder",
        "channel": "email",
        "template_name": "cart_reminder_1",
        "to": [ADDRESS],
        "subject": "You left something behind, Maya",
        "preheader": "Your cart is saved",
        "html": f"<html><body><p>Your linen shirt is waiting.</p><a href='{UNSUBSCRIBE}'>Unsubscribe</a></body></html>",
        "text": f"Your linen shirt is waiting.\nUnsubscribe: {UNSUBSCRIBE}",
        "categories": ["cart", "reminder"],
        "unsubscribe_url": UNSUBSCRIBE,
    }
    values.update(overrides)
    return RenderedMessage(**values)


async def test_mail_send_request_carries_parts_custom_args_categories_and_unsubscribe_headers(
    sendgrid: SendGridServer,
) -> None:
    delivery = await SendGridEmailSender(settings_for(sendgrid)).send(message())

    [request] = sendgrid.mail_sends()
    assert request.header("Authorization") == f"Bearer {API_KEY}"
    assert (request.header("User-Agent") or "").startswith("sendgrid/")
    body = request.json
    assert body["from"] == {"email": "hello@shop.example.com", "name": "Example Shop"}
    assert body["personalizations"][0]["to"] == [{"email": ADDRESS}]
    assert body["subject"] == "You left something behind, Maya"
    assert [part["type"] for part in body["content"]] == ["text/plain", "text/html"]
    assert body["content"][0]["value"].startswith("Your linen shirt is waiting.")
    html = body["content"][1]["value"]
    assert "Your cart is saved" in html.split("<p>")[0], "the preheader comes first in the body"
    assert html.count(UNSUBSCRIBE) == 1, "the template's own link is not duplicated"
    assert body["custom_args"] == {
        "customer_id": "cus_42",
        "journey": "abandoned_cart",
        "run_id": "run_7",
        "step_id": "first_reminder",
        "message_id": "msg_cus42_run7_first_reminder_1",
        "template": "cart_reminder_1",
    }
    assert sorted(body["categories"]) == ["abandoned_cart", "cart", "reminder"]
    assert body["headers"] == {
        "List-Unsubscribe": f"<{UNSUBSCRIBE}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }
    assert "mail_settings" not in body
    assert delivery.provider == "sendgrid"
    assert delivery.provider_message_id == sendgrid.accepted[0][0]
    assert delivery.provider_message_id


async def test_unsubscribe_link_is_added_to_the_body_when_the_template_lacks_it(sendgrid: SendGridServer) -> None:
    await SendGridEmailSender(settings_for(sendgrid)).send(
        message(html="<html><body><p>Hi</p></body></html>", text="Hi")
    )
    body = sendgrid.mail_sends()[0].json
    assert UNSUBSCRIBE in body["content"][0]["value"]
    assert f'href="{UNSUBSCRIBE}"' in body["content"][1]["value"]
    assert body["content"][1]["value"].endswith("</body></html>")


async def test_sandbox_mode_is_requested_and_answered_200(sendgrid: SendGridServer) -> None:
    delivery = await SendGridEmailSender(settings_for(sendgrid, sendgrid_sandbox=True)).send(message())
    assert sendgrid.mail_sends()[0].json["mail_settings"] == {"sandbox_mode": {"enable": True}}
    assert delivery.provider_message_id is None  # sandbox: validated, not queued


async def test_dynamic_template_sends_template_id_and_data_instead_of_content(sendgrid: SendGridServer) -> None:
    context = {"customer": {"first_name": "Maya"}, "cart": {"total": 188.5, "currency": "USD"}}
    await SendGridEmailSender(settings_for(sendgrid, unsubscribe_group_id=321)).send(
        message(sendgrid_template_id="d-1234567890abcdef", context=context)
    )
    body = sendgrid.mail_sends()[0].json
    assert body["template_id"] == "d-1234567890abcdef"
    assert "content" not in body and "subject" not in body
    data = body["personalizations"][0]["dynamic_template_data"]
    assert data["customer"] == {"first_name": "Maya"}
    assert data["cart"]["total"] == 188.5
    assert data["subject"] == "You left something behind, Maya"
    assert data["unsubscribe_url"] == UNSUBSCRIBE
    assert body["asm"] == {"group_id": 321}
    assert len(sendgrid.accepted) == 1


async def test_429_with_retry_after_is_retryable_after_that_many_seconds(sendgrid: SendGridServer) -> None:
    sendgrid.script(Reply.rate_limited(retry_after="7"))
    with pytest.raises(RetryableChannelError) as caught:
        await SendGridEmailSender(settings_for(sendgrid)).send(message())
    assert caught.value.retry_after == 7
    assert not caught.value.maybe_delivered
    assert "429" in str(caught.value)


async def test_429_with_only_a_rate_limit_reset_waits_until_the_reset(sendgrid: SendGridServer) -> None:
    sendgrid.script(Reply.rate_limited(reset=int(time.time()) + 30))
    with pytest.raises(RetryableChannelError) as caught:
        await SendGridEmailSender(settings_for(sendgrid)).send(message())
    assert caught.value.retry_after is not None and 25 <= caught.value.retry_after <= 30


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_server_errors_are_retryable(sendgrid: SendGridServer, status: int) -> None:
    sendgrid.script(Reply.server_error(status))
    with pytest.raises(RetryableChannelError) as caught:
        await SendGridEmailSender(settings_for(sendgrid)).send(message())
    assert str(status) in str(caught.value)
    assert not caught.value.maybe_delivered


async def test_invalid_address_is_permanent_and_marks_the_address(sendgrid: SendGridServer) -> None:
    bad = "maya.lopez@@example"
    with pytest.raises(PermanentChannelError) as caught:
        await SendGridEmailSender(settings_for(sendgrid)).send(message(to=[bad]))
    assert caught.value.invalid_address
    assert "personalizations.0.to.0.email" in str(caught.value)
    assert bad not in str(caught.value)
    assert sendgrid.accepted == []


async def test_403_is_our_configuration_so_the_message_waits_without_blaming_the_address(
    sendgrid: SendGridServer,
) -> None:
    sendgrid.script(Reply.forbidden())
    with pytest.raises(ProviderConfigurationError) as caught:
        await SendGridEmailSender(settings_for(sendgrid)).send(message())
    assert "403" in str(caught.value)
    assert caught.value.retry_after == 300


async def test_rejected_api_key_delays_rather_than_drops(sendgrid: SendGridServer) -> None:
    settings = settings_for(sendgrid, sendgrid_api_key=SecretStr("SG.wrong.key"))
    with pytest.raises(RetryableChannelError) as caught:
        await SendGridEmailSender(settings).send(message())
    assert "401" in str(caught.value)
    assert caught.value.retry_after == 300


async def test_no_answer_after_the_request_went_out_is_retryable_in_doubt(sendgrid: SendGridServer) -> None:
    sendgrid.script(Reply.hang(2.0))
    started = time.monotonic()
    with pytest.raises(RetryableChannelError) as caught:
        await SendGridEmailSender(settings_for(sendgrid), timeout=0.3).send(message())
    assert time.monotonic() - started < 1.5
    assert caught.value.maybe_delivered, "SendGrid may have accepted it: the ledger must not send it again blindly"


async def test_connection_refused_is_retryable_and_surely_not_delivered() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = Settings(_env_file=None, sendgrid_api_key=SecretStr(API_KEY), sendgrid_host=f"http://127.0.0.1:{port}")
    with pytest.raises(RetryableChannelError) as caught:
        await SendGridEmailSender(settings).send(message())
    assert not caught.value.maybe_delivered


async def test_neither_the_address_nor_the_api_key_reaches_the_logs(
    sendgrid: SendGridServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    sendgrid.script(Reply.server_error(500))
    sender = SendGridEmailSender(settings_for(sendgrid))
    with pytest.raises(RetryableChannelError):
        await sender.send(message())
    await sender.send(message())
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "msg_cus42_run7_first_reminder_1" in logged  # we do log, with ids
    assert ADDRESS not in logged
    assert API_KEY not in logged


def test_registry_uses_sendgrid_for_email_only_when_a_key_is_set(tmp_path: Any) -> None:
    plain = build_senders(Settings(_env_file=None, data_dir=tmp_path))
    assert {channel: sender.provider for channel, sender in plain.items()} == {
        "email": "outbox",
        "sms": "outbox",
        "push": "outbox",
        "whatsapp": "outbox",
    }
    configured = build_senders(Settings(_env_file=None, data_dir=tmp_path, sendgrid_api_key=SecretStr(API_KEY)))
    assert isinstance(configured["email"], SendGridEmailSender)
    assert configured["sms"].provider == "outbox"
