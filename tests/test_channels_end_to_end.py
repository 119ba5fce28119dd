"""Issue #3 end to end: what a customer does in one channel steers the others, on real Temporal.

Everything is the product as it runs in production except the providers' far ends: the ingest API
(``create_app``, over httpx's ASGI transport), the customer workflow and the send activity on a real
worker against the real Temporal dev server, the official SendGrid and Twilio SDKs and httpx (FCM)
talking to loopback servers that implement the providers' documented HTTP APIs
(``tests/providers``), and webhooks signed the way the providers sign them: SendGrid with ECDSA
P-256 over ``timestamp + body``, Twilio with HMAC-SHA1 over the URL and the sorted form fields.

Journeys play in seconds: ``tests/journeys_e2e`` holds the journeys written for these tests, and
the flagship is the shipped ``journeys/abandoned_cart.yaml`` with its hours compressed to seconds.

The crash test runs ``worker.py`` as its own OS process, as operators run it, SIGKILLs it while
SendGrid holds the answer to a message it already received, and starts a new one:
``.venv/bin/pytest tests/test_channels_end_to_end.py -k killed -s`` reruns it alone.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from pydantic import SecretStr
from temporalio.client import Client
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from omnicart.api.app import create_app
from omnicart.channels.sms_segments import count_segments
from omnicart.engine.state import CustomerState
from omnicart.ledger import LedgerEntry, LedgerStatus, MessageLedger
from omnicart.routing import customer_workflow_id
from omnicart.settings import Settings
from omnicart.storage import get_engine, upgrade
from tests.providers.fcm_server import FcmServer
from tests.providers.sendgrid_server import Recorded as MailSend
from tests.providers.sendgrid_server import Reply as SendGridReply
from tests.providers.sendgrid_server import SendGridServer
from tests.providers.twilio_server import TwilioServer
from tests.support.bundles import JOURNEYS, publish_folder
from tests.support.runtime import journal
from tests.support.timelines import cart, describe, profile
from worker import run_worker

T = TypeVar("T")

ROOT = Path(__file__).resolve().parent.parent
E2E_JOURNEYS = Path(__file__).resolve().parent / "journeys_e2e"

SHOP_URL = "https://shop.example"  # OMNICART_PUBLIC_URL: what Twilio signs and our links point at
SENDGRID_KEY = "SG.e2e-" + "k" * 20
TWILIO_SID = "AC" + "e2" * 16
TWILIO_TOKEN = "twilio-e2e-auth-token"
SHOP_NUMBER = "+15005550006"
PHONE = "+14155550100"  # tests.support.timelines.profile()'s number
FCM_PROJECT = "omnicart-e2e"
FCM_CLIENT = f"pusher@{FCM_PROJECT}.iam.gserviceaccount.com"

FLAGSHIP_SECONDS = {"1h": "1s", "24h": "5s", "72h": "7s", "6h": "6h", "12h": "12h"}
"""The flagship's waits on a seconds scale: first email at 1 s, SMS at 5 s, last chance at 7 s
(its ``late_after`` limits stay in hours: on this scale nothing is ever late)."""

CRASH_SEND_TIMEOUT = 5
"""OMNICART_SEND_TIMEOUT_SECONDS of the crash test: how soon Temporal gives up on the killed attempt."""


# --- the providers' far ends -----------------------------------------------------------------


@dataclass
class Providers:
    """The three loopback providers, and the keys that let our side trust what they send."""

    sendgrid: SendGridServer
    twilio: TwilioServer
    fcm: FcmServer
    webhook_key: ec.EllipticCurvePrivateKey  # SendGrid's Event Webhook signing key
    service_account_file: Path

    def sendgrid_public_key(self) -> str:
        """As SendGrid's settings page shows it (base64 DER): OMNICART_SENDGRID_WEBHOOK_PUBLIC_KEY."""
        der = self.webhook_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return base64.b64encode(der).decode()

    def sendgrid_signed(self, events: list[dict[str, Any]]) -> tuple[bytes, dict[str, str]]:
        """An Event Webhook POST body and the headers SendGrid signs it with."""
        body = json.dumps(events).encode()
        stamp = str(int(time.time()))
        signature = self.webhook_key.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        return body, {
            "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
            "X-Twilio-Email-Event-Webhook-Timestamp": stamp,
            "Content-Type": "application/json",
        }


