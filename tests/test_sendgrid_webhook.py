"""The signed SendGrid Event Webhook and the unsubscribe link, through the real FastAPI routes.

Signatures are real: ECDSA P-256 over ``timestamp + body`` with a key generated for the test, the
way SendGrid signs, verified by the SDK's ``EventWebhook`` helper inside the route.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy import select

from omnicart.analytics.store import message_outcomes
from omnicart.api import sendgrid_webhook, unsubscribe
from omnicart.api.unsubscribe import make_token
from omnicart.events import Event
from omnicart.ledger import LedgerStatus, MessageLedger
from omnicart.messages import SendRequest
from omnicart.settings import Settings
from omnicart.storage import get_engine, upgrade

SECRET = SecretStr("webhook-test-secret")
MESSAGE_ID = "msg_cus42_run7_first_reminder_1"
EMAIL = "maya.lopez@example.com"


class RecordingIngest:
    """The ingest side's contract (dedupe by event id, then forward); records what it was given."""

    def __init__(self) -> None:
        self.batches: list[list[Event]] = []
        self.seen: set[str] = set()

    async def submit(self, events: list[Event]) -> dict[str, int]:
        self.batches.append(events)
        fresh = [event for event in events if event.id not in self.seen]
        self.seen.update(event.id for event in fresh)
        return {"accepted": len(fresh), "duplicates": len(events) - len(fresh)}

    @property
    def events(self) -> list[Event]:
        return [event for batch in self.batches for event in batch]


class Signer:
    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())

    @property
    def public_key(self) -> str:
        """The key as SendGrid's settings page shows it: base64 DER, no PEM armour."""
        der = self.key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        return base64.b64encode(der).decode()

    def headers(self, body: bytes, timestamp: int | None = None) -> dict[str, str]:
        stamp = str(int(time.time()) if timestamp is None else timestamp)
        signature = self.key.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        return {
            "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
            "X-Twilio-Email-Event-Webhook-Timestamp": stamp,
            "Content-Type": "application/json",
        }


class Api:
    def __init__(self, tmp_path: Path, signer: Signer, *, public_key: str | None = "") -> None:
        self.settings = Settings(
            _env_file=None,
            data_dir=tmp_path,
            signing_secret=SECRET,
            sendgrid_webhook_public_key=signer.public_key if public_key == "" else public_key,
        )
        upgrade(self.settings.database())
        self.ledger = MessageLedger(get_engine(self.settings.database()))
        self.ingest: RecordingIngest | None = RecordingIngest()
        self.app = FastAPI()
        self.app.include_router(sendgrid_webhook.router)
        self.app.include_router(unsubscribe.router)
        self.app.state.settings = self.settings
        self.app.state.ledger = self.ledger
        self.app.state.ingest = self.ingest
        self.signer = signer
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://test")

    def claimed(self, message_id: str = MESSAGE_ID) -> None:
        """A message our send activity is handing to SendGrid (the ledger says ``sending``)."""
        request = SendRequest(
            message_id=message_id,
            customer_id="cus_42",
            journey="abandoned_cart",
            journey_version="v1",
            run_id="run_7",
            step_id="first_reminder",
            channel="email",
            template_name="cart_reminder_1",
            template={"channel": "email", "subject": "s", "html": "h"},
            to=[EMAIL],
            context={},
        )
        self.ledger.claim(request, "sendgrid")

    def sent_message(self, message_id: str = MESSAGE_ID) -> None:
        """A message our send activity handed to SendGrid (as the ledger records it)."""
        self.claimed(message_id)
        self.ledger.mark_sent(message_id, "sendgrid", "sg-x-message-id")

    async def post_events(self, events: list[dict[str, Any]], **sign: Any) -> httpx.Response:
        body = json.dumps(events).encode()
        return await self.client.post("/webhooks/sendgrid", content=body, headers=self.signer.headers(body, **sign))

    def evidence(self, message_id: str = MESSAGE_ID) -> tuple[str, ...]:
        entry = self.ledger.find(message_id)
        return entry.evidence if entry else ()


