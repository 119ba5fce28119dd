"""Issue 11's numbered provider problems, one test each, against the stricter loopback fakes.

Each test asserts what a user of the product would see: what the customer's profile becomes
(consent, undeliverable addresses) once the webhook's events reach the interpreter, what the
provider is sent, whether a message waits, falls back or fails. Item 1 (true dependency floors) is
``tests/test_dependency_floors.py``; item 14 (strict fakes) runs through all of them, with its own
checks of the fakes at the end.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr, ValidationError
from sqlalchemy import select
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from activities.send import RETRYABLE_ERROR_TYPE
from omnicart.analytics.store import message_outcomes
from omnicart.api import channel_health, twilio_webhooks
from omnicart.api.app import create_app
from omnicart.api.unsubscribe import warn_about_public_defaults
from omnicart.api.webhook_inbox import webhook_inbox
from omnicart.channels.base import PermanentChannelError, ProviderConfigurationError
from omnicart.channels.fcm import FcmPushSender
from omnicart.channels.sendgrid_email import SendGridEmailSender
from omnicart.channels.twilio_sms import TwilioSmsSender
from omnicart.engine import interpreter
from omnicart.engine.interpreter import SendCommand
from omnicart.engine.state import CustomerState
from omnicart.events import Event
from omnicart.journey.loader import load_journey
from omnicart.journey.model import EmailTemplate
from omnicart.ledger import LedgerStatus, MessageLedger
from omnicart.messages import SendRequest, SendResult
from omnicart.settings import Settings
from omnicart.storage import get_engine, upgrade
from omnicart.temporal import connect
from tests.providers.fcm_server import FcmServer
from tests.providers.sendgrid_server import SendGridServer, tracked_links, validate_mail
from tests.providers.twilio_server import Reply as TwilioReply
from tests.providers.twilio_server import TwilioServer
from tests.support.bundles import JOURNEYS
from tests.support.timelines import cart
from tests.test_api import closed_port, serving, signalled
from tests.test_fcm_push import push
from tests.test_send_activity import API_KEY as ACTIVITY_KEY
from tests.test_send_activity import Harness
from tests.test_send_activity import request as email_request
from tests.test_sendgrid import API_KEY, settings_for
from tests.test_sendgrid import message as email
from tests.test_sendgrid_webhook import EMAIL, MESSAGE_ID, Api, Signer, sg_event
from tests.test_twilio_sms import FROM as SHOP_NUMBER
from tests.test_twilio_sms import PHONE, SID, TOKEN, make_settings, sms

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def customer_after(events: list[Event]) -> CustomerState:
    """A known customer (email, phone, consent) once these events reached the interpreter."""
    state = interpreter.new_state("cus_42")
    state.profile.email, state.profile.phone = EMAIL, PHONE
    state.profile.consent = {"email": True, "sms": True}
    for event in events:
        interpreter.handle_event(state, event, [], NOW, safe=True)
    return state


@pytest.fixture
def api(tmp_path: Path) -> Api:
    sendgrid_api = Api(tmp_path, Signer())
    sendgrid_api.sent_message()
    return sendgrid_api


# --- 2. a blocked bounce is temporary -------------------------------------------------------------


async def test_2_a_blocked_bounce_leaves_the_address_deliverable_a_hard_bounce_does_not(api: Api) -> None:
    response = await api.post_events([sg_event("bounce", "ev-block", type="blocked", reason="421 try later")])
    assert response.status_code == 200
    assert api.ingest is not None
    [blocked] = api.ingest.events
    assert blocked.type == "message_failed" and blocked.properties["bounce_type"] == "blocked"
    assert customer_after([blocked]).profile.undeliverable == {}

    await api.post_events([sg_event("bounce", "ev-hard", type="bounce")])
    hard = api.ingest.events[-1]
    assert hard.type == "message_bounced"
    assert customer_after([hard]).profile.undeliverable == {"email": EMAIL}


# --- 3. Apple Mail Privacy Protection opens are kept apart ---------------------------------------


async def test_3_machine_opens_do_not_count_as_opens_but_are_stored_as_machine_opens(api: Api) -> None:
    response = await api.post_events(
        [sg_event("open", "ev-mpp", sg_machine_open=True), sg_event("open", "ev-human", sg_machine_open=False)]
    )

    assert response.status_code == 200
    assert api.ingest is not None
    assert [event.id for event in api.ingest.events] == ["sg_ev-human"], "only the person's open reaches journeys"
    with api.ledger.engine.connect() as connection:
        rows = connection.execute(select(message_outcomes.c.outcome, message_outcomes.c.machine)).all()
    assert sorted((row.outcome, bool(row.machine)) for row in rows) == [("opened", False), ("opened", True)]


# --- 4. dropped for a suppressed address -----------------------------------------------------------


@pytest.mark.parametrize(
    ("reason", "consent", "undeliverable"),
    [
        ("Unsubscribed Address", False, {}),
        ("Spam Reporting Address", False, {}),
        ("Bounced Address", True, {"email": EMAIL}),
        ("Invalid SMTPAPI header", True, {}),
    ],
)
async def test_4_a_drop_for_a_suppressed_address_updates_consent_or_the_address(
    api: Api, reason: str, consent: bool, undeliverable: dict[str, str]
) -> None:
    response = await api.post_events([sg_event("dropped", "ev-drop", reason=reason)])

    assert response.status_code == 200
    assert api.ingest is not None
    customer = customer_after(api.ingest.events)
    assert customer.profile.consent["email"] is consent
    assert customer.profile.undeliverable == undeliverable
    # The drop itself still reaches the journey as a failure of the message (bounce or failed).
    assert api.ingest.events[-1].type in ("message_failed", "message_bounced")
    assert api.ingest.events[-1].properties["message_id"] == MESSAGE_ID


def journey_waiting_for_a_report(tmp_path: Path, first: str, then: str) -> tuple[CustomerState, SendCommand]:
    """A customer whose journey sent one message on ``first`` (accepted by the provider), with a
    fallback on ``then``: the state a late bounce, drop or undelivered report finds."""
    templates = {"email": "cart_reminder_1", "sms": "cart_reminder_sms"}
    path = tmp_path / f"{first}_then_{then}.yaml"
    path.write_text(
        f"name: {first}_then_{then}\ndescription: One reminder, on the next channel when the first cannot reach.\n"
        "trigger:\n  event: checkout_started\n  key: cart_id\n"
        f"steps:\n  - id: reminder\n    send:\n      channel: {first}\n      template: {templates[first]}\n"
        f"      fallback:\n        - channel: {then}\n          template: {templates[then]}\n"
    )
    bundle = load_journey(path, JOURNEYS / "templates")
    state = customer_after([])
    out = interpreter.handle_event(state, _event("evt_cart", "checkout_started", cart()), [bundle], NOW)
    [sent] = out.sends
    interpreter.handle_send_result(
        state, SendResult(message_id=sent.message_id, channel=sent.channel, outcome="sent", provider="p"), NOW
    )
    return state, sent


def _event(event_id: str, event_type: str, properties: dict[str, Any]) -> Event:
    return Event.model_validate({"id": event_id, "type": event_type, "customer_id": "cus_42",
                                 "timestamp": NOW.isoformat(), "source": "web", "properties": properties})


def fallbacks_after(state: CustomerState, events: list[Event], *, late_fallback: bool = True) -> list[str]:
    """The channels the journey sends on once these reports reached it."""
    sends = []
    for event in events:
        sends += interpreter.handle_event(state, event, [], NOW, safe=True, late_fallback=late_fallback).sends
    return [send.channel for send in sends]


async def test_4_a_drop_for_an_unsubscribed_address_starts_the_steps_fallback(tmp_path: Path) -> None:
    state, email_send = journey_waiting_for_a_report(tmp_path, "email", "sms")
    sendgrid_api = Api(tmp_path, Signer())
    sendgrid_api.sent_message(email_send.message_id)

    await sendgrid_api.post_events([sg_event("dropped", "ev-d", email_send.message_id, reason="Bounced Address")])
    assert sendgrid_api.ingest is not None
    reports = sendgrid_api.ingest.events

    assert fallbacks_after(state, reports) == ["sms"], "the email never left SendGrid: the SMS goes instead"
    assert fallbacks_after(state, reports) == [], "a repeated report changes nothing"
    [skip] = [a for a in state.journal if a.action == "skip"]
    assert skip.channel == "email" and skip.reason == "email_failed"


async def test_4_runs_started_before_the_patch_do_not_fall_back_late(tmp_path: Path) -> None:
    state, email_send = journey_waiting_for_a_report(tmp_path, "email", "sms")
    report = _event("sg_x", "message_bounced", {"channel": "email", "message_id": email_send.message_id})

    assert fallbacks_after(state, [report], late_fallback=False) == []


# --- 5. a webhook received while Temporal is down is applied after the outage ----------------------


def sms_sent(ledger: MessageLedger, customer_id: str, message_id: str) -> None:
    """An SMS our send activity handed to Twilio for this customer (as the ledger records it)."""
    request = SendRequest(
        message_id=message_id, customer_id=customer_id, journey="abandoned_cart", journey_version="v1",
        run_id="run_1", step_id="sms", channel="sms", template_name="cart_reminder_sms",
        template={"channel": "sms", "body": "Your cart is waiting"}, to=[PHONE], context={},
    )
    ledger.claim(request, "twilio")
    ledger.mark_sent(message_id, "twilio", "SM" + "1" * 32)


def _sign(url: str, params: dict[str, str]) -> str:
    """Twilio's signature: base64(HMAC-SHA1(auth token, URL + each parameter name and value, sorted))."""
    payload = url + "".join(name + params[name] for name in sorted(params))
    return base64.b64encode(hmac.new(TOKEN.encode(), payload.encode(), hashlib.sha1).digest()).decode()