@pytest.fixture(scope="module")
def webhook_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def service_account_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def providers(
    tmp_path: Path, webhook_key: ec.EllipticCurvePrivateKey, service_account_key: rsa.RSAPrivateKey
) -> Iterator[Providers]:
    public_pem = service_account_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with (
        SendGridServer(SENDGRID_KEY) as sendgrid,
        TwilioServer(TWILIO_SID, TWILIO_TOKEN) as twilio,
        FcmServer(FCM_PROJECT, public_pem, FCM_CLIENT) as fcm,
    ):
        key_file = tmp_path / "fcm-service-account.json"
        key_file.write_text(
            json.dumps(
                {
                    "type": "service_account",
                    "project_id": FCM_PROJECT,
                    "private_key_id": "e2e-key",
                    "private_key": service_account_key.private_bytes(
                        serialization.Encoding.PEM,
                        serialization.PrivateFormat.PKCS8,
                        serialization.NoEncryption(),
                    ).decode(),
                    "client_email": FCM_CLIENT,
                    "client_id": "1000000001",
                    "token_uri": fcm.token_uri,
                }
            )
        )
        yield Providers(sendgrid, twilio, fcm, webhook_key, key_file)


def product_settings(providers: Providers, tmp_path: Path, journeys_dir: Path, **overrides: Any) -> Settings:
    """Settings that move every channel off the outbox onto the loopback providers."""
    values: dict[str, Any] = {
        "data_dir": tmp_path / "data",
        "journeys_dir": journeys_dir,
        "task_queue": f"channels-e2e-{uuid.uuid4()}",
        "public_url": SHOP_URL,
        "sendgrid_api_key": SecretStr(SENDGRID_KEY),
        "sendgrid_host": providers.sendgrid.url,
        "sendgrid_webhook_public_key": providers.sendgrid_public_key(),
        "twilio_account_sid": TWILIO_SID,
        "twilio_auth_token": SecretStr(TWILIO_TOKEN),
        "twilio_from_number": SHOP_NUMBER,
        "twilio_base_url": providers.twilio.url,
        "fcm_project_id": FCM_PROJECT,
        "fcm_service_account_file": providers.service_account_file,
        "fcm_base_url": providers.fcm.url,
    }
    values.update(overrides)
    settings = Settings(_env_file=None, **values)
    upgrade(settings.database())
    return settings


# --- journeys ----------------------------------------------------------------------------------


def published(tmp_path: Path, *names: str, flagship: bool = False) -> Path:
    """A journeys folder: the shipped templates, the e2e ones, and the named e2e journeys."""
    target = tmp_path / "journeys"
    (target / "templates").mkdir(parents=True)
    for source in (JOURNEYS / "templates", E2E_JOURNEYS / "templates"):
        for template in source.glob("*.yaml"):
            shutil.copy(template, target / "templates" / template.name)
    for name in names:
        shutil.copy(E2E_JOURNEYS / name, target / name)
    if flagship:
        (target / "abandoned_cart.yaml").write_text(compressed_flagship())
    return target


def compressed_flagship() -> str:
    """The shipped flagship with its hours as a few seconds and no quiet hours (the wall clock would decide)."""
    text = (JOURNEYS / "abandoned_cart.yaml").read_text()
    text = re.sub(r"\nquiet_hours:\n(  .*\n)+", "\n", text)

    def seconds(match: re.Match[str]) -> str:
        if match.group(0) not in FLAGSHIP_SECONDS:
            pytest.fail(f"the flagship waits {match.group(0)} now: add it to FLAGSHIP_SECONDS")
        return FLAGSHIP_SECONDS[match.group(0)]

    text = re.sub(r"\b\d+h\b", seconds, text)
    assert "quiet_hours" not in text
    return text


# --- the product -------------------------------------------------------------------------------


