"""The ``send_message`` activity: rendered once, delivered at most once, through retries and crashes.

Run in the Temporal SDK's own activity harness (``ActivityEnvironment``); the channels are the real
outbox and the real SendGrid SDK against the local SendGrid server.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import select
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.send import RETRYABLE_ERROR_TYPE, SendActivities
from omnicart.analytics.rows import JourneyActionRow, action_id
from omnicart.analytics.store import journey_actions, message_outcomes
from omnicart.api.unsubscribe import read_token
from omnicart.channels.base import ChannelSender, Delivery, RenderedMessage
from omnicart.channels.outbox import OutboxSender, read_outbox
from omnicart.channels.sendgrid_email import SENDGRID_TIMEOUT, SendGridEmailSender
from omnicart.discounts import DiscountBook, discount_code
from omnicart.events import Channel
from omnicart.journey.model import EmailTemplate, SmsTemplate
from omnicart.ledger import LedgerStatus, MessageLedger
from omnicart.messages import SEND_RETRY_POLICY, SEND_START_TO_CLOSE, SendRequest
from omnicart.settings import Settings
from omnicart.storage import get_engine, upgrade
from tests.providers.sendgrid_server import Reply, SendGridServer

API_KEY = "SG.activity-test.key"
EMAIL = "maya.lopez@example.com"
PHONE = "+14155550142"
SECRET = "test-signing-secret"

REMINDER = EmailTemplate(
    channel="email",
    subject="{{ customer.first_name }}, your cart is waiting",
    html=(
        "<p>Hi {{ customer.first_name }},</p>{% for item in cart.items %}<p>{{ item.name }}: "
        "{{ item.price | money: cart.currency }}</p>{% endfor %}"
        "<p>Use {{ discount.code }} for {{ discount.percent }}% off.</p>"
        "<a href='{{ cart.restore_url }}'>Back to your cart</a> <a href='{{ unsubscribe_url }}'>Unsubscribe</a>"
    ),
    categories=["cart"],
    discount_percent=15,
)


def request(message_id: str = "msg_cus42_run7_last_chance_1", **overrides: Any) -> SendRequest:
    values: dict[str, Any] = {
        "message_id": message_id,
        "customer_id": "cus_42",
        "journey": "abandoned_cart",
        "journey_version": "abc123",
        "run_id": "run_7",
        "step_id": "last_chance",
        "channel": "email",
        "template_name": "cart_last_chance",
        "template": REMINDER,
        "to": [EMAIL],
        "context": {
            "customer": {"id": "cus_42", "email": EMAIL, "first_name": "Maya"},
            "cart": {
                "cart_id": "cart_8842",
                "items": [{"sku": "LIN-1", "name": "Linen Shirt", "quantity": 1, "price": 59.0}],
                "total": 59.0,
                "currency": "USD",
                "restore_url": "https://shop.example.com/cart/restore/cart_8842",
            },
        },
    }
    values.update(overrides)
    return SendRequest(**values)


def sms_request() -> SendRequest:
    return request(
        "msg_cus42_run7_second_reminder_1",
        channel="sms",
        step_id="second_reminder",
        template_name="cart_reminder_sms",
        template=SmsTemplate(channel="sms", body="{{ customer.first_name }}, your cart is saved."),
        to=[PHONE],
    )


class Harness:
    """The activity wired to a fresh database, an outbox, and (optionally) the SendGrid server."""

    def __init__(self, tmp_path: Path, sendgrid: SendGridServer | None = None, **activity_options: Any) -> None:
        self.settings = Settings(
            _env_file=None,
            data_dir=tmp_path,
            public_url="https://api.shop.example.com",
            signing_secret=SecretStr(SECRET),
            sendgrid_api_key=SecretStr(API_KEY) if sendgrid else None,
            sendgrid_host=sendgrid.url if sendgrid else "http://127.0.0.1:9",
        )
        upgrade(self.settings.database())
        self.ledger = MessageLedger(get_engine(self.settings.database()))
        self.console = io.StringIO()
        self.outbox = OutboxSender(self.settings.outbox(), console=self.console)
        self.senders: dict[Channel, ChannelSender] = {"email": self.outbox, "sms": self.outbox, "push": self.outbox}
        if sendgrid is not None:
            self.senders["email"] = SendGridEmailSender(self.settings, timeout=0.3)
        self.activities = SendActivities(self.ledger, self.senders, self.settings, **activity_options)

    async def send(self, req: SendRequest) -> Any:
        return await ActivityEnvironment().run(self.activities.send_message, req)

    def outbox_lines(self) -> list[dict[str, Any]]:
        return read_outbox(self.settings.outbox())

    def crash_after_claim(self, req: SendRequest, provider: str) -> None:
        """What a worker killed mid-send leaves behind: a ``sending`` row and no recorded outcome."""
        self.ledger.claim(req, provider)


@pytest.fixture
def sendgrid() -> Iterator[SendGridServer]:
    with SendGridServer(API_KEY) as server:
        yield server


# -- rendering and the outbox --------------------------------------------------------------------


async def test_email_is_rendered_with_discount_and_unsubscribe_link_into_the_outbox(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    result = await h.send(request())

    assert result.outcome == "sent" and result.provider == "outbox"
    [line] = h.outbox_lines()
    assert line["customer_id"] == "cus_42" and line["channel"] == "email"
    assert line["template"] == "cart_last_chance" and line["step_id"] == "last_chance"
    assert line["subject"] == "Maya, your cart is waiting"
    code = discount_code(SecretStr(SECRET), "msg_cus42_run7_last_chance_1")
    assert f"Use {code} for 15% off." in line["html"]
    assert "Linen Shirt: $59.00" in line["html"]
    assert line["text"], "the plain-text part is derived from the HTML"
    assert line["unsubscribe_url"].startswith("https://api.shop.example.com/v1/unsubscribe/")
    assert line["unsubscribe_url"] in line["html"]
    token = read_token(SecretStr(SECRET), line["unsubscribe_url"].rsplit("/", 1)[1])
    assert (token.customer_id, token.message_id) == ("cus_42", "msg_cus42_run7_last_chance_1")
    assert "sent_at" in line

    console = h.console.getvalue()
    assert "cus_42" in console and "cart_last_chance" in console and "email" in console
    assert EMAIL not in console and "m***@e***.com" in console


async def test_sms_console_line_masks_the_phone_number(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    result = await h.send(sms_request())
    assert result.outcome == "sent"
    # A marketing SMS says how to opt out in the outbox exactly as it would on the phone.
    assert h.outbox_lines()[0]["body"] == "Maya, your cart is saved.\nReply STOP to opt out"
    assert PHONE not in h.console.getvalue() and "+1******0142" in h.console.getvalue()


async def test_discount_code_is_single_use_and_the_same_on_every_attempt(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    await h.send(request())
    book = DiscountBook(h.ledger.engine, SecretStr(SECRET))
    code = discount_code(SecretStr(SECRET), "msg_cus42_run7_last_chance_1")
    issued = book.check(code.lower())
    assert issued is not None and issued.percent == 15 and issued.customer_id == "cus_42"
    assert book.issue(customer_id="cus_42", message_id="msg_cus42_run7_last_chance_1", percent=15).code == code
    assert discount_code(SecretStr(SECRET), "msg_other") != code
    assert book.redeem(code, "ord_1") is True
    assert book.redeem(code, "ord_2") is False
    assert book.check("OC-NOT-ISSUED") is None


async def test_a_template_that_does_not_render_fails_the_step_without_sending(tmp_path: Path) -> None:
    broken = REMINDER.model_copy(update={"subject": "Hi {{ customer.nickname }}"})
    h = Harness(tmp_path)
    result = await h.send(request(template=broken))
    assert result.outcome == "failed"
    assert result.error is not None and "cart_last_chance" in result.error and "nickname" in result.error
    assert h.outbox_lines() == []
    entry = h.ledger.find("msg_cus42_run7_last_chance_1")
    assert entry is not None and entry.status == LedgerStatus.FAILED


# -- never twice ---------------------------------------------------------------------------------


async def test_the_same_request_twice_is_delivered_once(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    first = await h.send(request())
    second = await h.send(request())
    assert (first.outcome, second.outcome) == ("sent", "already_sent")
    assert len(h.outbox_lines()) == 1
    entry = h.ledger.find("msg_cus42_run7_last_chance_1")
    assert entry is not None and entry.status == LedgerStatus.SENT and entry.attempts == 1
    assert h.ledger.find_customer_by_recipient("email", "MAYA.LOPEZ@example.com") == "cus_42"
    assert EMAIL not in repr(entry)


async def test_crash_after_the_outbox_took_it_is_not_sent_again(tmp_path: Path) -> None:
    h = Harness(tmp_path, attempt_timeout=timedelta(0))
    req = request()
    h.crash_after_claim(req, "outbox")
    await h.outbox.send(RenderedMessage(**{**req.model_dump(exclude={"template", "journey_version"}), "subject": "x"}))

    result = await h.send(req)
    assert result.outcome == "already_sent"
    assert len(h.outbox_lines()) == 1
    entry = h.ledger.find(req.message_id)
    assert entry is not None and entry.status == LedgerStatus.SENT


async def test_crash_before_the_outbox_took_it_sends_it_once(tmp_path: Path) -> None:
    h = Harness(tmp_path, attempt_timeout=timedelta(0))
    req = request()
    h.crash_after_claim(req, "outbox")
    result = await h.send(req)
    assert result.outcome == "sent"
    assert len(h.outbox_lines()) == 1
    entry = h.ledger.find(req.message_id)
    assert entry is not None and entry.attempts == 2


async def test_a_retry_while_the_earlier_attempt_may_still_run_waits_for_it(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    req = request()
    h.crash_after_claim(req, "outbox")
    with pytest.raises(ApplicationError) as caught:
        await h.send(req)
    delay = caught.value.next_retry_delay
    assert delay is not None and timedelta(seconds=50) < delay <= SEND_START_TO_CLOSE
    assert not caught.value.non_retryable
    assert h.outbox_lines() == []


async def test_two_concurrent_attempts_deliver_once(tmp_path: Path) -> None:
    h = Harness(tmp_path)

    class SlowOutbox:
        provider = "outbox"

        async def send(self, message: RenderedMessage) -> Delivery:
            await asyncio.sleep(0.3)
            return await h.outbox.send(message)

    h.activities.senders["email"] = SlowOutbox()
    outcomes = await asyncio.gather(h.send(request()), h.send(request()), return_exceptions=True)
    assert sorted(type(o).__name__ for o in outcomes) == ["ApplicationError", "SendResult"]
    assert len(h.outbox_lines()) == 1


# -- through SendGrid ----------------------------------------------------------------------------


async def test_sendgrid_same_request_twice_makes_one_api_call(tmp_path: Path, sendgrid: SendGridServer) -> None:
    h = Harness(tmp_path, sendgrid)
    first = await h.send(request())
    second = await h.send(request())
    assert (first.outcome, second.outcome) == ("sent", "already_sent")
    assert len(sendgrid.mail_sends()) == 1
    x_message_id, body = sendgrid.accepted[0]
    assert first.provider_message_id == second.provider_message_id == x_message_id
    assert body["custom_args"]["message_id"] == "msg_cus42_run7_last_chance_1"
    assert body["headers"]["List-Unsubscribe"].startswith("<https://api.shop.example.com/v1/unsubscribe/")


async def test_sendgrid_crash_mid_call_is_not_sent_again(tmp_path: Path, sendgrid: SendGridServer) -> None:
    h = Harness(tmp_path, sendgrid, attempt_timeout=timedelta(0))
    req = request()
    h.crash_after_claim(req, "sendgrid")
    result = await h.send(req)
    assert result.outcome == "already_sent"
    assert result.error is not None and result.error.startswith("unconfirmed")
    assert sendgrid.mail_sends() == []
    entry = h.ledger.find(req.message_id)
    assert entry is not None and entry.status == LedgerStatus.UNCONFIRMED
    assert [e.message_id for e in h.ledger.with_status(LedgerStatus.UNCONFIRMED)] == [req.message_id]


async def test_sendgrid_crash_mid_call_settled_by_webhook_evidence(tmp_path: Path, sendgrid: SendGridServer) -> None:
    h = Harness(tmp_path, sendgrid, attempt_timeout=timedelta(0))
    req = request()
    h.crash_after_claim(req, "sendgrid")
    assert h.ledger.record_event(req.message_id, "processed") is True
    result = await h.send(req)
    assert result.outcome == "already_sent" and result.error is None
    assert sendgrid.mail_sends() == []
    entry = h.ledger.find(req.message_id)
    assert entry is not None and entry.status == LedgerStatus.SENT and entry.evidence == ("processed",)


async def test_sendgrid_429_retries_after_retry_after_then_sends_once(tmp_path: Path, sendgrid: SendGridServer) -> None:
    h = Harness(tmp_path, sendgrid)
    sendgrid.script(Reply.rate_limited(retry_after="7"))
    with pytest.raises(ApplicationError) as caught:
        await h.send(request())
    assert caught.value.next_retry_delay == timedelta(seconds=7)
    assert caught.value.type == "RetryableChannelError" and not caught.value.non_retryable
    entry = h.ledger.find("msg_cus42_run7_last_chance_1")
    assert entry is not None and entry.status == LedgerStatus.DEFERRED

    result = await h.send(request())
    assert result.outcome == "sent"
    assert len(sendgrid.mail_sends()) == 2 and len(sendgrid.accepted) == 1


async def test_sendgrid_timeout_is_retried_without_a_second_email(tmp_path: Path, sendgrid: SendGridServer) -> None:
    h = Harness(tmp_path, sendgrid, attempt_timeout=timedelta(0))
    sendgrid.script(Reply.hang(0.8))  # SendGrid accepts it, but only after our 0.3 s timeout
    with pytest.raises(ApplicationError):
        await h.send(request())
    entry = h.ledger.find("msg_cus42_run7_last_chance_1")
    assert entry is not None and entry.status == LedgerStatus.SENDING

    result = await h.send(request())
    assert result.outcome == "already_sent"
    deadline = time.monotonic() + 3
    while not sendgrid.accepted and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert len(sendgrid.mail_sends()) == 1 and len(sendgrid.accepted) == 1


async def test_sendgrid_invalid_address_fails_for_good(tmp_path: Path, sendgrid: SendGridServer) -> None:
    h = Harness(tmp_path, sendgrid)
    req = request(to=["maya.lopez@@example"])
    result = await h.send(req)
    assert result.outcome == "failed" and result.invalid_address and result.provider == "sendgrid"
    again = await h.send(req)
    assert again.outcome == "failed" and again.invalid_address
    assert len(sendgrid.mail_sends()) == 1


async def test_a_channel_without_a_sender_fails_instead_of_retrying(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    del h.activities.senders["sms"]
    result = await h.send(sms_request())
    assert result.outcome == "failed" and result.error is not None and "sms" in result.error


def test_retry_policy_never_gives_up_and_backs_off_to_a_cap() -> None:
    assert SEND_RETRY_POLICY.maximum_attempts == 0
    assert SEND_RETRY_POLICY.maximum_interval is not None
    assert SEND_RETRY_POLICY.maximum_interval <= timedelta(minutes=15)
    assert timedelta(seconds=SENDGRID_TIMEOUT) < SEND_START_TO_CLOSE, "an attempt records its own outcome"


async def test_a_send_still_retrying_past_the_threshold_is_logged_for_an_alert(
    tmp_path: Path, sendgrid: SendGridServer, caplog: pytest.LogCaptureFixture
) -> None:
    h = Harness(tmp_path, sendgrid)
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, attempt=h.settings.send_retry_alert_attempts + 1)
    sendgrid.script(Reply.rate_limited(retry_after="7"))
    with caplog.at_level(logging.WARNING, logger="temporalio.activity"), pytest.raises(ApplicationError):
        await env.run(h.activities.send_message, request())
    alerts = [r.getMessage() for r in caplog.records if "still retrying" in r.getMessage()]
    assert len(alerts) == 1 and alerts[0].startswith(
        f"send msg_cus42_run7_last_chance_1 on email is still retrying (attempt "
        f"{h.settings.send_retry_alert_attempts + 1}): a provider may be down")
    assert EMAIL not in caplog.text  # never the recipient

    caplog.clear()
    sendgrid.script(Reply.rate_limited(retry_after="7"))
    with caplog.at_level(logging.WARNING, logger="temporalio.activity"), pytest.raises(ApplicationError):
        await h.send(request())  # attempt 1
    assert "still retrying" not in caplog.text


def test_bugs_are_not_retried_but_outages_are() -> None:
    non_retryable = SEND_RETRY_POLICY.non_retryable_error_types or []
    for bug in ("TypeError", "KeyError", "AttributeError", "ValidationError"):
        assert bug in non_retryable
    assert RETRYABLE_ERROR_TYPE not in non_retryable


# -- analytics -------------------------------------------------------------------------------------


def journey_rows(*actions: str) -> list[JourneyActionRow]:
    """The rows the workflow hands to a send: the run's actions since its last report."""
    return [
        JourneyActionRow(action_id=action_id("cus_42", "run_7", seq), at=datetime(2026, 11, 1, 10, seq, tzinfo=UTC),
                         customer_id="cus_42", journey="abandoned_cart", version="abc123", run_id="run_7",
                         action=action, step="last_chance" if action != "enter" else None)
        for seq, action in enumerate(actions)
    ]


