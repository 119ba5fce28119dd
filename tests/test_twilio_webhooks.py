"""Twilio's status callbacks and inbound STOP/START replies, signed the way Twilio documents it.

The app under test holds only the Twilio router, the real message ledger (SQLite in a temp dir)
and a recording stand-in for the ingest API's ``submit`` (the seam between webhook and ingest).
Signatures are computed here from Twilio's documented algorithm, not with the SDK under test:
base64(HMAC-SHA1(auth token, URL + each POST parameter name and value, sorted by name)).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy import select

from omnicart.analytics.store import message_outcomes
from omnicart.api.twilio_webhooks import router
from omnicart.channels.twilio_sms import TwilioSmsSender
from omnicart.events import Event
from omnicart.journey.model import SmsTemplate
from omnicart.ledger import MessageLedger
from omnicart.messages import SendRequest
from omnicart.settings import Settings
from omnicart.storage import get_engine, upgrade

TOKEN = "twilio-webhook-test-token"
SID = "AC" + "f" * 32
PUBLIC = "https://shop.example"
PHONE = "+14155550123"
SHOP_NUMBER = "+15005550006"


class RecordingIngest:
    """Stands in for the ingest API's ``submit``: records what the webhook hands over."""

    def __init__(self) -> None:
        self.batches: list[list[Event]] = []

    async def submit(self, events: list[Event]) -> dict[str, int]:
        self.batches.append(list(events))
        return {"accepted": len(events), "duplicates": 0}

    @property
    def events(self) -> list[Event]:
        return [event for batch in self.batches for event in batch]


def sign(url: str, params: dict[str, str], token: str = TOKEN) -> str:
    payload = url + "".join(name + params[name] for name in sorted(params))
    return base64.b64encode(hmac.new(token.encode(), payload.encode(), hashlib.sha1).digest()).decode()


@pytest.fixture
def settings() -> Settings:
    return Settings(
        public_url=PUBLIC,
        twilio_account_sid=SID,
        twilio_auth_token=SecretStr(TOKEN),
        twilio_from_number=SHOP_NUMBER,
    )


def sms_request(message_id: str, step_id: str, body: str) -> SendRequest:
    """An SMS of customer cus_42's abandoned-cart run, as the workflow would ask for it."""
    return SendRequest(
        message_id=message_id,
        customer_id="cus_42",
        journey="abandoned_cart",
        journey_version="v1",
        run_id="run_1",
        step_id=step_id,
        channel="sms",
        template_name="cart_reminder_sms",
        template=SmsTemplate(channel="sms", body=body),
        to=[PHONE],
        context={},
    )


@pytest.fixture
def ledger(tmp_path: Path) -> MessageLedger:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    upgrade(url)
    ledger = MessageLedger(get_engine(url))
    ledger.claim(sms_request("msg_1", "sms", "Your cart is waiting"), "twilio")
    ledger.mark_sent("msg_1", "twilio", "SM" + "1" * 32)
    return ledger


@pytest.fixture
def ingest() -> RecordingIngest:
    return RecordingIngest()


@pytest_asyncio.fixture
async def client(
    settings: Settings, ledger: MessageLedger, ingest: RecordingIngest
) -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    app.include_router(router)
    app.state.settings = settings
    app.state.ledger = ledger
    app.state.ingest = ingest
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://internal:8080") as c:
        yield c


async def post_signed(
    client: httpx.AsyncClient, path_and_query: str, params: dict[str, str], signature: str | None = "auto"
) -> httpx.Response:
    headers = {}
    if signature == "auto":
        headers["X-Twilio-Signature"] = sign(PUBLIC + path_and_query, params)
    elif signature is not None:
        headers["X-Twilio-Signature"] = signature
    return await client.post(
        path_and_query,
        content=urlencode(params),
        headers={**headers, "Content-Type": "application/x-www-form-urlencoded"},
    )


def status_params(status: str, sid: str = "SM" + "1" * 32, **extra: str) -> dict[str, str]:
    return {
        "AccountSid": SID,
        "ApiVersion": "2010-04-01",
        "From": SHOP_NUMBER,
        "MessageSid": sid,
        "MessageStatus": status,
        "SmsSid": sid,
        "SmsStatus": status,
        "To": PHONE,
        **extra,
    }


def inbound_params(body: str, sid: str = "SM" + "9" * 32) -> dict[str, str]:
    return {
        "AccountSid": SID,
        "ApiVersion": "2010-04-01",
        "Body": body,
        "From": PHONE,
        "MessageSid": sid,
        "NumMedia": "0",
        "NumSegments": "1",
        "SmsMessageSid": sid,
        "SmsSid": sid,
        "To": SHOP_NUMBER,
    }


STATUS = "/webhooks/twilio/status?message_id=msg_1"


async def test_delivered_becomes_message_delivered(
    client: httpx.AsyncClient, ingest: RecordingIngest, ledger: MessageLedger
) -> None:
    response = await post_signed(client, STATUS, status_params("delivered"))

    assert response.status_code == 200
    [event] = ingest.events
    assert event.type == "message_delivered"
    assert event.id == f"twilio_{'SM' + '1' * 32}_delivered"
    assert (event.customer_id, event.source) == ("cus_42", "sms")
    assert event.properties["channel"] == "sms"
    assert event.properties["message_id"] == "msg_1"
    assert event.properties["journey"] == "abandoned_cart"
    entry = ledger.find("msg_1")
    assert entry is not None and "delivered" in entry.evidence