@asynccontextmanager
async def ingest_api(settings: Settings, client: Client) -> AsyncIterator[httpx.AsyncClient]:
    """The real ingest API with its webhooks, reached in process over httpx's ASGI transport."""
    publish_folder(settings.database(), settings.journeys_dir)
    app = create_app(settings, client=client)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://omnicart.test") as http:
            yield http


@asynccontextmanager
async def product(dev_env: WorkflowEnvironment, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The API and an in-process worker (``worker.run_worker``), as ``omnicart dev`` runs them."""
    stop = asyncio.Event()
    worker = asyncio.create_task(run_worker(dev_env.client, settings, stop))
    try:
        async with ingest_api(settings, dev_env.client) as http:
            yield http
    finally:
        stop.set()
        await worker


def envelope(customer_id: str, event_type: str, properties: dict[str, Any], source: str = "web") -> dict[str, Any]:
    return {
        "id": f"evt_{uuid.uuid4().hex}",
        "type": event_type,
        "customer_id": customer_id,
        "timestamp": datetime.now(UTC).isoformat(),
        "source": source,
        "properties": properties,
    }


def abandoned_checkout(customer_id: str, cart_id: str, **profile_changes: Any) -> dict[str, Any]:
    """A known customer who starts a checkout and leaves: the batch every test begins with."""
    who = {**profile(timezone="UTC"), **profile_changes}
    return {
        "events": [
            envelope(customer_id, "customer_updated", who, source="api"),
            envelope(customer_id, "checkout_started", cart(cart_id)),
        ]
    }


async def eventually(
    probe: Callable[[], Awaitable[T | None]],
    what: str,
    *,
    timeout: float = 20.0,
    explain: Callable[[], str] = lambda: "",
) -> T:
    """Poll ``probe`` until it gives something truthy; fail naming ``what`` after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        found = await probe()
        if found:
            return found
        if loop.time() > deadline:
            pytest.fail(f"waited {timeout:.0f} s for {what}. {explain()}")
        await asyncio.sleep(0.1)


async def journal_until(client: Client, customer_id: str, line: str, timeout: float = 20.0) -> list[str]:
    """The customer's journal (as 'send email cart_reminder_1' lines) once it contains ``line``."""
    seen: list[str] = []

    async def probe() -> list[str] | None:
        seen[:] = [describe(entry) for entry in await journal(client, customer_id)]
        return list(seen) if line in seen else None

    return await eventually(probe, f"the journal to say {line!r}", timeout=timeout, explain=lambda: f"It says {seen}")


async def customer_state(client: Client, customer_id: str, rpc_timeout: timedelta | None = None) -> CustomerState:
    """The workflow's own picture of the customer (profile, consent, sends whose outcome is owed)."""
    handle = client.get_workflow_handle(customer_workflow_id(customer_id))
    state: CustomerState = await handle.query("state", result_type=CustomerState, rpc_timeout=rpc_timeout)
    return state


def mails_of(sendgrid: SendGridServer, customer_id: str) -> list[MailSend]:
    """The mail sends SendGrid received for one customer (told apart by our custom_args)."""
    return [m for m in sendgrid.mail_sends() if m.json.get("custom_args", {}).get("customer_id") == customer_id]


def sendgrid_event(kind: str, mail: MailSend, sendgrid: SendGridServer, **fields: Any) -> dict[str, Any]:
    """One Event Webhook event about a mail we sent, as SendGrid documents it.

    SendGrid repeats the message's ``custom_args`` as top-level keys of each event; they are read
    from the request our sender really made, not rebuilt here.
    """
    body = mail.json
    x_message_id = next((mid for mid, accepted in sendgrid.accepted if accepted == body), None)
    return {
        "email": body["personalizations"][0]["to"][0]["email"],
        "timestamp": int(time.time()),
        "event": kind,
        "sg_event_id": secrets.token_urlsafe(16),
        "sg_message_id": f"{x_message_id or 'unanswered'}.filterdrecv-5645d9c87f-6r2ch-1-0",
        "category": body.get("categories", []),
        **body["custom_args"],
        **fields,
    }


def twilio_signature(url: str, params: dict[str, str]) -> str:
    """Twilio's documented algorithm: base64(HMAC-SHA1(auth token, URL + sorted name+value pairs))."""
    payload = url + "".join(name + params[name] for name in sorted(params))
    return base64.b64encode(hmac.new(TWILIO_TOKEN.encode(), payload.encode(), hashlib.sha1).digest()).decode()


def new_customer() -> str:
    return f"cus_{uuid.uuid4().hex[:10]}"


# --- 1. an email click skips the SMS -------------------------------------------------------------


async def test_an_email_click_through_the_signed_sendgrid_webhook_skips_the_sms(
    dev_env: WorkflowEnvironment, providers: Providers, tmp_path: Path
) -> None:
    settings = product_settings(providers, tmp_path, published(tmp_path, flagship=True))
    customer, cart_id = new_customer(), f"cart_{uuid.uuid4().hex[:6]}"
    restore_url = f"https://shop.example/cart/{cart_id}/restore"
    async with product(dev_env, settings) as http:
        response = await http.post("/v1/events", json=abandoned_checkout(customer, cart_id))
        assert response.status_code == 202, response.text

        async def first_email() -> MailSend | None:
            return next(iter(mails_of(providers.sendgrid, customer)), None)

        reminder = await eventually(first_email, "SendGrid to receive the first reminder")
        sent_args = reminder.json["custom_args"]
        assert sent_args["template"] == "cart_reminder_1" and sent_args["journey"] == "abandoned_cart"
        html = next(part["value"] for part in reminder.json["content"] if part["type"] == "text/html")
        assert restore_url in html

        # The customer clicks the restore link in that email; SendGrid reports it, signed.
        body, headers = providers.sendgrid_signed(
            [sendgrid_event("click", reminder, providers.sendgrid, url=restore_url, useragent="Mozilla/5.0")]
        )
        response = await http.post("/webhooks/sendgrid", content=body, headers=headers)
        assert response.status_code == 200, response.text
        assert response.json()["forwarded"] == 1

        lines = await journal_until(dev_env.client, customer, "exit completed")

        async def both_emails() -> list[MailSend] | None:  # the journal says "send" before SendGrid has it
            mails = mails_of(providers.sendgrid, customer)
            return mails if len(mails) >= 2 else None

        mails = await eventually(both_emails, "SendGrid to receive the last-chance email")
    assert lines == [
        "enter",
        "send email cart_reminder_1",
        "skip sms cart_reminder_sms clicked_earlier_reminder",
        "send email cart_last_chance",
        "exit completed",
    ]
    assert providers.twilio.sent() == []
    assert [m.json["custom_args"]["template"] for m in mails] == [
        "cart_reminder_1",
        "cart_last_chance",
    ]
    entry = MessageLedger(get_engine(settings.database())).find(sent_args["message_id"])
    assert entry is not None and entry.status == LedgerStatus.SENT and "click" in entry.evidence


# --- 2. an SMS STOP stops the next SMS ---------------------------------------------------------


async def test_an_sms_stop_reply_through_the_signed_twilio_webhook_stops_the_next_sms(
    dev_env: WorkflowEnvironment, providers: Providers, tmp_path: Path
) -> None:
    settings = product_settings(providers, tmp_path, published(tmp_path, "sms_twice.yaml"))
    customer = new_customer()
    async with product(dev_env, settings) as http:
        response = await http.post("/v1/events", json=abandoned_checkout(customer, "cart_stop"))
        assert response.status_code == 202, response.text

        async def first_text() -> list[Any] | None:
            return providers.twilio.sent() or None

        [text] = await eventually(first_text, "Twilio to receive the first text")
        assert text.field("To") == PHONE and text.field("From") == SHOP_NUMBER
        assert "Reply STOP to opt out" in (text.field("Body") or "")

        # The customer answers that text with STOP; Twilio posts it to our inbound URL, signed.
        sid = "SM" + secrets.token_hex(16)
        reply = {
            "AccountSid": TWILIO_SID,
            "ApiVersion": "2010-04-01",
            "Body": "Stop ",
            "From": text.field("To") or "",
            "MessageSid": sid,
            "NumMedia": "0",
            "NumSegments": "1",
            "SmsMessageSid": sid,
            "SmsSid": sid,
            "SmsStatus": "received",
            "To": text.field("From") or "",
        }
        signature = twilio_signature(f"{SHOP_URL}/webhooks/twilio/inbound", reply)
        response = await http.post("/webhooks/twilio/inbound", data=reply, headers={"X-Twilio-Signature": signature})
        assert response.status_code == 200, response.text
        assert "<Response" in response.text

        lines = await journal_until(dev_env.client, customer, "exit completed")
        state = await customer_state(dev_env.client, customer)
    assert lines == [
        "enter",
        "send sms cart_reminder_sms",
        "skip sms cart_followup_sms no_sms_consent",
        "exit completed",
    ]
    assert len(providers.twilio.sent()) == 1
    assert state.profile.consent["sms"] is False


# --- 3. a dead push token falls back to SMS ----------------------------------------------------


async def test_a_push_to_a_dead_device_token_falls_back_to_sms_and_drops_the_token(
    dev_env: WorkflowEnvironment, providers: Providers, tmp_path: Path
) -> None:
    settings = product_settings(providers, tmp_path, published(tmp_path, "push_then_sms.yaml"))
    customer, dead_token = new_customer(), "fcm-token-" + secrets.token_hex(12)
    providers.fcm.answer(dead_token, "unregistered")  # the app was uninstalled
    reachable = {"consent": {"email": True, "sms": True, "push": True}, "push_tokens": [dead_token]}
    async with product(dev_env, settings) as http:
        response = await http.post("/v1/events", json=abandoned_checkout(customer, "cart_push", **reachable))
        assert response.status_code == 202, response.text

        lines = await journal_until(dev_env.client, customer, "send sms cart_reminder_sms", timeout=10)
        state = await customer_state(dev_env.client, customer)

        async def texted() -> list[Any] | None:
            return providers.twilio.sent() or None

        [text] = await eventually(texted, "Twilio to receive the fallback text")
    assert [line for line in lines if line.split()[0] in ("send", "skip")] == [
        "send push cart_push",
        "skip push cart_push push_failed",
        "send sms cart_reminder_sms",
    ]
    assert [push.json["message"]["token"] for push in providers.fcm.sends()] == [dead_token]
    assert text.field("To") == PHONE and "cart_push/restore" in (text.field("Body") or "")
    assert state.profile.push_tokens == []


# --- 4. a worker killed mid-send does not send again -------------------------------------------


def start_worker_process(settings: Settings, dev_env: WorkflowEnvironment, log: Path) -> subprocess.Popen[bytes]:
    """``python worker.py`` as an operator runs it, configured only through the environment."""
    env = {name: value for name, value in os.environ.items() if not name.startswith(("OMNICART_", "TEMPORAL_"))}
    assert settings.sendgrid_api_key is not None
    env.update(
        {
            "PYTHONUNBUFFERED": "1",
            "TEMPORAL_ADDRESS": dev_env.client.service_client.config.target_host,
            "TEMPORAL_NAMESPACE": dev_env.client.namespace,
            "OMNICART_TASK_QUEUE": settings.task_queue,
            "OMNICART_DATA_DIR": str(settings.data_dir),
            "OMNICART_PUBLIC_URL": settings.public_url,
            "OMNICART_SEND_TIMEOUT_SECONDS": str(settings.send_timeout_seconds),
            "OMNICART_SENDGRID_API_KEY": settings.sendgrid_api_key.get_secret_value(),
            "OMNICART_SENDGRID_HOST": settings.sendgrid_host,
            # The session's key and key database (tests/conftest.py), as every other worker here uses.
            "OMNICART_ENCRYPTION_KEYS": os.environ["OMNICART_ENCRYPTION_KEYS"],
            "OMNICART_KEY_DATABASE_URL": os.environ["OMNICART_KEY_DATABASE_URL"],
        }
    )
    with log.open("ab") as out:  # the child keeps its own handle
        return subprocess.Popen(
            [sys.executable, str(ROOT / "worker.py")],
            cwd=log.parent,  # no stray .env from the repository
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def test_a_worker_killed_while_the_provider_holds_its_answer_does_not_send_again_after_restart(
    dev_env: WorkflowEnvironment, providers: Providers, tmp_path: Path
) -> None:
    settings = product_settings(
        providers, tmp_path, published(tmp_path, "two_emails.yaml"), send_timeout_seconds=CRASH_SEND_TIMEOUT
    )
    log = tmp_path / "workers.log"
    ledger = MessageLedger(get_engine(settings.database()))
    # SendGrid receives both first emails and keeps the answers to itself for longer than the test.
    providers.sendgrid.script(SendGridReply.hang(120), SendGridReply.hang(120))
    # `confirmed`: SendGrid's Event Webhook reports the message after the crash (the usual case).
    # `silent`: no word from SendGrid at all; the ledger cannot tell, so it does not send again.
    confirmed, silent = new_customer(), new_customer()
    emails = {confirmed: f"{confirmed}@example.com", silent: f"{silent}@example.com"}
    processes: list[subprocess.Popen[bytes]] = []

    def worker_log() -> str:
        return "Worker log:\n" + (log.read_text(errors="replace")[-3000:] if log.exists() else "(none)")

    async with ingest_api(settings, dev_env.client) as http:
        try:
            processes.append(start_worker_process(settings, dev_env, log))
            for customer in (confirmed, silent):
                batch = abandoned_checkout(customer, f"cart_{customer}", email=emails[customer])
                response = await http.post("/v1/events", json=batch)
                assert response.status_code == 202, response.text

            async def both_in_flight() -> dict[str, MailSend] | None:
                held = {c: mails_of(providers.sendgrid, c) for c in (confirmed, silent)}
                return {c: mails[0] for c, mails in held.items()} if all(held.values()) else None

            first = await eventually(both_in_flight, "SendGrid to receive both first emails", explain=worker_log)
            message_ids = {c: mail.json["custom_args"]["message_id"] for c, mail in first.items()}
            for message_id in message_ids.values():
                entry = ledger.find(message_id)
                assert entry is not None and entry.status == LedgerStatus.SENDING

            processes[0].send_signal(signal.SIGKILL)  # mid-call: SendGrid has the message, we have no answer
            assert processes[0].wait(timeout=10) == -signal.SIGKILL

            body, headers = providers.sendgrid_signed(
                [sendgrid_event("processed", first[confirmed], providers.sendgrid)]
            )
            response = await http.post("/webhooks/sendgrid", content=body, headers=headers)
            assert response.status_code == 200, response.text

            processes.append(start_worker_process(settings, dev_env, log))

            journals: dict[str, list[str]] = {}

            async def journeys_done() -> bool:
                for customer in (confirmed, silent):
                    try:  # the dead worker may still be asked first, until Temporal gives up on it
                        state = await customer_state(dev_env.client, customer, rpc_timeout=timedelta(seconds=5))
                    except RPCError:
                        return False
                    journals[customer] = [describe(line.as_json()) for line in state.journal]
                    if "exit completed" not in journals[customer] or state.pending:  # an outcome still owed
                        return False
                return True

            await eventually(journeys_done, "both journeys to finish on the new worker", timeout=45, explain=worker_log)
        finally:
            for process in processes:
                stop_process(process)

    for customer in (confirmed, silent):
        templates = [m.json["custom_args"]["template"] for m in mails_of(providers.sendgrid, customer)]
        assert templates == ["cart_reminder_1", "cart_reminder_2"], f"{customer} got {templates}"
        assert journals[customer] == [
            "enter",
            "send email cart_reminder_1",
            "send email cart_reminder_2",
            "exit completed",
        ]

    settled: dict[str, LedgerEntry] = {}
    for customer, message_id in message_ids.items():
        entry = ledger.find(message_id)
        assert entry is not None
        settled[customer] = entry
    assert settled[confirmed].status == LedgerStatus.SENT and settled[confirmed].evidence == ("processed",)
    assert settled[silent].status == LedgerStatus.UNCONFIRMED
    assert "not sent again" in (settled[silent].error or "")
    assert all(entry.attempts == 1 for entry in settled.values())  # never claimed for a second call
    worker_output = log.read_text(errors="replace")
    assert not any(email in worker_output for email in emails.values())  # personal data stays out of logs


# --- 5. journeys in the customer's language --------------------------------------------------


@dataclass(frozen=True)
class Localized:
    """What a customer of one locale gets from the flagship: words, formatting, direction, footer."""

    locale: str
    currency: str
    subject: str
    root: str  # the HTML email's root element
    total: str  # the cart's 79.50, as that language writes it in that currency
    sms: str
    footer: str
    encoding: str


LOCALIZED = [
    Localized("tr", "TRY", "Ada, sepetin seni bekliyor", '<html lang="tr">', "\u20ba79,50",
              "sepetin hâlâ kayıtlı", "Iptal icin STOP yazin", "UCS-2"),
    Localized("fa-IR", "USD", "Ada\u060c سبد خرید شما ذخیره شده است", '<html lang="fa" dir="rtl">',
              "\u200e$\xa0\u06f7\u06f9\u066b\u06f5\u06f0", "سبد خرید شما هنوز ذخیره است",
              "برای لغو، STOP را بفرستید", "UCS-2"),
    Localized("ru", "RUB", "Ada, ваша корзина сохранена", '<html lang="ru">', "79,50\xa0\u20bd",
              "ваша корзина всё ещё сохранена", "Отписаться: ответьте STOP", "UCS-2"),
    # No German variant: the journey's default_locale (English) words, formatted as English.
    Localized("de-DE", "EUR", "Ada, your cart is saved for you", '<html lang="en">', "\u20ac79.50",
              "your cart is still saved", "Reply STOP to opt out", "GSM-7"),
]


@pytest.mark.parametrize("expected", LOCALIZED, ids=lambda expected: expected.locale)
async def test_a_customer_gets_the_flagship_in_their_language_through_sendgrid_and_twilio(
    dev_env: WorkflowEnvironment, providers: Providers, tmp_path: Path, expected: Localized
) -> None:
    journeys = published(tmp_path, flagship=True)
    flagship = journeys / "abandoned_cart.yaml"
    text = flagship.read_text()  # the SMS 2 s after the checkout, the last chance out of the test's way
    assert "{after_trigger: 5s}" in text and "{after_trigger: 7s}" in text
    flagship.write_text(text.replace("{after_trigger: 5s}", "{after_trigger: 2s}").replace(
        "{after_trigger: 7s}", "{after_trigger: 1h}"))
    settings = product_settings(providers, tmp_path, journeys)
    customer, cart_id = new_customer(), f"cart_{uuid.uuid4().hex[:6]}"
    who = {**profile(timezone="UTC"), "locale": expected.locale}
    batch = {"events": [envelope(customer, "customer_updated", who, source="api"),
                        envelope(customer, "checkout_started", {**cart(cart_id), "currency": expected.currency})]}
    async with product(dev_env, settings) as http:
        response = await http.post("/v1/events", json=batch)
        assert response.status_code == 202, response.text

        async def email_and_text() -> tuple[MailSend, str] | None:
            mails, texts = mails_of(providers.sendgrid, customer), providers.twilio.sent()
            return (mails[0], texts[0].field("Body") or "") if mails and texts else None

        mail, body = await eventually(email_and_text, "SendGrid's first reminder and Twilio's text")

    content = {part["type"]: part["value"] for part in mail.json["content"]}
    assert mail.json["subject"] == expected.subject
    assert expected.root in content["text/html"]
    assert expected.total in content["text/html"] and expected.total in content["text/plain"]
    assert "dir=" not in content["text/plain"]
    assert expected.sms in body
    assert body.endswith("\n" + expected.footer) and body.count("STOP") == 1
    assert count_segments(body).encoding == expected.encoding