def analytics_of(h: Harness) -> tuple[list[str], list[tuple[str, str]]]:
    with h.ledger.engine.connect() as conn:
        actions = conn.execute(select(journey_actions.c.action).order_by(journey_actions.c.at)).scalars().all()
        outcomes = conn.execute(select(message_outcomes.c.message_id, message_outcomes.c.outcome)).all()
    return list(actions), sorted((row.message_id, row.outcome) for row in outcomes)


async def test_a_send_stores_the_rows_it_carries_once_and_the_outbox_counts_as_delivered(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    req = request(analytics=journey_rows("enter", "step", "send"))

    await h.send(req)
    await h.send(req)  # a retry: the same rows, the same outcome

    assert analytics_of(h) == (["enter", "step", "send"], [("msg_cus42_run7_last_chance_1", "delivered")])


async def test_the_rows_are_stored_even_when_the_send_fails_and_the_failure_is_an_outcome(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    del h.activities.senders["sms"]

    result = await h.send(sms_request().model_copy(update={"analytics": journey_rows("enter", "step")}))

    assert result.outcome == "failed"
    assert analytics_of(h) == (["enter", "step"], [("msg_cus42_run7_second_reminder_1", "failed")])


async def test_sendgrid_acceptance_is_not_a_delivery_and_a_refusal_is_a_failure(
    tmp_path: Path, sendgrid: SendGridServer
) -> None:
    h = Harness(tmp_path, sendgrid)

    accepted = await h.send(request())
    refused = await h.send(request("msg_cus42_run7_last_chance_2", to=["maya.lopez@@example"]))

    assert (accepted.outcome, refused.outcome) == ("sent", "failed")
    assert analytics_of(h) == ([], [("msg_cus42_run7_last_chance_2", "failed")])  # the webhook says delivered
