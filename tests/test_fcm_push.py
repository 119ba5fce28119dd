"""The FCM push channel: httpx to HTTP v1, google-auth's real JWT-bearer flow, both against loopback."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from omnicart.channels.base import PermanentChannelError, RenderedMessage, RetryableChannelError
from omnicart.channels.fcm import DeadPushTokens, FcmPushSender
from omnicart.settings import Settings
from tests.providers.fcm_server import FCM_SCOPE, GOOGLE_TOKEN_AUDIENCE, JWT_BEARER, FcmServer

PROJECT = "omnicart-test"
CLIENT_EMAIL = f"pusher@{PROJECT}.iam.gserviceaccount.com"


def _rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return _rsa_key()


@pytest.fixture
def fcm(key: rsa.RSAPrivateKey) -> Iterator[FcmServer]:
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    with FcmServer(PROJECT, public, CLIENT_EMAIL) as server:
        yield server


def service_account_file(directory: Path, key: rsa.RSAPrivateKey, token_uri: str) -> Path:
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    path = directory / "service-account.json"
    path.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": PROJECT,
                "private_key_id": "test-key-1",
                "private_key": pem,
                "client_email": CLIENT_EMAIL,
                "client_id": "1234567890",
                "token_uri": token_uri,
            }
        )
    )
    return path


@pytest.fixture
def settings(fcm: FcmServer, key: rsa.RSAPrivateKey, tmp_path: Path) -> Settings:
    return Settings(
        fcm_project_id=PROJECT,
        fcm_service_account_file=service_account_file(tmp_path, key, fcm.token_uri),
        fcm_base_url=fcm.url,
    )


def push(*tokens: str, **overrides: Any) -> RenderedMessage:
    values: dict[str, Any] = {
        "message_id": "msg_push_1",
        "customer_id": "cus_42",
        "journey": "abandoned_cart",
        "run_id": "run_1",
        "step_id": "push",
        "channel": "push",
        "template_name": "cart_push",
        "to": list(tokens),
        "title": "Your cart is waiting",
        "body": "2 items are still in your cart",
        "url": "https://shop.example/cart/restore/abc",
        "image_url": "https://cdn.example/sneaker.png",
    }
    values.update(overrides)
    return RenderedMessage(**values)


async def test_push_goes_to_each_token_with_a_google_auth_bearer_token(fcm: FcmServer, settings: Settings) -> None:
    delivery = await FcmPushSender(settings).send(push("device-a", "device-b"))

    [token_request] = fcm.token_requests()
    assert token_request.form["grant_type"] == [JWT_BEARER]  # the server verified the signed assertion too
    [access_token] = fcm.issued_tokens
    sends = fcm.sends()
    assert {r.json["message"]["token"] for r in sends} == {"device-a", "device-b"}
    for request in sends:
        assert request.path == f"/v1/projects/{PROJECT}/messages:send"
        assert request.headers["Authorization"] == f"Bearer {access_token}"
        message = request.json["message"]
        assert message["notification"] == {
            "title": "Your cart is waiting",
            "body": "2 items are still in your cart",
            "image": "https://cdn.example/sneaker.png",
        }
        assert message["data"] == {
            "message_id": "msg_push_1",
            "journey": "abandoned_cart",
            "channel": "push",
            "url": "https://shop.example/cart/restore/abc",
        }
        assert message["webpush"] == {"fcm_options": {"link": "https://shop.example/cart/restore/abc"}}
    assert delivery.provider == "fcm"
    assert delivery.provider_message_id is not None
    assert delivery.provider_message_id.startswith(f"projects/{PROJECT}/messages/")
    assert delivery.dead_push_tokens == []


async def test_the_access_token_is_reused_until_it_stops_working(fcm: FcmServer, settings: Settings) -> None:
    sender = FcmPushSender(settings)
    await sender.send(push("device-a"))
    await sender.send(push("device-a", message_id="msg_push_2"))
    assert len(fcm.token_requests()) == 1

    fcm.revoke_access_tokens()
    delivery = await sender.send(push("device-a", message_id="msg_push_3"))

    assert len(fcm.token_requests()) == 2
    assert fcm.sends()[-1].headers["Authorization"] == f"Bearer {fcm.issued_tokens[-1]}"
    assert delivery.dead_push_tokens == []


async def test_unregistered_and_invalid_tokens_are_reported_dead(fcm: FcmServer, settings: Settings) -> None:
    fcm.answer("gone", "unregistered")
    fcm.answer("garbage", "invalid")
    fcm.answer("other-app", "sender_mismatch")

    delivery = await FcmPushSender(settings).send(push("live", "gone", "garbage", "other-app"))

    # A sender-id mismatch is our project's problem, not the token's: that token is kept.
    assert sorted(delivery.dead_push_tokens) == ["garbage", "gone"]
    assert delivery.provider_message_id is not None


async def test_every_token_dead_falls_back_to_the_next_channel(fcm: FcmServer, settings: Settings) -> None:
    fcm.answer("gone-1", "unregistered")
    fcm.answer("gone-2", "invalid")

    with pytest.raises(DeadPushTokens) as caught:
        await FcmPushSender(settings).send(push("gone-1", "gone-2"))

    assert isinstance(caught.value, PermanentChannelError)
    assert caught.value.invalid_address and not caught.value.revoke_consent
    assert sorted(caught.value.dead_push_tokens) == ["gone-1", "gone-2"]


async def test_quota_exceeded_is_retryable_with_retry_after(fcm: FcmServer, settings: Settings) -> None:
    fcm.answer("device-a", "rate_limited")
    fcm.retry_after = "42"

    with pytest.raises(RetryableChannelError) as caught:
        await FcmPushSender(settings).send(push("device-a"))

    assert caught.value.retry_after == 42.0 and not caught.value.maybe_delivered


async def test_internal_error_is_retryable_and_dead_tokens_do_not_hide_it(fcm: FcmServer, settings: Settings) -> None:
    fcm.answer("device-a", "internal")
    fcm.answer("gone", "unregistered")

    with pytest.raises(RetryableChannelError) as caught:
        await FcmPushSender(settings).send(push("device-a", "gone"))

    assert caught.value.retry_after is None


async def test_one_accepting_device_is_a_delivery_even_if_another_failed_transiently(
    fcm: FcmServer, settings: Settings
) -> None:
    fcm.answer("flaky", "internal")

    delivery = await FcmPushSender(settings).send(push("live", "flaky"))

    assert delivery.dead_push_tokens == []
    assert len(fcm.sends()) == 2  # not retried: "live" must not get the push twice


async def test_a_hung_fcm_times_out_as_retryable_and_maybe_delivered(fcm: FcmServer, settings: Settings) -> None:
    fcm.answer("device-a", "hang")
    started = time.monotonic()

    with pytest.raises(RetryableChannelError) as caught:
        await FcmPushSender(settings, timeout=0.5).send(push("device-a"))

    assert time.monotonic() - started < 5
    assert caught.value.maybe_delivered


async def test_an_unreachable_fcm_is_retryable(fcm: FcmServer, settings: Settings) -> None:
    sender = FcmPushSender(settings)
    await sender.send(push("device-a"))  # token fetched while the server was up
    fcm.__exit__(None, None, None)

    with pytest.raises(RetryableChannelError) as caught:
        await sender.send(push("device-a", message_id="msg_push_2"))
    assert not caught.value.maybe_delivered


async def test_a_service_account_signed_with_the_wrong_key_is_rejected(
    fcm: FcmServer, settings: Settings, tmp_path: Path
) -> None:
    forged = settings.model_copy(
        update={"fcm_service_account_file": service_account_file(tmp_path, _rsa_key(), fcm.token_uri)}
    )

    with pytest.raises(PermanentChannelError, match="credentials rejected"):
        await FcmPushSender(forged).send(push("device-a"))

    assert fcm.issued_tokens == [] and fcm.sends() == []


async def test_the_token_carries_the_firebase_messaging_scope(fcm: FcmServer, settings: Settings) -> None:
    import jwt

    await FcmPushSender(settings).send(push("device-a"))

    assertion = fcm.token_requests()[0].form["assertion"][0]
    claims = jwt.decode(assertion, options={"verify_signature": False})
    assert claims["scope"] == FCM_SCOPE
    assert claims["iss"] == CLIENT_EMAIL and claims["aud"] == GOOGLE_TOKEN_AUDIENCE


async def test_non_https_links_stay_in_data_only(fcm: FcmServer, settings: Settings) -> None:
    await FcmPushSender(settings).send(push("device-a", url="myapp://cart/abc", image_url=None))

    message = fcm.sends()[0].json["message"]
    assert "webpush" not in message and "image" not in message["notification"]
    assert message["data"]["url"] == "myapp://cart/abc"


async def test_the_project_comes_from_the_key_file_when_not_set(fcm: FcmServer, settings: Settings) -> None:
    await FcmPushSender(settings.model_copy(update={"fcm_project_id": None})).send(push("device-a"))
    assert fcm.sends()[0].path == f"/v1/projects/{PROJECT}/messages:send"


async def test_bad_input_is_named(fcm: FcmServer, settings: Settings, tmp_path: Path) -> None:
    sender = FcmPushSender(settings)
    with pytest.raises(PermanentChannelError, match="no device token") as caught:
        await sender.send(push())
    assert caught.value.invalid_address
    with pytest.raises(PermanentChannelError, match="title and a body"):
        await sender.send(push("device-a", title=None))
    assert fcm.requests == []

    with pytest.raises(ValueError, match="FCM_SERVICE_ACCOUNT_FILE"):
        FcmPushSender(settings.model_copy(update={"fcm_service_account_file": None}))
    broken = tmp_path / "broken.json"
    broken.write_text("{}")
    with pytest.raises(ValueError, match="not a usable service account"):
        FcmPushSender(settings.model_copy(update={"fcm_service_account_file": broken}))
