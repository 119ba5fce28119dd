"""Catalog, store and customer events through the real ingest API on the Temporal dev server, into
the catalog on SQLite and PostgreSQL: what a shop's systems send and what the catalog then says.

No worker runs on these tests' task queue (as in tests/test_api.py): a customer event's arrival is
its signal in the customer's workflow; a catalog event must start no workflow at all.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from temporalio.testing import WorkflowEnvironment

from omnicart.api.app import create_app
from omnicart.catalog import count_interested, interested_customers, stock_of, stores_with_stock
from omnicart.catalog.products import product_of
from omnicart.catalog.tables import stock
from omnicart.journey.catalog import JourneyCatalog
from omnicart.privacy.forget import forget_customer
from omnicart.storage import get_engine
from tests.test_api import (
    catalog,  # noqa: F401  (a fixture)
    customer,
    event_log,
    has_workflow,
    make_settings,
    serving,
    signalled,
)


def entity(type_: str, timestamp: str = "2026-11-20T10:00:00Z", **properties: Any) -> dict[str, Any]:
    """A catalog or store event as a shop's back office sends it: no customer_id."""
    return {"id": f"evt_{uuid.uuid4().hex}", "type": type_, "timestamp": timestamp, "source": "api",
            "properties": properties}


def of_customer(customer_id: str, type_: str, **properties: Any) -> dict[str, Any]:
    return {**entity(type_, "2026-11-20T10:00:00Z", **properties), "customer_id": customer_id, "source": "web"}


async def post(http: httpx.AsyncClient, events: list[dict[str, Any]]) -> httpx.Response:
    return await http.post("/v1/events", json={"events": events})


async def test_catalog_and_store_events_without_customer_fill_the_catalog_and_start_no_workflow(
    database: str, tmp_path: Path, dev_env: WorkflowEnvironment, catalog: JourneyCatalog  # noqa: F811
) -> None:
    settings = make_settings(tmp_path, database_url=database)
    shopper = customer()
    batch = [
        entity("store_updated", store_id="soho", name="Soho", address="12 Carnaby St, London",
               timezone="Europe/London", latitude=51.5133, longitude=-0.1389),
        entity("product_updated", sku="SHOE-42", name="Runner 42", url="https://shop.example/runner",
               image_url="https://shop.example/runner.jpg", price=80.0, currency="GBP", category="shoes"),
        entity("inventory_changed", sku="SHOE-42", location="soho", quantity=3),
        entity("inventory_changed", sku="SHOE-42", location="online", quantity=0),
        of_customer(shopper, "product_viewed", sku="SHOE-42"),  # customer events go in the same batch
    ]
    async with serving(create_app(settings, client=dev_env.client, catalog=catalog)) as http:
        response = await post(http, batch)
        repeated = await post(http, batch)

    assert response.status_code == 202, response.text
    assert response.json() == {"accepted": 5, "duplicates": 0}
    assert repeated.json() == {"accepted": 0, "duplicates": 5}
    engine = get_engine(database)
    product = product_of(engine, "SHOE-42")
    assert product is not None and (product.name, product.price, product.currency) == ("Runner 42", 80.0, "GBP")
    assert stock_of(engine, "SHOE-42") == {"soho": 3, "online": 0}
    [store] = stores_with_stock(engine, "SHOE-42", near=(51.51, -0.13))
    assert (store.store_id, store.address, store.quantity) == ("soho", "12 Carnaby St, London", 3)
    for event in batch[:4]:
        logged = event_log(settings).get(event["id"])
        assert logged is not None and logged.forwarded and logged.customer_id == ""
    assert not await has_workflow(dev_env.client, "")
    assert [e.event.id for e in await signalled(dev_env.client, shopper)] == [batch[4]["id"]]
    assert [c.customer_id for c in interested_customers(engine, "SHOE-42", now=_at("2026-11-21")).customers] == [
        shopper]


async def test_a_catalog_event_with_a_customer_and_a_customer_event_without_one_are_refused_by_field(
    tmp_path: Path, dev_env: WorkflowEnvironment, catalog: JourneyCatalog  # noqa: F811
) -> None:
    settings = make_settings(tmp_path)
    stock_for_someone = {**entity("inventory_changed", sku="A", location="online", quantity=1), "customer_id": "cus_1"}
    view_by_no_one = entity("product_viewed", sku="A")
    broken_store = entity("store_updated", store_id="x", latitude=91)
    fine = entity("price_changed", sku="A", price=5.0)
    async with serving(create_app(settings, client=dev_env.client, catalog=catalog)) as http:
        response = await post(http, [fine, stock_for_someone, view_by_no_one, broken_store])

    assert response.status_code == 422
    errors = {(e["index"], e["field"]): e["message"] for e in response.json()["errors"]}
    assert errors == {
        (1, "customer_id"): "must be left out: inventory_changed events concern the catalog, no customer",
        (2, "customer_id"): "is required: product_viewed events concern a customer",
        (3, "properties.latitude"): "must be less than or equal to 90",
    }
    assert event_log(settings).get(fine["id"]) is None  # nothing of a refused batch is applied
    assert product_of(get_engine(settings.database()), "A") is None