def sg_event(kind: str, event_id: str, message_id: str = MESSAGE_ID, **extra: Any) -> dict[str, Any]:
    return {
        "email": EMAIL,
        "timestamp": 1795338000,
        "smtp-id": "<14c5d75ce93.dfd.64b469@ismtpd-555>",
        "event": kind,
        "category": ["cart", "abandoned_cart"],
        "sg_event_id": event_id,
        "sg_message_id": "sg-x-message-id.filterdrecv-1",
        # custom_args arrive as top-level keys
        "customer_id": "cus_42",
        "journey": "abandoned_cart",
        "run_id": "run_7",
        "step_id": "first_reminder",
        "message_id": message_id,
        **extra,
    }


@pytest_asyncio.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    instance = Api(tmp_path, Signer())
    yield instance
    await instance.client.aclose()


# -- the event webhook ---------------------------------------------------------------------------


async def test_signed_events_become_our_events_and_ledger_evidence(api: Api) -> None:
    api.sent_message()
    batch = [
        sg_event("processed", "ev-proc"),
        sg_event("delivered", "ev-dlv", response="250 OK"),
        sg_event("open", "ev-open", useragent="Mozilla/5.0"),
        sg_event("click", "ev-click", url="https://shop.example.com/cart/restore/cart_8842"),
        sg_event("bounce", "ev-bounce", type="bounce", bounce_classification="Invalid Address"),
        sg_event("dropped", "ev-drop", reason="Invalid SMTPAPI header"),
        sg_event("spamreport", "ev-spam"),
        sg_event("unsubscribe", "ev-unsub"),
        sg_event("group_unsubscribe", "ev-gunsub", asm_group_id=321),
    ]
    response = await api.post_events(batch)

    assert response.status_code == 200, response.text
    assert response.json() == {"received": 9, "forwarded": 8, "unknown_messages": 0, "ignored": 1}
    assert api.ingest is not None
    by_id = {event.id: event for event in api.ingest.events}
    assert {event_id: event.type for event_id, event in by_id.items()} == {
        "sg_ev-dlv": "message_delivered",
        "sg_ev-open": "message_opened",
        "sg_ev-click": "message_clicked",
        "sg_ev-bounce": "message_bounced",
        "sg_ev-drop": "message_failed",
        "sg_ev-spam": "consent_changed",
        "sg_ev-unsub": "consent_changed",
        "sg_ev-gunsub": "consent_changed",
    }
    click = by_id["sg_ev-click"]
    assert click.customer_id == "cus_42" and click.source == "email"
    assert click.properties["message_id"] == MESSAGE_ID and click.properties["journey"] == "abandoned_cart"
    assert click.properties["url"] == "https://shop.example.com/cart/restore/cart_8842"
    assert click.timestamp.timestamp() == 1795338000
    assert by_id["sg_ev-bounce"].properties["bounce_type"] == "bounce"
    assert by_id["sg_ev-unsub"].properties | {"via": None} == {
        "channel": "email",
        "granted": False,
        "message_id": MESSAGE_ID,
        "journey": "abandoned_cart",
        "via": None,
        "source": "provider",  # the consent history's provenance (omnicart.consent)
        "evidence": {"provider": "sendgrid", "event": "unsubscribe", "provider_event_id": "ev-unsub"},
    }
    for event in api.ingest.events:  # every one is a valid envelope of its type
        Event.parse(event.model_dump(mode="json"))
        assert EMAIL not in json.dumps(event.model_dump(mode="json"))
    assert set(api.evidence()) == {e["event"] for e in batch}