async def post_form(http: httpx.AsyncClient, url: str, params: dict[str, str], signature: str) -> httpx.Response:
    parts = urlsplit(url)
    return await http.post(
        parts.path + (f"?{parts.query}" if parts.query else ""),
        content=urlencode(params),
        headers={"X-Twilio-Signature": signature, "Content-Type": "application/x-www-form-urlencoded"},
    )


async def test_5_a_stop_and_a_delivery_report_during_a_temporal_outage_land_after_it(
    tmp_path: Path, dev_env: WorkflowEnvironment
) -> None:
    customer_id = f"cus_outage_{datetime.now(UTC).strftime('%H%M%S%f')}"
    settings = Settings(
        _env_file=None, data_dir=tmp_path, public_url="https://shop.example", task_queue=f"outage-{customer_id}",
        twilio_account_sid=SID, twilio_auth_token=SecretStr(TOKEN), twilio_from_number=SHOP_NUMBER,
    )
    upgrade(settings.database())
    sms_sent(MessageLedger(get_engine(settings.database())), customer_id, "msg_outage_1")
    stop = {"AccountSid": SID, "Body": "STOP", "From": PHONE, "MessageSid": "SM" + "5" * 32, "To": SHOP_NUMBER}
    status_url = "https://shop.example/webhooks/twilio/status?message_id=msg_outage_1"
    delivered = {"AccountSid": SID, "MessageSid": "SM" + "1" * 32, "MessageStatus": "delivered", "To": PHONE}
    down = await connect(target_host=f"127.0.0.1:{closed_port()}", lazy=True)

    async with serving(create_app(settings, client=down)) as http:  # Temporal is unreachable
        inbound_url = "https://shop.example/webhooks/twilio/inbound"
        stop_answer = await post_form(http, inbound_url, stop, _sign(inbound_url, stop))
        status_answer = await post_form(http, status_url, delivered, _sign(status_url, delivered))
    assert stop_answer.status_code == 200, "Twilio does not retry a 5xx: the STOP must be taken now"
    assert status_answer.status_code == 200 and status_answer.json()["stored"] is True

    # Temporal is back (the API restarts, or another API process drains the same database).
    async with serving(create_app(settings, client=dev_env.client)):
        received = []
        for _ in range(100):
            received = await _signalled_or_none(dev_env, customer_id)
            if len(received) >= 2:
                break
            await asyncio.sleep(0.1)
    kinds = {(incoming.event.type, incoming.event.properties.get("granted")) for incoming in received}
    assert kinds == {("consent_changed", False), ("message_delivered", None)}
    with get_engine(settings.database()).connect() as connection:
        stored = connection.execute(select(webhook_inbox.c.applied_at, webhook_inbox.c.body)).all()
    assert len(stored) == 2 and all(row.applied_at is not None and row.body == b"" for row in stored), (
        "applied once, and the phone number in the body is not kept"
    )


