"""WooCommerce webhooks and the checkout endpoint through the real API on the Temporal dev server:
payloads shaped like WooCommerce's REST API v3 resources and Store API cart, signed as it signs."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from temporalio.testing import WorkflowEnvironment

from omnicart.api.app import create_app
from omnicart.catalog import stock_of
from omnicart.catalog.products import product_of
from omnicart.connectors.woocommerce_checkout import customer_token
from omnicart.journey.catalog import JourneyCatalog
from omnicart.settings import Settings
from omnicart.storage import get_engine
from tests.support.platform_payloads import (
    WOO_SECRET,
    store_api_cart,
    woo_customer,
    woo_order,
    woo_product,
    woo_request,
)
from tests.test_api import (
    catalog,  # noqa: F401  (a fixture)
    event_log,
    has_workflow,
    make_settings,
    serving,
    signalled,
)

PATH = "/webhooks/woocommerce"
CHECKOUT = "/v1/woocommerce/checkout"
SHOP = "https://shop.example"


def woo_settings(tmp_path: Path, **overrides: Any) -> Settings:
    return make_settings(tmp_path, woocommerce_webhook_secret=WOO_SECRET, woocommerce_shop_origins=[SHOP],
                         **overrides)


def new_id() -> int:
    return random.randint(10**8, 10**9)


async def deliver(http: httpx.AsyncClient, topic: str, payload: dict[str, Any], **options: Any) -> httpx.Response:
    body, headers = woo_request(topic, payload, **options)
    return await http.post(PATH, content=body, headers=headers)


async def test_order_and_customer_webhooks_become_the_customers_events_once(
    tmp_path: Path, dev_env: WorkflowEnvironment, catalog: JourneyCatalog  # noqa: F811
) -> None:
    settings = woo_settings(tmp_path)
    customer = new_id()
    async with serving(create_app(settings, client=dev_env.client, catalog=catalog)) as http:
        profile = await deliver(http, "customer.updated", woo_customer(customer), delivery_id="d-1")
        order = await deliver(http, "order.created", woo_order(customer), delivery_id="d-2")
        again = await deliver(http, "order.created", woo_order(customer), delivery_id="d-2")

    assert (profile.json()["accepted"], order.json()["accepted"], again.json()["duplicates"]) == (1, 1, 1)
    updated, placed = [incoming.event for incoming in await signalled(dev_env.client, f"woocommerce:{customer}")]
    assert updated.properties == {"email": "john.doe@example.com", "phone": "+14155550100", "first_name": "John"}
    assert (placed.type, placed.id, placed.source) == ("order_placed", "woocommerce:d-2", "web")
    assert placed.properties == {
        "order_id": "woocommerce:727",
        "items": [{"sku": "woo-single-1", "name": "Woo Single #1", "quantity": 2, "price": 3.0},
                  {"sku": "woocommerce:product:23", "name": "Ship Your Idea - Color: Black, Size: M Test",
                   "quantity": 1, "price": 12.0}],
        "total": 29.35,
        "currency": "USD",
    }
    assert placed.timestamp.isoformat() == "2026-11-22T19:22:10+00:00"


@pytest.mark.parametrize(
    ("product", "units"),
    [(woo_product(stock_quantity=7), 7),
     (woo_product(manage_stock=False, stock_quantity=None, stock_status="outofstock"), 0),
     (woo_product(manage_stock=False, stock_quantity=None, stock_status="instock"), 1),
     (woo_product(sku="woo-hoodie-blue-m", stock_quantity=3, parent_id=794), 3)],
)
async def test_a_product_update_sets_the_product_and_its_online_stock(
    product: dict[str, Any], units: int, tmp_path: Path, dev_env: WorkflowEnvironment,
    catalog: JourneyCatalog,  # noqa: F811
) -> None:
    settings = woo_settings(tmp_path)
    async with serving(create_app(settings, client=dev_env.client, catalog=catalog)) as http:
        response = await deliver(http, "product.updated", product)

    assert response.json()["accepted"] == 2
    engine = get_engine(settings.database())
    stored = product_of(engine, product["sku"])
    assert stored is not None and (stored.name, stored.price, stored.category) == ("Premium Quality", 21.99, "Clothing")
    assert stock_of(engine, product["sku"]) == {"online": units}


async def test_the_ping_on_saving_a_webhook_is_200_and_forged_deliveries_are_401(
    tmp_path: Path, dev_env: WorkflowEnvironment, catalog: JourneyCatalog  # noqa: F811
) -> None:
    settings = woo_settings(tmp_path)
    customer = new_id()
    body, headers = woo_request("order.created", woo_order(customer), delivery_id="forged")
    headers["X-WC-Webhook-Signature"] = woo_request("order.created", {}, secret="guess")[1]["X-WC-Webhook-Signature"]
    async with serving(create_app(settings, client=dev_env.client, catalog=catalog)) as http:
        ping = await http.post(PATH, content=b"webhook_id=7",
                               headers={"Content-Type": "application/x-www-form-urlencoded"})
        forged = await http.post(PATH, content=body, headers=headers)
        unsigned_order = await http.post(PATH, content=body, headers={"X-WC-Webhook-Topic": "order.created"})

    assert ping.status_code == 200 and ping.json()["accepted"] == 0
    assert forged.status_code == 401 and unsigned_order.status_code == 401
    assert event_log(settings).get("woocommerce:forged") is None
    assert not await has_workflow(dev_env.client, f"woocommerce:{customer}")


async def test_a_guests_order_is_kept_as_anonymous(
    tmp_path: Path, dev_env: WorkflowEnvironment, catalog: JourneyCatalog  # noqa: F811
) -> None:
    settings = woo_settings(tmp_path)
    async with serving(create_app(settings, client=dev_env.client, catalog=catalog)) as http:
        response = await deliver(http, "order.created", woo_order(0))
        kept = (await http.get("/v1/connectors/quarantine", params={"connector": "woocommerce"})).json()

    assert response.status_code == 200 and response.json()["quarantined"] == 1
    assert [entry["reason"].split(":")[0] for entry in kept] == ["anonymous"]


def checkout_body(customer: int, token: str | None = None, cart: dict[str, Any] | None = None) -> bytes:
    """What the checkout script posts: the customer, the token the shop printed, the Store API cart."""
    return json.dumps({"customer_id": str(customer),
                       "token": token if token is not None else customer_token(SecretStr(WOO_SECRET), str(customer)),
                       "cart": cart or store_api_cart()}).encode()


async def test_the_checkout_script_contract_starts_a_checkout_without_keeping_addresses(
    tmp_path: Path, dev_env: WorkflowEnvironment, catalog: JourneyCatalog  # noqa: F811
) -> None:
    settings = woo_settings(tmp_path)
    customer = new_id()
    async with serving(create_app(settings, client=dev_env.client, catalog=catalog)) as http:
        script = await http.get("/woocommerce/checkout.js")
        posted = await http.post(CHECKOUT, content=checkout_body(customer),
                                 headers={"Origin": SHOP, "Content-Type": "text/plain"})
        reposted = await http.post(CHECKOUT, content=checkout_body(customer),
                                   headers={"Origin": SHOP, "Content-Type": "text/plain"})

    assert script.status_code == 200 and "/wp-json/wc/store/v1/cart" in script.text and CHECKOUT in script.text
    assert posted.status_code == 200 and posted.json()["accepted"] == 1
    assert posted.headers["access-control-allow-origin"] == SHOP
    assert reposted.json()["duplicates"] == 1
    [checkout] = [incoming.event for incoming in await signalled(dev_env.client, f"woocommerce:{customer}")]
    assert checkout.type == "checkout_started"
    assert checkout.properties["cart_id"] == f"woocommerce:cart:{customer}"
    assert checkout.properties["items"] == [{
        "sku": "woo-beanie", "name": "Beanie", "quantity": 2, "price": 18.0,
        "url": "https://shop.example/product/beanie/", "image_url": "https://shop.example/wp-content/uploads/beanie.jpg"}]
    assert (checkout.properties["total"], checkout.properties["currency"]) == (36.0, "USD")
    assert checkout.properties["restore_url"] == "https://shop.example/cart/"
    assert "john.doe@example.com" not in json.dumps(checkout.properties)


async def test_the_checkout_endpoint_refuses_other_origins_and_wrong_tokens(
    tmp_path: Path, dev_env: WorkflowEnvironment, catalog: JourneyCatalog  # noqa: F811
) -> None:
    settings = woo_settings(tmp_path)
    customer = new_id()
    cases = [("https://evil.example", None, 403), (None, None, 403), (SHOP, "0" * 64, 401), (SHOP, "", 401)]
    async with serving(create_app(settings, client=dev_env.client, catalog=catalog)) as http:
        for origin, token, status in cases:
            headers = {"Content-Type": "text/plain", **({"Origin": origin} if origin else {})}
            response = await http.post(CHECKOUT, content=checkout_body(customer, token), headers=headers)
            assert response.status_code == status, (origin, token)

    assert not await has_workflow(dev_env.client, f"woocommerce:{customer}")


async def test_the_checkout_endpoint_is_rate_limited_per_address(
    tmp_path: Path, dev_env: WorkflowEnvironment, catalog: JourneyCatalog  # noqa: F811
) -> None:
    settings = woo_settings(tmp_path, woocommerce_checkout_rate="3/minute")
    customer = new_id()
    async with serving(create_app(settings, client=dev_env.client, catalog=catalog)) as http:
        statuses = [(await http.post(CHECKOUT, content=checkout_body(customer, "bad"),
                                     headers={"Origin": SHOP})).status_code for _ in range(5)]

    assert statuses == [401, 401, 401, 429, 429]