@pytest.mark.parametrize("status", ["undelivered", "failed"])
async def test_undelivered_and_failed_become_message_failed(
    client: httpx.AsyncClient, ingest: RecordingIngest, status: str
) -> None:
    response = await post_signed(client, STATUS, status_params(status, ErrorCode="30003"))

    assert response.status_code == 200
    [event] = ingest.events
    assert event.type == "message_failed"
    assert event.properties["error_code"] == "30003"


async def test_intermediate_statuses_are_evidence_but_no_event(
    client: httpx.AsyncClient, ingest: RecordingIngest, ledger: MessageLedger
) -> None:
    response = await post_signed(client, STATUS, status_params("sent"))

    assert response.status_code == 200 and response.json()["forwarded"] is None
    assert ingest.events == []
    entry = ledger.find("msg_1")
    assert entry is not None and entry.evidence == ("sent",)


async def test_a_repeated_callback_carries_the_same_event_id(
    client: httpx.AsyncClient, ingest: RecordingIngest
) -> None:
    await post_signed(client, STATUS, status_params("delivered"))
    await post_signed(client, STATUS, status_params("delivered"))

    first, second = ingest.events
    assert first.id == second.id  # the ingest API ignores an id it has seen: the repeat is a no-op


async def test_a_status_callback_that_settles_an_in_doubt_send(
    client: httpx.AsyncClient, ledger: MessageLedger
) -> None:
    ledger.claim(sms_request("msg_doubt", "sms2", "x"), "twilio")  # the worker died after calling Twilio

    response = await post_signed(client, "/webhooks/twilio/status?message_id=msg_doubt", status_params("queued"))

    assert response.status_code == 200
    entry = ledger.find("msg_doubt")
    assert entry is not None and entry.status == "sent"


async def test_the_sender_callback_url_verifies_on_the_route(
    client: httpx.AsyncClient, settings: Settings, ingest: RecordingIngest, ledger: MessageLedger
) -> None:
    request = SendRequest(
        message_id="m/1 2&x",
        customer_id="cus_7",
        journey="abandoned_cart",
        journey_version="v1",
        run_id="run_1",
        step_id="sms",
        channel="sms",
        template_name="cart_reminder_sms",
        template=SmsTemplate(channel="sms", body="x"),
        to=["+14155550777"],
        context={},
    )
    ledger.claim(request, "twilio")
    callback = TwilioSmsSender(settings).status_callback_url("m/1 2&x")
    parts = urlsplit(callback)
    params = status_params("delivered")

    response = await post_signed(client, f"{parts.path}?{parts.query}", params, sign(callback, params))

    assert response.status_code == 200, response.text
    [event] = ingest.events
    assert (event.customer_id, event.properties["message_id"]) == ("cus_7", "m/1 2&x")


@pytest.mark.parametrize(
    ("path", "params", "signature"),
    [
        (STATUS, status_params("delivered"), None),
        (STATUS, status_params("delivered"), ""),
        (
            STATUS,
            status_params("delivered"),
            sign(PUBLIC + STATUS, status_params("delivered"), "other-token"),
        ),
        (STATUS, status_params("delivered"), sign(PUBLIC + STATUS, status_params("sent"))),
        (
            STATUS,
            status_params("delivered"),
            sign(PUBLIC + "/webhooks/twilio/status?message_id=msg_2", status_params("delivered")),
        ),
        ("/webhooks/twilio/inbound", inbound_params("STOP"), None),
        (
            "/webhooks/twilio/inbound",
            inbound_params("STOP"),
            sign(PUBLIC + "/webhooks/twilio/inbound", inbound_params("START")),
        ),
    ],
    ids=[
        "unsigned",
        "empty",
        "other-token",
        "tampered-status",
        "other-url",
        "inbound-unsigned",
        "inbound-tampered",
    ],
)
async def test_forged_or_unsigned_requests_are_refused_and_change_nothing(
    client: httpx.AsyncClient,
    ingest: RecordingIngest,
    ledger: MessageLedger,
    path: str,
    params: dict[str, str],
    signature: str | None,
) -> None:
    response = await post_signed(client, path, params, signature)

    assert response.status_code == 403
    assert ingest.batches == []
    entry = ledger.find("msg_1")
    assert entry is not None and entry.evidence == ()


async def test_unknown_message_is_accepted_and_ignored(client: httpx.AsyncClient, ingest: RecordingIngest) -> None:
    path = "/webhooks/twilio/status?message_id=msg_never_sent"
    response = await post_signed(client, path, status_params("delivered"))

    assert response.status_code == 200
    assert response.json()["known"] is False
    assert ingest.batches == []