async def test_unsigned_request_is_refused_and_changes_nothing(api: Api) -> None:
    api.sent_message()
    body = json.dumps([sg_event("click", "ev-1")]).encode()
    response = await api.client.post("/webhooks/sendgrid", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 401
    assert api.ingest is not None and api.ingest.events == []
    assert api.evidence() == ()


async def test_signature_from_another_key_is_refused(api: Api) -> None:
    api.sent_message()
    body = json.dumps([sg_event("click", "ev-1")]).encode()
    response = await api.client.post("/webhooks/sendgrid", content=body, headers=Signer().headers(body))
    assert response.status_code == 403
    assert api.ingest is not None and api.ingest.events == []
    assert api.evidence() == ()


async def test_tampered_body_is_refused(api: Api) -> None:
    api.sent_message()
    signed = json.dumps([sg_event("open", "ev-1")]).encode()
    tampered = json.dumps([sg_event("unsubscribe", "ev-1")]).encode()
    response = await api.client.post("/webhooks/sendgrid", content=tampered, headers=api.signer.headers(signed))
    assert response.status_code == 403
    assert api.ingest is not None and api.ingest.events == []


async def test_garbage_signature_is_refused(api: Api) -> None:
    body = json.dumps([sg_event("open", "ev-1")]).encode()
    headers = api.signer.headers(body) | {"X-Twilio-Email-Event-Webhook-Signature": "not base64 at all!"}
    response = await api.client.post("/webhooks/sendgrid", content=body, headers=headers)
    assert response.status_code == 403


async def test_replay_of_an_old_signed_request_is_refused(api: Api) -> None:
    api.sent_message()
    response = await api.post_events([sg_event("click", "ev-1")], timestamp=int(time.time()) - 11 * 60)
    assert response.status_code == 403
    assert "old" in response.json()["detail"]
    assert api.ingest is not None and api.ingest.events == []
    assert api.evidence() == ()


async def test_repeated_sg_event_id_changes_nothing(api: Api) -> None:
    api.sent_message()
    first = await api.post_events([sg_event("click", "ev-1")])
    evidence = api.evidence()
    again = await api.post_events([sg_event("click", "ev-1")])
    assert first.status_code == again.status_code == 200
    assert api.ingest is not None
    assert [event.id for event in api.ingest.events] == ["sg_ev-1", "sg_ev-1"]
    assert len(api.ingest.seen) == 1, "the same event id: the ingest side ignores the repeat"
    assert api.evidence() == evidence == ("click",)


async def test_unknown_message_is_accepted_logged_and_only_opt_outs_go_through(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="omnicart")
    response = await api.post_events(
        [sg_event("open", "ev-1", message_id="msg_unknown"), sg_event("unsubscribe", "ev-2", message_id="msg_unknown")]
    )
    assert response.status_code == 200
    assert response.json()["unknown_messages"] == 2
    assert api.ingest is not None
    assert [(event.type, event.customer_id) for event in api.ingest.events] == [("consent_changed", "cus_42")]
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "msg_unknown" in logged and EMAIL not in logged
    assert api.ledger.find("msg_unknown") is None


async def test_processed_event_settles_a_send_left_in_doubt(api: Api) -> None:
    api.claimed("msg_in_doubt")  # the worker died before recording SendGrid's answer
    response = await api.post_events([sg_event("processed", "ev-p", message_id="msg_in_doubt")])
    assert response.status_code == 200
    entry = api.ledger.find("msg_in_doubt")
    assert entry is not None and entry.status == LedgerStatus.SENT


async def test_a_pem_armoured_key_works_too(tmp_path: Path) -> None:
    signer = Signer()
    armoured = f"-----BEGIN PUBLIC KEY-----\n{signer.public_key}\n-----END PUBLIC KEY-----\n"
    api = Api(tmp_path, signer, public_key=armoured)
    api.sent_message()
    async with api.client:
        response = await api.post_events([sg_event("open", "ev-1")])
    assert response.status_code == 200
    assert api.evidence() == ("open",)


async def test_without_a_configured_key_nothing_is_accepted(tmp_path: Path) -> None:
    api = Api(tmp_path, Signer(), public_key=None)
    async with api.client:
        response = await api.post_events([sg_event("click", "ev-1")])
    assert response.status_code == 503
    assert api.ingest is not None and api.ingest.events == []


async def test_a_body_that_is_not_an_event_list_is_a_clear_400(api: Api) -> None:
    body = json.dumps({"event": "click"}).encode()
    response = await api.client.post("/webhooks/sendgrid", content=body, headers=api.signer.headers(body))
    assert response.status_code == 400
    assert "array" in response.json()["detail"]


# -- the unsubscribe link ------------------------------------------------------------------------


async def test_opening_the_unsubscribe_link_only_asks_for_confirmation(api: Api) -> None:
    """Mail scanners open every link: a GET must not unsubscribe anyone."""
    token = make_token(SECRET, "cus_42", MESSAGE_ID)
    page = await api.client.get(f"/v1/unsubscribe/{token}")
    assert page.status_code == 200
    assert "<form method='post'" in page.text and f"/v1/unsubscribe/{token}" in page.text
    assert api.ingest is not None and api.ingest.events == []


async def test_unsubscribe_button_and_one_click_turn_into_consent_changed_once(api: Api) -> None:
    token = make_token(SECRET, "cus_42", MESSAGE_ID)
    clicked = await api.client.post(f"/v1/unsubscribe/{token}")
    one_click = await api.client.post(
        f"/v1/unsubscribe/{token}",
        content=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert clicked.status_code == one_click.status_code == 200
    assert "unsubscribed" in clicked.text
    assert api.ingest is not None
    first, second = api.ingest.events
    assert first.type == "consent_changed" and first.customer_id == "cus_42" and first.source == "email"
    assert first.properties["channel"] == "email" and first.properties["granted"] is False
    assert first.properties["message_id"] == MESSAGE_ID
    assert first.id == second.id, "a second click is the same event: nothing changes twice"


async def test_forged_unsubscribe_links_are_refused(api: Api) -> None:
    genuine = make_token(SECRET, "cus_42", MESSAGE_ID)
    payload, _, signature = genuine.partition(".")
    someone_else = make_token(SECRET, "cus_99", MESSAGE_ID).partition(".")[0]
    forged = [
        f"{someone_else}.{signature}",  # another customer, this link's signature
        make_token(SecretStr("not-our-secret"), "cus_99", MESSAGE_ID),
        payload,
        "garbage",
    ]
    for token in forged:
        response = await api.client.get(f"/v1/unsubscribe/{token}")
        assert response.status_code == 403, token
    assert api.ingest is not None and api.ingest.events == []


async def test_unsubscribe_before_the_api_is_connected_asks_to_retry(api: Api) -> None:
    api.app.state.ingest = None
    response = await api.client.post(f"/v1/unsubscribe/{make_token(SECRET, 'cus_42', MESSAGE_ID)}")
    assert response.status_code == 503


# -- message outcomes for analytics --------------------------------------------------------------


def stored_outcomes(api: Api) -> list[tuple[str, str, bool]]:
    with api.ledger.engine.connect() as conn:
        rows = conn.execute(select(message_outcomes.c.message_id, message_outcomes.c.outcome,
                                   message_outcomes.c.machine)).all()
    return sorted((row.message_id, row.outcome, row.machine) for row in rows)


async def test_outcomes_are_stored_once_with_privacy_proxy_opens_apart(api: Api) -> None:
    api.sent_message()
    batch = [
        sg_event("processed", "ev-proc"),
        sg_event("delivered", "ev-dlv"),
        sg_event("open", "ev-proxy", sg_machine_open=True, useragent="Mozilla/5.0"),
        sg_event("open", "ev-person", sg_machine_open=False, useragent="Mozilla/5.0"),
        sg_event("click", "ev-click", url="https://shop.example.com/cart"),
        sg_event("dropped", "ev-drop", reason="Invalid SMTPAPI header"),
        sg_event("spamreport", "ev-spam"),
        sg_event("open", "ev-other", message_id="msg_unknown"),  # not ours: no outcome
    ]

    first = await api.post_events(batch)
    redelivered = await api.post_events(batch)  # SendGrid retries a whole batch

    assert first.status_code == redelivered.status_code == 200
    assert stored_outcomes(api) == [
        (MESSAGE_ID, "clicked", False),
        (MESSAGE_ID, "delivered", False),
        (MESSAGE_ID, "failed", False),
        (MESSAGE_ID, "opened", False),
        (MESSAGE_ID, "opened", True),
        (MESSAGE_ID, "unsubscribed", False),
    ]


async def test_the_unsubscribe_link_stores_one_unsubscribed_outcome(api: Api) -> None:
    token = make_token(SECRET, "cus_42", MESSAGE_ID)

    for _ in range(2):
        assert (await api.client.post(f"/v1/unsubscribe/{token}")).status_code == 200

    assert stored_outcomes(api) == [(MESSAGE_ID, "unsubscribed", False)]