async def _signalled_or_none(dev_env: WorkflowEnvironment, customer_id: str) -> list[Any]:
    try:
        return await signalled(dev_env.client, customer_id)
    except RPCError:  # no workflow yet
        return []


# --- 6. Twilio delivery errors 30003-30008 -----------------------------------------------------------


@pytest.fixture
def twilio() -> Iterator[TwilioServer]:
    with TwilioServer(SID, TOKEN) as server:
        yield server


def twilio_app(tmp_path: Path, ingest: Any) -> tuple[FastAPI, MessageLedger]:
    url = f"sqlite:///{tmp_path / 'twilio.db'}"
    upgrade(url)
    ledger = MessageLedger(get_engine(url))
    app = FastAPI()
    app.include_router(twilio_webhooks.router)
    app.state.settings = Settings(
        _env_file=None, public_url="https://shop.example/", twilio_account_sid=SID,
        twilio_auth_token=SecretStr(TOKEN), twilio_from_number=SHOP_NUMBER,
    )
    app.state.ledger = ledger
    app.state.ingest = ingest
    return app, ledger


class RecordingIngest:
    def __init__(self) -> None:
        self.events: list[Event] = []

    async def submit(self, events: list[Event]) -> dict[str, int]:
        self.events.extend(events)
        return {"accepted": len(events), "duplicates": 0}


