"""The Twilio SMS channel, through the real ``twilio`` SDK, against a local Messages API."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
from pydantic import SecretStr
from twilio.http.http_client import TwilioHttpClient

from omnicart.channels.base import (
    PermanentChannelError,
    ProviderConfigurationError,
    RenderedMessage,
    RetryableChannelError,
)
from omnicart.channels.twilio_sms import TwilioSmsSender
from omnicart.settings import Settings
from tests.providers.twilio_server import Reply, TwilioServer

SID = "AC" + "0123456789abcdef" * 2
TOKEN = "twilio-test-auth-token"
FROM = "+15005550006"
PHONE = "+14155550123"


@pytest.fixture
def twilio() -> Iterator[TwilioServer]:
    with TwilioServer(SID, TOKEN) as server:
        yield server


def make_settings(twilio: TwilioServer, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "twilio_account_sid": SID,
        "twilio_auth_token": SecretStr(TOKEN),
        "twilio_from_number": FROM,
        "twilio_base_url": twilio.url,
        "public_url": "https://shop.example/",
    }
    values.update(overrides)
    return Settings(**values)


def sms(body: str = "Your cart is waiting: https://shop.example/c/1", **overrides: Any) -> RenderedMessage:
    values: dict[str, Any] = {
        "message_id": "msg_cart_1",
        "customer_id": "cus_42",
        "journey": "abandoned_cart",
        "run_id": "run_1",
        "step_id": "sms",
        "channel": "sms",
        "template_name": "cart_reminder_sms",
        "to": [PHONE],
        "body": body,
    }
    values.update(overrides)
    return RenderedMessage(**values)


async def test_send_posts_the_documented_form_with_basic_auth(twilio: TwilioServer) -> None:
    delivery = await TwilioSmsSender(make_settings(twilio)).send(sms())

    [request] = twilio.sent()
    assert request.path == f"/2010-04-01/Accounts/{SID}/Messages.json"
    assert request.basic_auth == (SID, TOKEN)
    assert request.headers["Content-Type"].startswith("application/x-www-form-urlencoded")
    assert request.form == {
        "To": [PHONE],
        "From": [FROM],
        "Body": ["Your cart is waiting: https://shop.example/c/1"],
        "StatusCallback": ["https://shop.example/webhooks/twilio/status?message_id=msg_cart_1"],
    }
    assert delivery.provider == "twilio"
    assert delivery.provider_message_id == twilio.messages[0]["sid"]
    assert delivery.segments == 1


async def test_messaging_service_replaces_the_from_number(twilio: TwilioServer) -> None:
    settings = make_settings(twilio, twilio_from_number=None, twilio_messaging_service_sid="MG" + "1" * 32)
    await TwilioSmsSender(settings).send(sms())

    [request] = twilio.sent()
    assert request.field("MessagingServiceSid") == "MG" + "1" * 32
    assert "From" not in request.form


async def test_status_callback_escapes_the_message_id(twilio: TwilioServer) -> None:
    await TwilioSmsSender(make_settings(twilio)).send(sms(message_id="m/1 2&x"))

    assert twilio.sent()[0].field("StatusCallback") == (
        "https://shop.example/webhooks/twilio/status?message_id=m%2F1+2%26x"
    )


async def test_marketing_message_gets_the_opt_out_line(twilio: TwilioServer) -> None:
    sender = TwilioSmsSender(make_settings(twilio))
    await sender.send(sms("20% off your cart today", marketing=True))
    await sender.send(sms("Your order shipped", message_id="msg_2"))

    marketing, transactional = (r.field("Body") for r in twilio.sent())
    assert marketing == "20% off your cart today\nReply STOP to opt out"
    assert transactional == "Your order shipped"


async def test_segments_follow_the_encoding_of_the_body(twilio: TwilioServer) -> None:
    sender = TwilioSmsSender(make_settings(twilio))
    gsm_two_segments = await sender.send(sms("a" * 161))
    gsm_one_segment = await sender.send(sms("a" * 160))
    ucs2_two_segments = await sender.send(sms("Your cart misses you 🛒 " + "a" * 50))

    assert (gsm_one_segment.segments, gsm_two_segments.segments, ucs2_two_segments.segments) == (1, 2, 2)


async def test_an_injected_sdk_http_client_is_still_pointed_at_the_configured_base_url(
    twilio: TwilioServer,
) -> None:
    sender = TwilioSmsSender(make_settings(twilio), http_client=TwilioHttpClient(timeout=5))
    await sender.send(sms())
    assert len(twilio.sent()) == 1


async def test_unsubscribed_recipient_revokes_consent_without_leaking_the_number(
    twilio: TwilioServer,
) -> None:
    twilio.script(Reply.error(400, 21610, f"Attempt to send to unsubscribed recipient {PHONE}"))

    with pytest.raises(PermanentChannelError) as caught:
        await TwilioSmsSender(make_settings(twilio)).send(sms())

    assert caught.value.revoke_consent and not caught.value.invalid_address
    assert "21610" in str(caught.value)
    assert PHONE not in str(caught.value) and PHONE[1:] not in str(caught.value)


@pytest.mark.parametrize("code", [21211, 21614, 21265, 21266, 21268, 21635])
async def test_invalid_numbers_mark_the_address(twilio: TwilioServer, code: int) -> None:
    twilio.script(Reply.error(400, code, f"The 'To' number {PHONE} is not a valid phone number."))

    with pytest.raises(PermanentChannelError) as caught:
        await TwilioSmsSender(make_settings(twilio)).send(sms())

    assert caught.value.invalid_address and not caught.value.revoke_consent


async def test_other_client_errors_are_permanent_without_touching_the_profile(twilio: TwilioServer) -> None:
    twilio.script(Reply.error(400, 21612, f"The 'To' and 'From' {PHONE} cannot be connected at this time"))

    with pytest.raises(PermanentChannelError) as caught:
        await TwilioSmsSender(make_settings(twilio)).send(sms())

    assert not caught.value.invalid_address and not caught.value.revoke_consent


async def test_wrong_credentials_stop_the_channel_and_the_message_waits(twilio: TwilioServer) -> None:
    settings = make_settings(twilio, twilio_auth_token=SecretStr("not-the-token"))
    with pytest.raises(ProviderConfigurationError, match="20003") as caught:
        await TwilioSmsSender(settings).send(sms())
    assert caught.value.retry_after == 300
    assert twilio.messages == []


async def test_429_is_retryable_and_honours_retry_after_seconds(twilio: TwilioServer) -> None:
    twilio.script(Reply.rate_limited("7"))

    with pytest.raises(RetryableChannelError) as caught:
        await TwilioSmsSender(make_settings(twilio)).send(sms())

    assert caught.value.retry_after == 7.0


async def test_429_retry_after_as_an_http_date(twilio: TwilioServer) -> None:
    twilio.script(Reply.rate_limited(format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)))

    with pytest.raises(RetryableChannelError) as caught:
        await TwilioSmsSender(make_settings(twilio)).send(sms())

    assert caught.value.retry_after is not None and 100 < caught.value.retry_after <= 120


async def test_500_is_retryable_and_a_retry_then_succeeds(twilio: TwilioServer) -> None:
    twilio.script(Reply.server_error())
    sender = TwilioSmsSender(make_settings(twilio))

    with pytest.raises(RetryableChannelError) as caught:
        await sender.send(sms())
    assert caught.value.retry_after is None and not caught.value.maybe_delivered

    delivery = await sender.send(sms())
    assert delivery.provider_message_id == twilio.messages[0]["sid"]
    assert len(twilio.sent()) == 2


async def test_a_hung_twilio_times_out_as_retryable(twilio: TwilioServer) -> None:
    twilio.script(Reply.hang(10))
    started = time.monotonic()

    with pytest.raises(RetryableChannelError, match="in time") as caught:
        await TwilioSmsSender(make_settings(twilio), timeout=0.5).send(sms())

    assert time.monotonic() - started < 5
    # The request went out: Twilio may have accepted it, so the ledger must ask before resending.
    assert caught.value.maybe_delivered


async def test_an_unreachable_twilio_is_retryable(twilio: TwilioServer) -> None:
    settings = make_settings(twilio)
    twilio.__exit__(None, None, None)

    with pytest.raises(RetryableChannelError) as caught:
        await TwilioSmsSender(settings, timeout=2).send(sms())
    assert not caught.value.maybe_delivered


async def test_bad_recipients_are_named(twilio: TwilioServer) -> None:
    sender = TwilioSmsSender(make_settings(twilio))
    with pytest.raises(PermanentChannelError, match="exactly one phone number") as caught:
        await sender.send(sms(to=[]))
    assert caught.value.invalid_address
    with pytest.raises(PermanentChannelError, match="empty body"):
        await sender.send(sms("   "))
    assert twilio.sent() == []


def test_missing_configuration_is_named() -> None:
    with pytest.raises(ValueError, match="TWILIO_ACCOUNT_SID"):
        TwilioSmsSender(Settings(twilio_account_sid=None, twilio_auth_token=None))
    with pytest.raises(ValueError, match="FROM_NUMBER"):
        TwilioSmsSender(Settings(twilio_account_sid=SID, twilio_auth_token=SecretStr(TOKEN)))


async def test_lookup_finds_a_message_twilio_accepted_after_the_answer_was_lost(twilio: TwilioServer) -> None:
    # Twilio takes the message but the answer never reaches us (timeout): the crash/timeout window.
    twilio.script(Reply.hang(1.5))
    sender = TwilioSmsSender(make_settings(twilio), timeout=0.5)
    message = sms("Still thinking about it? 🛒", marketing=True)
    with pytest.raises(RetryableChannelError):
        await sender.send(message)
    for _ in range(50):
        if twilio.messages:
            break
        time.sleep(0.1)
    [accepted] = twilio.messages

    found = await sender.lookup(message)

    assert found is not None and found.provider_message_id == accepted["sid"]
    assert found.segments == 1
    listing = [r for r in twilio.requests if r.method == "GET"][-1]
    assert listing.query["To"] == [PHONE] and listing.query["From"] == [FROM]
    assert listing.basic_auth == (SID, TOKEN)


async def test_lookup_does_not_match_another_message(twilio: TwilioServer) -> None:
    sender = TwilioSmsSender(make_settings(twilio))
    await sender.send(sms("First reminder"))

    assert await sender.lookup(sms("Second reminder", message_id="msg_2")) is None
    assert await sender.lookup(sms("First reminder", to=["+14155550999"])) is None
    assert await sender.lookup(sms("First reminder")) is not None


async def test_phone_numbers_stay_out_of_the_logs(twilio: TwilioServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    sender = TwilioSmsSender(make_settings(twilio))
    await sender.send(sms())
    await sender.lookup(sms())
    twilio.script(Reply.error(400, 21211, f"The 'To' number {PHONE} is not a valid phone number."))
    with pytest.raises(PermanentChannelError):
        await sender.send(sms())

    assert "msg_cart_1" in caplog.text
    assert PHONE not in caplog.text and PHONE[1:] not in caplog.text


async def test_lookup_that_cannot_ask_twilio_says_not_now(twilio: TwilioServer) -> None:
    refused = TwilioSmsSender(make_settings(twilio, twilio_auth_token=SecretStr("not-the-token")))
    with pytest.raises(RetryableChannelError, match="401"):
        await refused.lookup(sms())

    settings = make_settings(twilio)
    twilio.__exit__(None, None, None)
    with pytest.raises(RetryableChannelError):
        await TwilioSmsSender(settings, timeout=2).lookup(sms())


async def test_lookup_ignores_an_identical_text_older_than_the_window(twilio: TwilioServer) -> None:
    sender = TwilioSmsSender(make_settings(twilio), lookup_window=timedelta(days=3))
    await sender.send(sms("Weekly picks for you"))
    twilio.messages[0]["date_created"] = format_datetime(datetime.now(UTC) - timedelta(days=10))

    assert await sender.lookup(sms("Weekly picks for you", message_id="msg_next_week")) is None


async def test_lookup_through_a_messaging_service_matches_the_service(twilio: TwilioServer) -> None:
    service = "MG" + "2" * 32
    sender = TwilioSmsSender(make_settings(twilio, twilio_from_number=None, twilio_messaging_service_sid=service))
    delivery = await sender.send(sms())

    found = await sender.lookup(sms())
    other_service = TwilioSmsSender(
        make_settings(twilio, twilio_from_number=None, twilio_messaging_service_sid="MG" + "3" * 32)
    )

    assert found is not None and found.provider_message_id == delivery.provider_message_id
    listing = [r for r in twilio.requests if r.method == "GET"][-1]
    assert listing.query["To"] == [PHONE] and "From" not in listing.query
    assert await other_service.lookup(sms()) is None