@pytest.mark.parametrize(
    "body",
    ["STOP", " stop ", "Stop\n", "STOPALL", "unsubscribe", "Cancel", "END", "quit", "optout", "Revoke"],
)
async def test_opt_out_keywords_revoke_sms_consent(
    client: httpx.AsyncClient, ingest: RecordingIngest, body: str
) -> None:
    response = await post_signed(client, "/webhooks/twilio/inbound", inbound_params(body))

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/xml")
    assert "<Response" in response.text and "<Message" not in response.text
    [event] = ingest.events
    assert event.type == "consent_changed"
    assert (event.customer_id, event.source) == ("cus_42", "sms")
    assert event.properties["channel"] == "sms" and event.properties["granted"] is False
    assert event.id == f"twilio_{'SM' + '9' * 32}_consent_cus_42"


async def test_a_stop_from_a_shared_phone_reaches_every_customer_we_text_there(
    client: httpx.AsyncClient, ingest: RecordingIngest, ledger: MessageLedger
) -> None:
    shared = sms_request("msg_2", "sms", "Your cart is waiting").model_copy(update={"customer_id": "cus_77"})
    ledger.claim(shared, "twilio")
    ledger.mark_sent("msg_2", "twilio", "SM" + "2" * 32)

    response = await post_signed(client, "/webhooks/twilio/inbound", inbound_params("STOP"))

    assert response.status_code == 200
    assert sorted(e.customer_id for e in ingest.events) == ["cus_42", "cus_77"]
    assert all(e.properties["granted"] is False for e in ingest.events)
    assert len({e.id for e in ingest.events}) == 2


@pytest.mark.parametrize("body", ["START", "unstop", " Start ", "yes"])
async def test_opt_in_keywords_restore_sms_consent(
    client: httpx.AsyncClient, ingest: RecordingIngest, body: str
) -> None:
    response = await post_signed(client, "/webhooks/twilio/inbound", inbound_params(body))

    assert response.status_code == 200
    [event] = ingest.events
    assert event.type == "consent_changed" and event.properties["granted"] is True


@pytest.mark.parametrize("body", ["Stop please", "where is my order?", "", "STOP STOP"])
async def test_other_replies_change_nothing(client: httpx.AsyncClient, ingest: RecordingIngest, body: str) -> None:
    response = await post_signed(client, "/webhooks/twilio/inbound", inbound_params(body))

    assert response.status_code == 200 and "<Response" in response.text
    assert ingest.batches == []


async def test_stop_from_an_unknown_number_is_accepted(client: httpx.AsyncClient, ingest: RecordingIngest) -> None:
    params = {**inbound_params("STOP"), "From": "+14155550999"}
    response = await post_signed(client, "/webhooks/twilio/inbound", params)

    assert response.status_code == 200 and "<Response" in response.text
    assert ingest.batches == []


async def test_without_an_auth_token_nothing_is_trusted(
    client: httpx.AsyncClient, settings: Settings, ingest: RecordingIngest
) -> None:
    settings.twilio_auth_token = None

    response = await post_signed(client, "/webhooks/twilio/inbound", inbound_params("STOP"))

    assert response.status_code == 503
    assert ingest.batches == []


async def test_phone_numbers_and_bodies_stay_out_of_the_logs(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await post_signed(client, "/webhooks/twilio/inbound", inbound_params("STOP"))
    await post_signed(client, "/webhooks/twilio/inbound", inbound_params("my secret address is 1 Main St"))
    await post_signed(client, "/webhooks/twilio/inbound", {**inbound_params("STOP"), "From": "+14155550999"})
    await post_signed(client, STATUS, status_params("delivered"))
    await post_signed(client, STATUS, status_params("delivered"), "forged")

    assert "cus_42" in caplog.text
    for secret in (PHONE, PHONE[1:], "+14155550999", "Main St"):
        assert secret not in caplog.text


# -- message outcomes for analytics --------------------------------------------------------------


def stored_outcomes(ledger: MessageLedger) -> list[tuple[str, str]]:
    with ledger.engine.connect() as conn:
        rows = conn.execute(select(message_outcomes.c.message_id, message_outcomes.c.outcome)).all()
    return sorted((row.message_id, row.outcome) for row in rows)


async def test_status_callbacks_and_a_stop_reply_are_stored_as_outcomes_once(
    client: httpx.AsyncClient, ledger: MessageLedger
) -> None:
    later = sms_request("msg_2", "sms_again", "Still thinking about it?")
    ledger.claim(later, "twilio")
    ledger.mark_sent("msg_2", "twilio", "SM" + "2" * 32)

    for _ in range(2):  # Twilio may call twice
        assert (await post_signed(client, STATUS, status_params("sent"))).status_code == 200
        assert (await post_signed(client, STATUS, status_params("delivered"))).status_code == 200
        failed = status_params("undelivered", sid="SM" + "2" * 32, ErrorCode="30003")
        assert (await post_signed(client, "/webhooks/twilio/status?message_id=msg_2", failed)).status_code == 200
        assert (await post_signed(client, "/webhooks/twilio/inbound", inbound_params("STOP"))).status_code == 200

    # STOP answers the last text the customer got at that number.
    assert stored_outcomes(ledger) == [("msg_1", "delivered"), ("msg_2", "failed"), ("msg_2", "unsubscribed")]