async def test_the_newest_stock_wins_across_requests_in_any_order(
    database: str, tmp_path: Path, dev_env: WorkflowEnvironment, catalog: JourneyCatalog  # noqa: F811
) -> None:
    settings = make_settings(tmp_path, database_url=database)
    newer = entity("inventory_changed", "2026-11-20T12:00:00Z", sku="MUG-1", location="online", quantity=2)
    older = entity("inventory_changed", "2026-11-20T09:00:00Z", sku="MUG-1", location="online", quantity=40)
    async with serving(create_app(settings, client=dev_env.client, catalog=catalog)) as http:
        assert (await post(http, [newer])).status_code == 202
        assert (await post(http, [older])).json() == {"accepted": 1, "duplicates": 0}

    assert stock_of(get_engine(database), "MUG-1") == {"online": 2}


async def test_interest_from_views_carts_and_requests_and_forget_removes_it(
    database: str, tmp_path: Path, dev_env: WorkflowEnvironment, catalog: JourneyCatalog  # noqa: F811
) -> None:
    settings = make_settings(tmp_path, database_url=database)
    leaving, staying = customer(), customer()
    batch = [
        of_customer(leaving, "product_viewed", sku="MUG-1"),
        of_customer(leaving, "back_in_stock_requested", sku="CAP-1"),
        of_customer(staying, "cart_updated", cart_id="c1", items=[{"sku": "MUG-1"}, {"sku": "CAP-1"}]),
    ]
    async with serving(create_app(settings, client=dev_env.client, catalog=catalog)) as http:
        assert (await post(http, batch)).status_code == 202
    engine = get_engine(database)
    soon = _at("2026-11-21")

    reasons = {(c.customer_id, c.reason) for sku in ("MUG-1", "CAP-1")
               for c in interested_customers(engine, sku, now=soon).customers}
    assert reasons == {(leaving, "viewed"), (leaving, "requested"), (staying, "carted")}
    assert count_interested(engine, "MUG-1", now=_at("2026-11-20") + timedelta(days=91)) == 0  # 90 days on

    report = await forget_customer(dev_env.client, settings, leaving, timeout=timedelta(seconds=1))

    assert report.interest_rows_deleted == 2
    assert "product interest rows deleted: 2" in report.lines()
    left = {(c.customer_id, c.reason) for sku in ("MUG-1", "CAP-1")
            for c in interested_customers(engine, sku, now=soon).customers}
    assert left == {(staying, "carted")}


def _at(day: str) -> datetime:
    return datetime.fromisoformat(day).replace(tzinfo=UTC)


async def test_when_the_catalog_cannot_be_written_the_producer_hears_503_and_its_retry_applies_once(
    tmp_path: Path, dev_env: WorkflowEnvironment, catalog: JourneyCatalog  # noqa: F811
) -> None:
    settings = make_settings(tmp_path)
    engine = get_engine(settings.database())
    restock = entity("inventory_changed", sku="MUG-1", location="online", quantity=4)
    stock.drop(engine)  # a real failure inside the request's transaction
    async with serving(create_app(settings, client=dev_env.client, catalog=catalog)) as http:
        failed = await post(http, [restock])
        rolled_back = product_of(engine, "MUG-1")
        stock.create(engine)
        retried = await post(http, [restock])
        again = await post(http, [restock])

    assert failed.status_code == 503 and "Retry-After" in failed.headers
    assert rolled_back is None  # the whole transaction, the product row with it
    assert retried.json() == {"accepted": 1, "duplicates": 0}
    assert again.json() == {"accepted": 0, "duplicates": 1}
    assert stock_of(engine, "MUG-1") == {"online": 4}


async def test_the_catalog_events_the_readme_shows_are_taken_and_fill_the_catalog(
    tmp_path: Path, dev_env: WorkflowEnvironment, catalog: JourneyCatalog  # noqa: F811
) -> None:
    """The README's example is what a shop copies first: it must be accepted as written."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme.split("### The catalog events a shop sends", 1)[1]
    example = json.loads(section.split("```json", 1)[1].split("```", 1)[0])
    settings = make_settings(tmp_path)
    async with serving(create_app(settings, client=dev_env.client, catalog=catalog)) as http:
        response = await post(http, example["events"])
    assert response.status_code == 202, response.text
    assert response.json() == {"accepted": 4, "duplicates": 0}
    engine = get_engine(settings.database())
    assert stock_of(engine, "BOOT-42") == {"kadikoy": 4}
    [store] = stores_with_stock(engine, "BOOT-42", near=(40.99, 29.03))
    assert (store.name, store.address) == ("Kadıköy", "Moda Cd. 12, İstanbul")
    product = product_of(engine, "BOOT-42")
    assert product is not None and product.price == 99.0