async def test_6_an_sms_to_a_landline_falls_back_to_email_after_twilios_report(
    tmp_path: Path, twilio: TwilioServer
) -> None:
    state, sms_send = journey_waiting_for_a_report(tmp_path, "sms", "email")
    ingest = RecordingIngest()
    app, ledger = twilio_app(tmp_path, ingest)
    sms_sent(ledger, "cus_42", sms_send.message_id)
    delivery = await TwilioSmsSender(make_settings(twilio)).send(sms(message_id=sms_send.message_id))
    callback = twilio.status_callback(str(delivery.provider_message_id), "undelivered", error_code=30006)

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://internal") as http:
        await post_form(http, callback.url, callback.params, callback.signature)

    assert fallbacks_after(state, ingest.events) == ["email"]
    assert state.profile.undeliverable == {"sms": PHONE}


@pytest.mark.parametrize(
    ("code", "undeliverable"),
    [(30003, {}), (30004, {}), (30005, {"sms": PHONE}), (30006, {"sms": PHONE}), (30007, {}), (30008, {})],
)
async def test_6_twilio_delivery_errors_are_classified_and_30005_30006_mark_the_number(
    tmp_path: Path, twilio: TwilioServer, code: int, undeliverable: dict[str, str]
) -> None:
    ingest = RecordingIngest()
    app, ledger = twilio_app(tmp_path, ingest)
    sms_sent(ledger, "cus_42", "msg_cart_1")
    delivery = await TwilioSmsSender(make_settings(twilio)).send(sms())
    callback = twilio.status_callback(str(delivery.provider_message_id), "undelivered", error_code=code)
    assert callback.url.startswith("https://shop.example/webhooks/twilio/status?message_id=msg_cart_1")

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://internal") as http:
        answer = await post_form(http, callback.url, callback.params, callback.signature)

    assert answer.status_code == 200, answer.text
    [event] = ingest.events
    assert event.properties["error_code"] == str(code) and event.properties["reason"]
    assert event.type == ("message_bounced" if undeliverable else "message_failed")
    assert customer_after([event]).profile.undeliverable == undeliverable


