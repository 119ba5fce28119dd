"""Stock is checked when a message goes out, on real Temporal, with the real send activity and SendGrid's SDK.

Each scenario is a flagship cart plus catalog events (stock that changes while the journey waits,
stores, where the customer is). It runs twice: through ``omnicart simulate`` with the catalog events
in its timeline, and through the real CustomerWorkflow on the time-skipping server, the catalog
events applied to the product database at their timestamps (as the ingest API would) and email
going to a loopback SendGrid. The journals must agree, and the mail must say what a customer would
check: no mail for an item that sold out, only the items still in stock, the right store, and
"Only 2 left" when two are left.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment

from activities.send import SendActivities
from omnicart.catalog import apply_catalog_events, is_catalog_event
from omnicart.channels.base import ChannelSender
from omnicart.channels.outbox import OutboxSender
from omnicart.channels.sendgrid_email import SendGridEmailSender
from omnicart.events import CHANNELS, Channel, Event
from omnicart.ledger import LedgerStatus, MessageLedger
from omnicart.messages import SendRequest
from omnicart.quarantine import QuarantineLog
from omnicart.settings import Settings
from omnicart.simulate import simulate
from omnicart.storage import get_engine, upgrade
from tests.providers.sendgrid_server import SendGridServer
from tests.support.bundles import flagship
from tests.support.runtime import customer_worker, journal, send_event
from tests.support.timelines import HOUR, aligned_start, profile

SENDGRID_KEY = "SG.stock-at-send-test-key"
PICKUP_URL = "https://shop.example/pickup?sku={sku}&store={store_id}"
CUSTOMER = "cus_stock"
MODA = (40.9869, 29.0254)  # a customer a few hundred metres from the Kadıköy store

SHIRT = {"sku": "SHIRT-M", "name": "Linen shirt", "quantity": 1, "price": 49.5, "url": "https://shop.example/p/1"}
TOTE = {"sku": "TOTE", "name": "Canvas tote", "quantity": 2, "price": 15.0, "url": "https://shop.example/p/2"}
STORES = [
    ("kadikoy", "Kadıköy", "Moda Cd. 12", 40.9876, 29.0262),
    ("besiktas", "Beşiktaş", "Barbaros Blv. 5", 41.0430, 29.0070),
]


@dataclass
class Scenario:
    name: str
    items: list[dict[str, Any]]
    stock: dict[tuple[str, str], int]  # (sku, location) -> units when the cart is left
    later: dict[tuple[str, str], int] = field(default_factory=dict)  # the same, 30 minutes later
    customer: dict[str, Any] = field(default_factory=dict)


SCENARIOS = [
    Scenario("sold_out_while_waiting", [SHIRT], {("SHIRT-M", "online"): 5}, {("SHIRT-M", "online"): 0}),
    Scenario("one_item_sold_out_is_dropped", [SHIRT, TOTE],
             {("SHIRT-M", "online"): 40, ("TOTE", "online"): 60}, {("TOTE", "online"): 0}),
    Scenario("nearest_store_by_coordinates", [SHIRT],
             {("SHIRT-M", "online"): 0, ("SHIRT-M", "kadikoy"): 8, ("SHIRT-M", "besiktas"): 9},
             customer={"latitude": MODA[0], "longitude": MODA[1]}),
    Scenario("preferred_store_when_it_has_stock", [SHIRT],
             {("SHIRT-M", "online"): 0, ("SHIRT-M", "kadikoy"): 8, ("SHIRT-M", "besiktas"): 9},
             customer={"latitude": MODA[0], "longitude": MODA[1], "preferred_store_id": "besiktas"}),
    Scenario("preferred_store_without_stock_gives_the_nearest", [SHIRT],
             {("SHIRT-M", "online"): 0, ("SHIRT-M", "kadikoy"): 8, ("SHIRT-M", "besiktas"): 0},
             customer={"latitude": MODA[0], "longitude": MODA[1], "preferred_store_id": "besiktas"}),
    Scenario("low_stock_says_only_2_left", [SHIRT, TOTE], {("SHIRT-M", "online"): 2, ("TOTE", "online"): 60}),
    Scenario("plenty_of_stock_says_nothing", [SHIRT, TOTE], {("SHIRT-M", "online"): 50, ("TOTE", "online"): 60}),
    Scenario("sold_out_to_two_left_while_waiting", [SHIRT], {("SHIRT-M", "online"): 50}, {("SHIRT-M", "online"): 2}),
]


def timeline(scenario: Scenario, start: datetime) -> list[Event]:
    """The customer's events and the shop's catalog events; the cart is left at ``start``."""
    raw: list[tuple[datetime, str, dict[str, Any], bool]] = []
    for store_id, name, address, latitude, longitude in STORES:
        raw.append((start - 2 * HOUR, "store_updated", {"store_id": store_id, "name": name, "address": address,
                                                        "latitude": latitude, "longitude": longitude}, False))
    for item in scenario.items:
        raw.append((start - 2 * HOUR, "product_updated", {"sku": item["sku"], "name": item["name"], "url": item["url"],
                                                          "price": item["price"], "currency": "USD"}, False))
    for (sku, location), quantity in scenario.stock.items():
        raw.append((start - HOUR, "inventory_changed", {"sku": sku, "location": location, "quantity": quantity}, False))
    for (sku, location), quantity in scenario.later.items():
        raw.append((start + HOUR / 2, "inventory_changed", {"sku": sku, "location": location, "quantity": quantity},
                    False))
    raw.append((start - HOUR, "customer_updated", {**profile(), **scenario.customer}, True))
    cart = {"cart_id": "cart_1", "items": scenario.items, "currency": "USD",
            "total": sum(item["price"] * item["quantity"] for item in scenario.items)}
    raw.append((start, "checkout_started", cart, True))
    return [
        Event.parse({"id": f"{scenario.name}-{number}", "type": kind, "timestamp": at.isoformat(),
                     "source": "web", "properties": properties, **({"customer_id": CUSTOMER} if mine else {})})
        for number, (at, kind, properties, mine) in enumerate(raw)
    ]


@pytest.fixture
def sendgrid() -> Any:
    with SendGridServer(SENDGRID_KEY) as server:
        yield server


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
async def test_the_workflow_and_the_preview_check_stock_alike_at_send_time(
    time_env: WorkflowEnvironment, sendgrid: SendGridServer, tmp_path: Path, scenario: Scenario
) -> None:
    bundle = flagship()
    start = aligned_start(await time_env.get_current_time())
    events = timeline(scenario, start)
    until = start + 2 * HOUR  # the first reminder (due an hour after the cart was left) is handled by then
    contents: dict[str, Any] = {}
    expected = [a.as_json() for a in simulate(bundle, events, contents=contents, pickup_url=PICKUP_URL)
                if a.at <= until]

    settings = Settings(_env_file=None, data_dir=tmp_path, sendgrid_api_key=SecretStr(SENDGRID_KEY),
                        sendgrid_host=sendgrid.url, pickup_url=PICKUP_URL)
    upgrade(settings.database())
    engine = get_engine(settings.database())
    outbox = OutboxSender(settings.outbox(), console=io.StringIO())
    senders: dict[Channel, ChannelSender] = {**dict.fromkeys(CHANNELS, outbox), "email": SendGridEmailSender(settings)}
    sends = SendActivities(MessageLedger(engine), senders, settings)
    async with customer_worker(time_env.client, [sends.send_message], QuarantineLog(engine)) as task_queue:
        for event in sorted(events, key=lambda e: e.timestamp):
            wait = event.timestamp - await time_env.get_current_time()
            if wait > timedelta(0):
                await time_env.sleep(wait)
            if is_catalog_event(event):
                apply_catalog_events(engine, [event])  # what the ingest API does with it
            else:
                await send_event(time_env.client, task_queue, event, [bundle])
        await time_env.sleep(until - await time_env.get_current_time())
        actual = await journal(time_env.client, CUSTOMER)

    shape = [{k: v for k, v in line.items() if k != "at"} for line in actual]
    assert shape == [{k: v for k, v in line.items() if k != "at"} for line in expected]
    mails = [m.json for m in sendgrid.mail_sends()]
    html = " ".join(part["value"] for mail in mails for part in mail["content"] if part["type"] == "text/html")
    previewed = " ".join(parts.html or "" for parts in contents.values())
    check = CHECKS[scenario.name]
    check(shape, mails, html)
    check(shape, mails, previewed)  # the preview's message says the same


def _sent_steps(shape: list[dict[str, Any]]) -> list[str]:
    return [line["step"] for line in shape if line["action"] == "send"]


def _sold_out(shape: list[dict[str, Any]], mails: list[dict[str, Any]], html: str) -> None:
    assert [line.get("reason") for line in shape if line["action"] == "skip"] == ["out_of_stock"]
    skip = next(line for line in shape if line["action"] == "skip")
    assert skip["step"] == "first_reminder" and skip["message_id"]
    assert not html  # nothing reached SendGrid (nor the preview's rendered messages)


def _dropped(shape: list[dict[str, Any]], mails: list[dict[str, Any]], html: str) -> None:
    assert _sent_steps(shape) == ["first_reminder"] and "skip" not in [line["action"] for line in shape]
    assert "Linen shirt" in html and "Canvas tote" not in html
    assert "$49.50" in html and "$79.50" not in html  # the total is the items still in stock


def _store(name: str, store_id: str, distance: str | None) -> Any:
    def check(shape: list[dict[str, Any]], mails: list[dict[str, Any]], html: str) -> None:
        assert _sent_steps(shape) == ["first_reminder"]
        assert f"In stock now at {name}" in html
        assert f"sku=SHIRT-M&amp;store={store_id}" in html  # the pick-up link from OMNICART_PICKUP_URL
        assert html.count("In stock now at") == 1
        if distance is not None:
            assert f"({distance} km)" in html
    return check


def _low(shape: list[dict[str, Any]], mails: list[dict[str, Any]], html: str) -> None:
    assert _sent_steps(shape) == ["first_reminder_low_stock"]
    assert html.count("Only 2 left") == 1  # by the shirt, not by the tote (60 left)


def _plenty(shape: list[dict[str, Any]], mails: list[dict[str, Any]], html: str) -> None:
    assert _sent_steps(shape) == ["first_reminder"]
    assert "left</strong>" not in html and "Canvas tote" in html


CHECKS = {
    "sold_out_while_waiting": _sold_out,
    "one_item_sold_out_is_dropped": _dropped,
    "nearest_store_by_coordinates": _store("Kadıköy, Moda Cd. 12", "kadikoy", "0.1"),
    "preferred_store_when_it_has_stock": _store("Beşiktaş, Barbaros Blv. 5", "besiktas", None),
    "preferred_store_without_stock_gives_the_nearest": _store("Kadıköy", "kadikoy", "0.1"),
    "low_stock_says_only_2_left": _low,
    "plenty_of_stock_says_nothing": _plenty,
    "sold_out_to_two_left_while_waiting": _low,
}


async def test_a_skipped_message_stays_skipped_when_the_send_is_retried(
    tmp_path: Path, sendgrid: SendGridServer
) -> None:
    """The ledger settles an out-of-stock message as skipped: an attempt after the restock sends nothing."""
    settings = Settings(_env_file=None, data_dir=tmp_path, sendgrid_api_key=SecretStr(SENDGRID_KEY),
                        sendgrid_host=sendgrid.url)
    upgrade(settings.database())
    engine = get_engine(settings.database())
    ledger = MessageLedger(engine)
    sends = SendActivities(ledger, {"email": SendGridEmailSender(settings)}, settings)
    template = flagship().templates["cart_reminder_1"]
    request = SendRequest(
        message_id="msg_stock_retry", customer_id="cus_1", journey="abandoned_cart", journey_version="v1",
        run_id="run_1", step_id="first_reminder", channel="email", template_name="cart_reminder_1",
        template=template, to=["ada@example.com"],
        context={"customer": {"id": "cus_1", "first_name": "Ada", "email": "ada@example.com"},
                 "cart": {"cart_id": "c1", "items": [SHIRT], "total": 49.5, "currency": "USD", "restore_url": None},
                 "journey": {"name": "abandoned_cart", "run_id": "run_1", "step_id": "first_reminder"}},
    )

    def stock(quantity: int, number: int) -> None:
        apply_catalog_events(engine, [Event.parse({
            "id": f"inv_{number}", "type": "inventory_changed", "timestamp": f"2026-11-0{number}T10:00:00+00:00",
            "source": "web", "properties": {"sku": "SHIRT-M", "location": "online", "quantity": quantity}})])

    stock(0, 1)
    first = await ActivityEnvironment().run(sends.send_message, request)
    stock(7, 2)
    again = await ActivityEnvironment().run(sends.send_message, request)

    assert (first.outcome, first.skip_reason) == ("skipped", "out_of_stock")
    assert (again.outcome, again.skip_reason) == ("skipped", "out_of_stock")
    entry = ledger.find("msg_stock_retry")
    assert entry is not None and entry.status == LedgerStatus.SKIPPED
    assert sendgrid.mail_sends() == []
