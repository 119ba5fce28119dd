"""The catalog in the product database, on SQLite and PostgreSQL: what applying catalog and store
events leaves there, what it reports (restocks, honest price drops), and the questions journeys ask
of it (stock, stores near a customer, the Omnibus reference price, who is interested in a sku)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from rich.console import Console

from omnicart.catalog import (
    InterestRecorder,
    apply_catalog_events,
    count_interested,
    in_stock,
    interested_customers,
    is_honest_drop,
    lowest_price,
    stock_of,
    stores_with_stock,
)
from omnicart.catalog.present import show_sku
from omnicart.catalog.products import product_of
from omnicart.catalog.stock import haversine_km
from omnicart.events import Event
from omnicart.privacy.retention import apply_retention
from omnicart.settings import Settings
from omnicart.storage import get_engine

T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
SECRET = SecretStr("catalog-tests")


def event(type_: str, at: datetime, customer_id: str = "", event_id: str | None = None, **properties: Any) -> Event:
    return Event(
        id=event_id or f"evt_{uuid.uuid4().hex}",
        type=type_,
        customer_id=customer_id,
        timestamp=at,
        source="api",
        properties=properties,
    )


def stock_event(sku: str, location: str, quantity: int, at: datetime) -> Event:
    return event("inventory_changed", at, sku=sku, location=location, quantity=quantity)


def price_event(sku: str, price: float, at: datetime) -> Event:
    return event("price_changed", at, sku=sku, price=price, currency="EUR")


def test_the_newest_event_wins_whatever_the_order_and_repeats_change_nothing(database: str) -> None:
    engine = get_engine(database)
    older = event("product_updated", T0, sku="MUG-1", name="Mug", url="https://shop.example/mug", price=12.0,
                  currency="EUR", category="kitchen")
    newer = event("product_updated", T0 + timedelta(hours=1), sku="MUG-1", name="Big mug", price=14.0, currency="EUR")
    stale_stock = stock_event("MUG-1", "online", 3, T0)
    fresh_stock = stock_event("MUG-1", "online", 8, T0 + timedelta(hours=2))

    apply_catalog_events(engine, [newer, fresh_stock])
    apply_catalog_events(engine, [older, stale_stock])  # late and older: ignored
    apply_catalog_events(engine, [newer, fresh_stock])  # a repeat

    product = product_of(engine, "MUG-1")
    assert product is not None
    assert (product.name, product.url, product.category, product.price) == ("Big mug", None, None, 14.0)
    assert product.updated_at == T0 + timedelta(hours=2)
    assert stock_of(engine, "MUG-1") == {"online": 8}
    # Both prices are history (the older one still counts for the 30-day lowest), each once.
    assert lowest_price(engine, "MUG-1", before=T0 + timedelta(days=1)) == 12.0


def test_stores_keep_their_newest_statement(database: str) -> None:
    engine = get_engine(database)
    new = event("store_updated", T0 + timedelta(days=1), store_id="soho", name="Soho", address="12 Carnaby St",
                latitude=51.5133, longitude=-0.1389)
    old = event("store_updated", T0, store_id="soho", name="Old name", address="Somewhere else")
    apply_catalog_events(engine, [new])
    apply_catalog_events(engine, [old, new])
    apply_catalog_events(engine, [stock_event("SHOE-42", "soho", 2, T0)])

    [store] = stores_with_stock(engine, "SHOE-42")
    assert (store.store_id, store.name, store.address, store.quantity) == ("soho", "Soho", "12 Carnaby St", 2)


def test_a_restock_is_stock_coming_back_from_none_per_location(database: str) -> None:
    engine = get_engine(database)
    sku = "SHOE-42"
    first = apply_catalog_events(engine, [stock_event(sku, "online", 0, T0)])
    back = stock_event(sku, "online", 5, T0 + timedelta(hours=1))
    online_back = apply_catalog_events(engine, [back])
    more = apply_catalog_events(engine, [stock_event(sku, "online", 7, T0 + timedelta(hours=2))])
    repeated = apply_catalog_events(engine, [back])  # the same event again: not a second restock
    store_back = apply_catalog_events(engine, [stock_event(sku, "soho", 5, T0 + timedelta(hours=3))])
    sold_out = apply_catalog_events(engine, [stock_event(sku, "soho", 0, T0 + timedelta(hours=4))])
    store_again = apply_catalog_events(engine, [stock_event(sku, "soho", 1, T0 + timedelta(hours=5))])

    assert first.restocks == [] and more.restocks == [] and repeated.restocks == [] and sold_out.restocks == []
    [online] = online_back.restocks
    assert (online.sku, online.location, online.quantity, online.total, online.back_everywhere) == (
        sku, "online", 5, 5, True)
    assert online.event_id == back.id
    [store] = store_back.restocks
    assert (store.location, store.quantity, store.total, store.back_everywhere) == ("soho", 5, 12, False)
    [again] = store_again.restocks
    assert (again.location, again.quantity, again.total) == ("soho", 1, 8)
    assert stock_of(engine, sku) == {"online": 7, "soho": 1}
    assert in_stock(engine, sku) and in_stock(engine, sku, "soho") and not in_stock(engine, sku, "leeds")


def test_an_oversold_location_has_none_and_a_restock_from_it_counts(database: str) -> None:
    engine = get_engine(database)
    apply_catalog_events(engine, [stock_event("CAP-1", "online", -2, T0)])
    assert not in_stock(engine, "CAP-1")
    [restock] = apply_catalog_events(engine, [stock_event("CAP-1", "online", 4, T0 + timedelta(hours=1))]).restocks
    assert (restock.quantity, restock.total, restock.back_everywhere) == (4, 4, True)


def test_a_drop_is_honest_only_below_the_lowest_price_of_the_30_days_before(database: str) -> None:
    engine = get_engine(database)
    sku = "COAT-1"
    base = price_event(sku, 100.0, T0)
    rise = price_event(sku, 120.0, T0 + timedelta(days=20))
    fake = price_event(sku, 110.0, T0 + timedelta(days=25))  # below the last price, not below 100
    real = price_event(sku, 90.0, T0 + timedelta(days=26))

    assert apply_catalog_events(engine, [base]).price_drops == []  # no history: nothing it drops from
    assert apply_catalog_events(engine, [rise]).price_drops == []
    assert apply_catalog_events(engine, [fake]).price_drops == []
    [drop] = apply_catalog_events(engine, [real]).price_drops
    assert (drop.sku, drop.price, drop.reference_price, drop.currency, drop.event_id) == (sku, 90.0, 100.0, "EUR",
                                                                                          real.id)
    assert apply_catalog_events(engine, [real]).price_drops == []  # applied again: reported once

    assert lowest_price(engine, sku, before=fake.timestamp) == 100.0
    assert not is_honest_drop(engine, sku, 110.0, fake.timestamp)
    assert is_honest_drop(engine, sku, 99.0, fake.timestamp)
    # 60 days on, the window holds only 90 (in effect since day 26) and what came after: 90 is the reference.
    later = T0 + timedelta(days=60)
    assert lowest_price(engine, sku, before=later) == 90.0
    assert not is_honest_drop(engine, sku, 95.0, later)
    assert lowest_price(engine, "NEVER-PRICED") is None


def test_a_late_older_price_is_history_but_neither_current_nor_a_drop(database: str) -> None:
    engine = get_engine(database)
    apply_catalog_events(engine, [price_event("HAT-1", 50.0, T0), price_event("HAT-1", 60.0, T0 + timedelta(days=5))])

    late = apply_catalog_events(engine, [price_event("HAT-1", 40.0, T0 + timedelta(days=2))])

    assert late.price_drops == []
    product = product_of(engine, "HAT-1")
    assert product is not None and product.price == 60.0
    assert lowest_price(engine, "HAT-1", before=T0 + timedelta(days=6)) == 40.0


def test_stores_with_stock_nearest_first_with_their_address(database: str) -> None:
    engine = get_engine(database)
    stores = {
        "soho": ("Soho", "12 Carnaby St, London", 51.5133, -0.1389),
        "camden": ("Camden", "1 High St, Camden", 51.5390, -0.1426),
        "paris": ("Paris Marais", "3 rue des Archives, Paris", 48.8590, 3.3567),
        "leeds": ("Leeds", "Briggate, Leeds", 53.7980, -1.5420),
    }
    apply_catalog_events(engine, [
        event("store_updated", T0, store_id=store_id, name=name, address=address, latitude=lat, longitude=lon)
        for store_id, (name, address, lat, lon) in stores.items()
    ])
    apply_catalog_events(engine, [
        stock_event("BAG-1", "soho", 1, T0), stock_event("BAG-1", "paris", 9, T0),
        stock_event("BAG-1", "leeds", 4, T0), stock_event("BAG-1", "camden", 0, T0),  # none: not listed
        stock_event("BAG-1", "online", 50, T0),  # the web shop is not a store
    ])
    kings_cross = (51.5308, -0.1238)

    near = stores_with_stock(engine, "BAG-1", near=kings_cross, limit=3)

    assert [store.store_id for store in near] == ["soho", "leeds", "paris"]
    assert near[0].address == "12 Carnaby St, London"
    assert near[0].distance_km is not None and 1.5 < near[0].distance_km < 3.0
    assert [store.distance_km for store in near] == sorted(store.distance_km or 0 for store in near)
    assert [store.store_id for store in stores_with_stock(engine, "BAG-1", limit=2)] == ["paris", "leeds"]
    assert stores_with_stock(engine, "BAG-1", near=kings_cross, limit=1)[0].store_id == "soho"


def test_haversine_matches_a_known_distance() -> None:
    london, paris = (51.5074, -0.1278), (48.8566, 2.3522)
    assert 340 < haversine_km(london, paris) < 345  # 343.5 km, great circle


def test_interest_keeps_the_strongest_reason_and_the_latest_expiry(database: str) -> None:
    engine = get_engine(database)
    recorder = InterestRecorder(engine, SECRET, timedelta(days=90))
    cart = [{"sku": "MUG-1", "quantity": 1}, {"sku": "CAP-1", "quantity": 2}]
    recorder.record([
        event("back_in_stock_requested", T0, "cus_ana", sku="MUG-1"),
        event("product_viewed", T0 + timedelta(days=10), "cus_ana", sku="MUG-1"),  # weaker, later
        event("checkout_started", T0, "cus_bo", cart_id="c1", items=cart),
        event("product_viewed", T0 + timedelta(days=1), "cus_cy", sku="MUG-1"),
        event("order_placed", T0, "cus_cy", order_id="o1"),  # shows no interest
    ])
    recorder.record([event("product_viewed", T0 - timedelta(days=5), "cus_bo", sku="MUG-1")])  # older, weaker

    page = interested_customers(engine, "MUG-1", now=T0 + timedelta(days=2))
    found = {c.customer_id: (c.reason, c.expires_at) for c in page.customers}
    assert found == {
        "cus_ana": ("requested", T0 + timedelta(days=100)),
        "cus_bo": ("carted", T0 + timedelta(days=90)),
        "cus_cy": ("viewed", T0 + timedelta(days=91)),
    }
    assert page.next_cursor is None
    assert [c.customer_id for c in interested_customers(engine, "CAP-1", now=T0).customers] == ["cus_bo"]
    # Expiry: 90 days after the last event that showed it.
    assert {c.customer_id for c in interested_customers(engine, "MUG-1", now=T0 + timedelta(days=90, hours=1))
            .customers} == {"cus_ana", "cus_cy"}
    assert count_interested(engine, "MUG-1", now=T0 + timedelta(days=95)) == 1


def test_paging_2500_interested_customers_by_1000_gives_each_once_and_skips_expired(database: str) -> None:
    engine = get_engine(database)
    recorder = InterestRecorder(engine, SECRET, timedelta(days=90))
    recorder.record([event("product_viewed", T0, f"cus_{n:05d}", sku="TV-1") for n in range(2500)])
    recorder.record([event("product_viewed", T0 - timedelta(days=200), f"old_{n}", sku="TV-1") for n in range(300)])
    recorder.record([event("product_viewed", T0, f"cus_{n:05d}", sku="RADIO-1") for n in range(50)])

    seen: list[str] = []
    sizes: list[int] = []
    cursor: str | None = None
    while True:
        page = interested_customers(engine, "TV-1", after=cursor, limit=1000, now=T0 + timedelta(days=1))
        seen += [customer.customer_id for customer in page.customers]
        sizes.append(len(page.customers))
        cursor = page.next_cursor
        if cursor is None:
            break

    assert sizes == [1000, 1000, 500]
    assert len(seen) == len(set(seen)) == 2500
    assert set(seen) == {f"cus_{n:05d}" for n in range(2500)}


def test_retention_deletes_expired_interest_and_interest_last_shown_before_the_cutoff(
    database: str, tmp_path: Path
) -> None:
    now = datetime(2026, 11, 24, tzinfo=UTC)
    settings = Settings(_env_file=None, data_dir=tmp_path, database_url=database, retention_days=60)
    engine = get_engine(database)
    recorder = InterestRecorder(engine, settings.signing_secret, timedelta(days=90))
    recorder.record([
        event("product_viewed", now - timedelta(days=100), "cus_gone", sku="MUG-1"),  # expired
        event("product_viewed", now - timedelta(days=70), "cus_old", sku="MUG-1"),  # past 60-day retention
        event("product_viewed", now - timedelta(days=10), "cus_new", sku="MUG-1"),
    ])

    report = apply_retention(settings, now=now)

    assert report is not None and report.interest_rows_deleted == 2
    assert [c.customer_id for c in interested_customers(engine, "MUG-1", now=now).customers] == ["cus_new"]


def test_catalog_show_prints_stock_prices_and_interest(database: str) -> None:
    engine = get_engine(database)
    apply_catalog_events(engine, [
        event("product_updated", T0, sku="MUG-1", name="Mug", price=12.0, currency="EUR"),
        price_event("MUG-1", 14.0, T0 + timedelta(days=1)),
        stock_event("MUG-1", "online", 4, T0), stock_event("MUG-1", "soho", 0, T0),
    ])
    InterestRecorder(engine, SECRET, timedelta(days=90)).record([event("product_viewed", T0, "cus_1", sku="MUG-1")])
    console = Console(record=True, width=100)

    assert show_sku(engine, "MUG-1", console, now=T0 + timedelta(days=2))
    words = " ".join(console.export_text().replace("│", " ").split())
    assert "name Mug" in words and "price 14.00 EUR" in words and "lowest, 30 days 12.00 EUR" in words
    assert "interested customers 1" in words
    assert "online 4 soho 0 total in stock 4" in words
    assert not show_sku(engine, "NOPE", Console(record=True))