# --- 7. configuration errors stop the channel; 21612 and July 2024 codes ------------------------------


async def test_7_a_refused_api_key_stops_the_channel_loudly_and_the_message_waits(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with SendGridServer("SG.the-real-key") as sendgrid:  # our settings carry another key: 401
        harness = Harness(tmp_path, sendgrid)
        with pytest.raises(ApplicationError) as raised:
            await harness.send(email_request())

    assert raised.value.type == RETRYABLE_ERROR_TYPE and not raised.value.non_retryable
    entry = harness.ledger.find(email_request().message_id)
    assert entry is not None and entry.status is LedgerStatus.DEFERRED, "waits: neither failed nor sent"
    assert not entry.invalid_address and not entry.revoke_consent
    stopped = [r for r in caplog.records if r.levelno == logging.ERROR and "channel stopped" in r.getMessage()]
    assert stopped and EMAIL not in stopped[0].getMessage()

    # The API's health probe goes red, naming the channel, until the waiting email goes out.
    app = FastAPI()
    app.include_router(channel_health.router)
    app.state.ledger = harness.ledger
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://internal") as http:
        red = await http.get("/healthz/channels")
        with SendGridServer(ACTIVITY_KEY) as fixed:  # the operator fixed the key: the next attempt goes out
            await Harness(tmp_path, fixed).send(email_request())
        green = await http.get("/healthz/channels")
    assert red.status_code == 503
    assert red.json()["stopped"]["email"]["provider"] == "sendgrid" and red.json()["stopped"]["email"]["waiting"] == 1
    assert EMAIL not in red.text
    assert (green.status_code, green.json()) == (200, {"stopped": {}})


async def test_7_twilio_blames_the_number_only_for_number_errors(twilio: TwilioServer) -> None:
    outcomes = {}
    for code in (21612, 21268, 21265, 20003, 21659):
        twilio.script(TwilioReply.error(401 if code == 20003 else 400, code, f"error about {PHONE}"))
        try:
            await TwilioSmsSender(make_settings(twilio)).send(sms())
        except ProviderConfigurationError:
            outcomes[code] = "wait"
        except PermanentChannelError as failed:
            outcomes[code] = "number" if failed.invalid_address else "this message"
    assert outcomes == {21612: "this message", 21268: "number", 21265: "number", 20003: "wait", 21659: "wait"}


# --- 8. Advanced Opt-Out's OptOutType drives consent ---------------------------------------------------


@pytest.mark.parametrize(
    ("body", "opt_out_type", "granted"),
    [("PARAR", "STOP", False), ("COMENZAR", "START", True), ("AYUDA", "HELP", None), ("STOP", None, False)],
)
async def test_8_opt_out_type_from_twilio_drives_sms_consent(
    tmp_path: Path, body: str, opt_out_type: str | None, granted: bool | None
) -> None:
    ingest = RecordingIngest()
    app, ledger = twilio_app(tmp_path, ingest)
    sms_sent(ledger, "cus_42", "msg_cart_1")
    params = {"AccountSid": SID, "Body": body, "From": PHONE, "MessageSid": "SM" + "8" * 32, "To": SHOP_NUMBER}
    if opt_out_type:
        params["OptOutType"] = opt_out_type
    url = "https://shop.example/webhooks/twilio/inbound"

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://internal") as http:
        answer = await post_form(http, url, params, _sign(url, params))

    assert answer.status_code == 200
    if granted is None:
        assert ingest.events == []
    else:
        [event] = ingest.events
        assert customer_after([event]).profile.consent["sms"] is granted


# --- 9. one-click unsubscribe only over HTTPS ----------------------------------------------------------


async def test_9_one_click_unsubscribe_needs_https_and_an_http_public_url_warns_at_start(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with SendGridServer(API_KEY) as sendgrid:
        caplog.set_level(logging.WARNING)
        sender = SendGridEmailSender(settings_for(sendgrid, public_url="http://shop.example"))
        assert any("OMNICART_PUBLIC_URL is not HTTPS" in r.getMessage() for r in caplog.records)
        plain = "http://shop.example/v1/unsubscribe/tok.sig"
        await sender.send(email(unsubscribe_url=plain, html="<p>Hi</p>", text="Hi"))
        await sender.send(email())  # https link

    [(_, over_http), (_, over_https)] = sendgrid.accepted
    assert over_http["headers"] == {"List-Unsubscribe": f"<{plain}>"}
    assert over_https["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


# --- 10. categories --------------------------------------------------------------------------------------


async def test_10_bad_categories_are_refused_where_the_journey_sets_them_never_dropped_at_send() -> None:
    for bad in (["réduction"], ["x" * 256], [f"c{i}" for i in range(10)]):
        with pytest.raises(ValidationError):
            EmailTemplate(channel="email", subject="s", html="<p>h</p>", categories=bad)
    EmailTemplate(channel="email", subject="s", html="<p>h</p>", categories=[f"c{i}" for i in range(9)])

    with SendGridServer(API_KEY) as sendgrid:
        sender = SendGridEmailSender(settings_for(sendgrid))
        await sender.send(email(categories=[f"c{i}" for i in range(9)]))
        with pytest.raises(PermanentChannelError, match="at most 10"):
            await sender.send(email(categories=[f"c{i}" for i in range(10)]))
    [(_, body)] = sendgrid.accepted
    assert "abandoned_cart" in body["categories"] and len(body["categories"]) == 10


# --- 11. FCM configuration errors keep the tokens ---------------------------------------------------------


@pytest.fixture
def fcm_settings(tmp_path: Path) -> Iterator[tuple[FcmServer, Settings]]:
    from cryptography.hazmat.primitives import serialization

    from tests.test_fcm_push import CLIENT_EMAIL, PROJECT, _rsa_key, service_account_file

    key = _rsa_key()
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    with FcmServer(PROJECT, public, CLIENT_EMAIL) as fcm:
        yield fcm, Settings(
            _env_file=None,
            fcm_project_id=PROJECT,
            fcm_service_account_file=service_account_file(tmp_path, key, fcm.token_uri),
            fcm_base_url=fcm.url,
        )


@pytest.mark.parametrize("behaviour", ["sender_mismatch", "permission_denied"])
async def test_11_fcm_configuration_errors_wait_and_keep_every_token(
    fcm_settings: tuple[FcmServer, Settings], behaviour: Any
) -> None:
    fcm, settings = fcm_settings
    fcm.answer("device-a", behaviour)
    fcm.answer("device-b", behaviour)

    with pytest.raises(ProviderConfigurationError) as raised:
        await FcmPushSender(settings).send(push("device-a", "device-b"))

    assert not isinstance(raised.value, PermanentChannelError), "no fallback to another channel"
    assert "OMNICART_FCM_PROJECT_ID" in str(raised.value)


async def test_11_an_oversized_push_is_refused_before_fcm_would(fcm_settings: tuple[FcmServer, Settings]) -> None:
    fcm, settings = fcm_settings
    with pytest.raises(PermanentChannelError, match="4096"):
        await FcmPushSender(settings).send(push("device-a", body="x" * 5000))
    assert fcm.sends() == []


# --- 12. unsubscribing is not a click ----------------------------------------------------------------------


async def test_12_the_unsubscribe_link_is_not_click_tracked_other_links_are() -> None:
    unsubscribe = "https://shop.example.com/v1/unsubscribe/tok.sig"
    restore = "https://shop.example.com/cart/restore/1"
    with SendGridServer(API_KEY) as sendgrid:
        sender = SendGridEmailSender(settings_for(sendgrid))
        await sender.send(email(html=f"<p><a href='{restore}'>Cart</a> <a href='{unsubscribe}'>Leave</a></p>"))
        await sender.send(email(html=f"<p><a href='{restore}'>Cart</a></p>"))  # footer link added by us

    for _, body in sendgrid.accepted:
        html = body["content"][1]["value"]
        assert unsubscribe in html
        assert tracked_links(html) == [restore]


# --- 13. the SendGrid webhook's body, timestamp and default secret ----------------------------------------


async def test_13_oversized_bodies_and_non_finite_timestamps_are_refused(api: Api) -> None:
    huge = b"[" + b" " * (1024 * 1024 + 1) + b"]"
    too_big = await api.client.post("/webhooks/sendgrid", content=huge, headers=api.signer.headers(b"[]"))
    assert too_big.status_code == 413

    body = json.dumps([sg_event("delivered", "ev-nan")]).encode()
    for stamp in ("nan", "NaN", "inf", "-inf", "later"):
        headers = api.signer.headers(body)
        headers["X-Twilio-Email-Event-Webhook-Timestamp"] = stamp
        headers["X-Twilio-Email-Event-Webhook-Signature"] = api.signer.headers(body)[
            "X-Twilio-Email-Event-Webhook-Signature"
        ]
        answer = await api.client.post("/webhooks/sendgrid", content=body, headers=headers)
        assert answer.status_code == 403, stamp
    assert api.ingest is not None and api.ingest.events == []


def test_13_the_public_default_signing_secret_warns_at_start_up(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)

    warned = warn_about_public_defaults(Settings(_env_file=None, public_url="https://shop.example"), "worker")
    quiet = warn_about_public_defaults(
        Settings(_env_file=None, public_url="https://shop.example", signing_secret=SecretStr("s" * 40)), "api"
    )

    assert len(warned) == 1 and "OMNICART_SIGNING_SECRET" in warned[0]
    assert quiet == []
    assert any("worker start-up" in r.getMessage() for r in caplog.records)


# --- 14. the fakes refuse what the real APIs refuse --------------------------------------------------------


def test_14_the_sendgrid_fake_refuses_non_ascii_categories_and_one_click_over_http() -> None:
    base = {
        "from": {"email": "shop@example.com"},
        "personalizations": [{"to": [{"email": EMAIL}]}],
        "subject": "s",
        "content": [{"type": "text/plain", "value": "t"}],
    }
    assert validate_mail({**base, "categories": ["réduction"]})
    assert validate_mail(
        {**base, "headers": {"List-Unsubscribe": "<http://x/u>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}}
    )
    assert validate_mail(base) == []


def test_14_the_fcm_fake_refuses_reserved_data_keys_and_payloads_over_4096_bytes(
    fcm_settings: tuple[FcmServer, Settings],
) -> None:
    fcm, _ = fcm_settings
    fcm.issued_tokens.append("ya29.test")  # as if issued by its token endpoint
    url = f"{fcm.url}/v1/projects/{fcm.project_id}/messages:send"
    auth = {"Authorization": "Bearer ya29.test"}
    note = {"title": "t", "body": "b"}
    reserved = httpx.post(url, headers=auth, json={"message": {"token": "d", "notification": note,
                                                              "data": {"google.x": "1"}}})
    too_big = httpx.post(url, headers=auth, json={"message": {"token": "d", "notification": note,
                                                             "data": {"k": "x" * 4100}}})
    fine = httpx.post(url, headers=auth, json={"message": {"token": "d", "notification": note, "data": {"k": "v"}}})
    assert (reserved.status_code, too_big.status_code, fine.status_code) == (400, 400, 200)


def test_14_the_twilio_fake_reports_status_only_to_the_status_callback_url(twilio: TwilioServer) -> None:
    created = httpx.post(
        f"{twilio.url}/2010-04-01/Accounts/{SID}/Messages.json",
        auth=(SID, TOKEN),
        data={"To": PHONE, "From": SHOP_NUMBER, "Body": "hi"},
    ).json()
    with pytest.raises(LookupError):
        twilio.status_callback(created["sid"], "delivered")
    refused = httpx.post(
        f"{twilio.url}/2010-04-01/Accounts/{SID}/Messages.json",
        auth=(SID, TOKEN),
        data={"To": PHONE, "From": SHOP_NUMBER, "Body": "hi", "StatusCallback": "not a url"},
    )
    assert refused.json()["code"] == 21609
