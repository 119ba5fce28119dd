"""Shopify webhooks through the real API on the Temporal dev server: signed sample payloads in,
the omnicart events (in customers' workflows, in the catalog) or the quarantine out.

No worker runs on these tests' task queue (as in tests/test_api.py): an accepted customer event
is its signal in the customer's workflow. tests/test_connectors_shopify_end_to_end.py runs the
flagship journey for real.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.client import WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment
from typer.testing import CliRunner

from omnicart.api.app import create_app
from omnicart.catalog import stock_of
from omnicart.catalog.products import product_of
from omnicart.cli import app as cli
from omnicart.journey.catalog import JourneyCatalog
from omnicart.routing import customer_workflow_id
from omnicart.settings import Settings
from omnicart.storage import get_engine
from tests.support.platform_payloads import (
    SHOPIFY_SECRET,
    shopify_checkout,
    shopify_customer,
    shopify_inventory_level,
    shopify_order,
    shopify_privacy,
    shopify_product,
    shopify_request,
    signature,
)
from tests.test_api import (
    catalog,  # noqa: F401  (a fixture)
    event_log,
    has_workflow,
    make_settings,
    serving,
    signalled,
)
from worker import build_worker

PATH = "/webhooks/shopify"


def shopify_settings(tmp_path: Path, **overrides: Any) -> Settings:
    return make_settings(tmp_path, shopify_api_secret=SHOPIFY_SECRET, **overrides)


def new_id() -> int:
    return random.randint(10**12, 10**13)


async def deliver(http: httpx.AsyncClient, topic: str, payload: dict[str, Any], **options: Any) -> httpx.Response:
    body, headers = shopify_request(topic, payload, **options)
    return await http.post(PATH, content=body, headers=headers)


async def test_a_checkout_webhook_becomes_the_customers_contact_and_checkout_started_once(
    tmp_path: Path, dev_env: WorkflowEnvironment, catalog: JourneyCatalog  # noqa: F811
) -> None:
    settings = shopify_settings(tmp_path)
    customer = new_id()
    at = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
    async with serving(create_app(settings, client=dev_env.client, catalog=catalog)) as http:
        first = await deliver(http, "checkouts/create", shopify_checkout(customer), event_id="evt-1", triggered_at=at)
        again = await deliver(http, "checkouts/create", shopify_checkout(customer), event_id="evt-1", triggered_at=at)
        emptied = {**shopify_checkout(customer), "line_items": [], "total_price": "0.00"}
        updated = await deliver(http, "checkouts/update", emptied, event_id="evt-2", triggered_at=at)

    assert first.status_code == 200, first.text
    assert first.json() == {"accepted": 2, "duplicates": 0, "quarantined": 0, "reason": None}
    assert again.json() == {"accepted": 0, "duplicates": 2, "quarantined": 0, "reason": None}
    assert updated.json()["accepted"] == 2
    profile, checkout, _, cart = [incoming.event for incoming in await signalled(dev_env.client, f"shopify:{customer}")]
    assert (profile.type, profile.properties) == ("customer_updated", {
        "email": "john@example.com", "phone": "+16135551111", "first_name": "John", "consent": {"email": True}})
    assert checkout.type == "checkout_started" and checkout.timestamp == at and checkout.source == "web"
    assert checkout.properties == {
        "cart_id": "shopify:cart-123123123",
        "checkout_id": "shopify:123123123",
        "items": [{"sku": "IPOD2008PINK", "name": "IPod Nano - 8GB", "quantity": 2, "price": 199.0}],
        "total": 398.0,
        "currency": "USD",
        "restore_url": "https://checkout.local/548380009/checkouts/123123123/recover?key=example",
    }
    assert checkout.id == "shopify:evt-1" and profile.id == "shopify:evt-1:1"
    assert (cart.type, cart.properties["cart_id"], cart.properties["items"]) == (
        "cart_updated", "shopify:cart-123123123", [])


async def test_a_forged_or_missing_signature_is_401_and_nothing_is_taken(
    tmp_path: Path, dev_env: WorkflowEnvironment, catalog: JourneyCatalog  # noqa: F811
) -> None:
    settings = shopify_settings(tmp_path)
    customer = new_id()
    statuses = []
    async with serving(create_app(settings, client=dev_env.client, catalog=catalog)) as http:
        for forged in ("", "bm90IHRoZSBzaWduYXR1cmU=", "not base64 at all", None):
            body, headers = shopify_request("orders/create", shopify_order(customer), event_id="forged-1")
            if forged is None:
                del headers["X-Shopify-Hmac-Sha256"]
            else:
                headers["X-Shopify-Hmac-Sha256"] = forged
            statuses.append((await http.post(PATH, content=body, headers=headers)).status_code)
        statuses.append((await deliver(http, "orders/create", shopify_order(customer), secret="guess")).status_code)

    assert statuses == [401] * 5
    assert event_log(settings).get("shopify:forged-1") is None
    assert not await has_workflow(dev_env.client, f"shopify:{customer}")


async def test_a_pos_order_is_a_store_order_at_its_location_and_a_web_order_is_not(
    tmp_path: Path, dev_env: WorkflowEnvironment, catalog: JourneyCatalog  # noqa: F811
) -> None:
    settings = shopify_settings(tmp_path)
    customer = new_id()
    async with serving(create_app(settings, client=dev_env.client, catalog=catalog)) as http:
        web = await deliver(http, "orders/create", shopify_order(customer, order_id=1001, cart_token="c-9"))
        pos = await deliver(http, "orders/create", shopify_order(customer, order_id=1002, pos_location=24826418))

    assert web.json()["accepted"] == 1 and pos.json()["accepted"] == 1
    online, in_store = [incoming.event for incoming in await signalled(dev_env.client, f"shopify:{customer}")]
    assert (online.type, online.source, online.properties["order_id"]) == ("order_placed", "web", "shopify:1001")
    assert online.properties["cart_id"] == "shopify:c-9" and "store_id" not in online.properties
    assert (in_store.source, in_store.properties["store_id"]) == ("store", "shopify:24826418")
    assert in_store.properties["total"] == 403.0 and in_store.properties["currency"] == "USD"


async def test_only_subscribed_is_consent(
    tmp_path: Path, dev_env: WorkflowEnvironment, catalog: JourneyCatalog  # noqa: F811
) -> None:
    settings = shopify_settings(tmp_path)
    states = {"subscribed": True, "pending": False, "not_subscribed": False, "unsubscribed": False,
              "redacted": False}
    customers = {state: new_id() for state in states}
    async with serving(create_app(settings, client=dev_env.client, catalog=catalog)) as http:
        for state, customer in customers.items():
            response = await deliver(http, "customers/update", shopify_customer(customer, email_state=state,
                                                                                 sms_state=state))
            assert response.json()["accepted"] == 1

    for state, customer in customers.items():
        [update] = [incoming.event for incoming in await signalled(dev_env.client, f"shopify:{customer}")]
        assert update.properties["consent"] == {"email": states[state], "sms": states[state]}, state
        assert update.properties["email"] == "bob@biller.com"


async def test_a_stock_level_before_its_product_is_quarantined_then_replayed_into_stock_per_location(
    tmp_path: Path, dev_env: WorkflowEnvironment, catalog: JourneyCatalog  # noqa: F811
) -> None:
    settings = shopify_settings(tmp_path)
    engine = get_engine(settings.database())
    async with serving(create_app(settings, client=dev_env.client, catalog=catalog)) as http:
        early = await deliver(http, "inventory_levels/update", shopify_inventory_level(available=6))
        kept = (await http.get("/v1/connectors/quarantine")).json()
        product = await deliver(http, "products/update", shopify_product())
        replayed = (await http.post("/v1/connectors/quarantine/replay")).json()
        left = (await http.get("/v1/connectors/quarantine")).json()
        later = await deliver(http, "inventory_levels/update", shopify_inventory_level(49148386, available=0))

    assert early.status_code == 200 and early.json()["quarantined"] == 1
    assert "49148385 is not linked to a sku" in early.json()["reason"]
    assert [(entry["connector"], entry["topic"]) for entry in kept] == [("shopify", "inventory_levels/update")]
    assert product.json()["accepted"] == 2
    small = product_of(engine, "example-shirt-s")
    assert small is not None and (small.name, small.price) == ("Example T-Shirt - Small", 19.99)
    assert small.url == "https://omnicart-test.myshopify.com/products/example-t-shirt"
    assert [outcome["answer"]["accepted"] for outcome in replayed] == [1]
    assert left == []
    assert later.json()["accepted"] == 1
    assert stock_of(engine, "example-shirt-s") == {"shopify:24826418": 6}
    assert stock_of(engine, "example-shirt-m") == {"shopify:24826418": 0}


@pytest.mark.parametrize(
    ("topic", "body", "reason"),
    [
        ("orders/paid", json.dumps(shopify_order(1)).encode(), "is not mapped"),
        ("orders/create", b"{not json", "not a JSON object"),
        ("checkouts/create", json.dumps({**shopify_checkout(1), "customer": None}).encode(), "anonymous"),
        ("customers/update", json.dumps({**shopify_customer(1), "phone": "555-625-1199"}).encode(), "E.164"),
    ],
)
async def test_a_genuine_payload_that_cannot_be_mapped_is_200_and_kept_with_its_reason(
    topic: str, body: bytes, reason: str, tmp_path: Path, dev_env: WorkflowEnvironment,
    catalog: JourneyCatalog,  # noqa: F811
) -> None:
    settings = shopify_settings(tmp_path)
    _, headers = shopify_request(topic, {})
    headers["X-Shopify-Hmac-Sha256"] = signature(SHOPIFY_SECRET, body)
    async with serving(create_app(settings, client=dev_env.client, catalog=catalog)) as http:
        response = await http.post(PATH, content=body, headers=headers)
        redelivered = await http.post(PATH, content=body, headers=headers)
        kept = (await http.get("/v1/connectors/quarantine", params={"connector": "shopify"})).json()

    assert response.status_code == 200 and redelivered.status_code == 200
    assert response.json()["accepted"] == 0 and reason in response.json()["reason"]
    assert len(kept) == 1 and reason in kept[0]["reason"]
    assert "555-625-1199" not in kept[0]["reason"] and "john@example.com" not in kept[0]["reason"]


async def test_privacy_webhooks_export_and_forget_the_shopify_customer_and_the_shop(
    tmp_path: Path, dev_env: WorkflowEnvironment, catalog: JourneyCatalog  # noqa: F811
) -> None:
    settings = shopify_settings(tmp_path)
    customer, other = new_id(), new_id()
    unmappable_phone = {**shopify_customer(customer), "phone": "555-625-1199"}
    # A worker ends each workflow on the forget signal (without one, forget waits, then terminates).
    async with build_worker(dev_env.client, settings), \
            serving(create_app(settings, client=dev_env.client, catalog=catalog)) as http:
        await deliver(http, "customers/create", shopify_customer(customer))
        await deliver(http, "customers/update", unmappable_phone)  # quarantined under the customer's id
        await deliver(http, "customers/create", shopify_customer(other))
        exported = await deliver(http, "customers/data_request", shopify_privacy("customers/data_request", customer))
        export = json.loads((settings.data_dir / "exports" / "shopify-data-request-9999.json").read_text())
        redacted = await deliver(http, "customers/redact", shopify_privacy("customers/redact", customer))
        again = await deliver(http, "customers/redact", shopify_privacy("customers/redact", customer))
        kept_after = (await http.get("/v1/connectors/quarantine")).json()
        shop_gone = await deliver(http, "shop/redact", shopify_privacy("shop/redact"))

    assert exported.status_code == 200 and export["customer_id"] == f"shopify:{customer}"
    assert export["profile"]["email"] == "bob@biller.com"
    assert redacted.status_code == 200 and redacted.json()["privacy"] == {
        "forgotten": f"shopify:{customer}", "quarantined_deleted": 1}
    assert again.status_code == 200 and again.json()["privacy"]["quarantined_deleted"] == 0
    assert kept_after == []
    assert shop_gone.status_code == 200 and shop_gone.json()["privacy"]["customers_forgotten"] == 1
    for forgotten in (customer, other):
        handle = dev_env.client.get_workflow_handle(customer_workflow_id(f"shopify:{forgotten}"))
        assert (await handle.describe()).status == WorkflowExecutionStatus.COMPLETED


def test_connect_shopify_prints_every_subscription_for_the_public_address(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMNICART_PUBLIC_URL", "https://omnicart.shop.example")
    monkeypatch.setenv("OMNICART_SHOPIFY_API_VERSION", "2025-10")
    from omnicart.settings import get_settings

    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(cli, ["connect", "shopify", "--print-subscriptions"])
    finally:
        get_settings.cache_clear()

    assert result.exit_code == 0, result.output
    assert 'api_version = "2025-10"' in result.output
    assert 'uri = "https://omnicart.shop.example/webhooks/shopify"' in result.output
    for topic in ("checkouts/create", "checkouts/update", "orders/create", "customers/update",
                  "products/update", "inventory_levels/update", "customers/redact", "shop/redact"):
        assert f'"{topic}"' in result.output
