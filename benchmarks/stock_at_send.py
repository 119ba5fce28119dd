"""What checking stock at send time costs: the catalog read a send makes, and simulate with a catalog.

    .venv/bin/python -m benchmarks.stock_at_send --skus 1000 --stores 50 --customers 5000

(a) The send activity's read (``load_snapshot``: products, stock and stores of a cart's skus, the
    30-day lowest price of each) plus the decision and the ``catalog`` a template reads
    (``at_send``), for carts of 1, 5 and 50 items, on SQLite: milliseconds per send.
(b) ``omnicart simulate`` of the flagship (whose low-stock branch reads the catalog) for N
    customers, without catalog events and with a catalog timeline of every sku's stock: customers
    per second, so what the catalog timeline costs a preview is a number.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from omnicart.catalog import apply_catalog_events
from omnicart.catalog.availability import at_send
from omnicart.catalog.snapshot import load_snapshot
from omnicart.events import Event
from omnicart.simulate import simulate
from omnicart.storage import get_engine, upgrade
from tests.support.bundles import flagship

START = datetime(2026, 1, 1, tzinfo=UTC)


def catalog_events(skus: int, stores: int) -> list[Event]:
    """Every sku with a product, a price history of three prices, stock online and in every third store."""
    raw: list[dict[str, Any]] = []
    for store in range(stores):
        raw.append({"type": "store_updated", "properties": {
            "store_id": f"st{store}", "name": f"Store {store}", "address": f"{store} High St",
            "latitude": 41.0 + store / 100, "longitude": 29.0 + store / 100}})
    for sku in range(skus):
        raw.append({"type": "product_updated", "properties": {
            "sku": f"S{sku}", "name": f"Item {sku}", "url": f"https://shop.example/p/{sku}", "price": 50.0,
            "currency": "EUR"}})
        for days, price in ((20, 45.0), (5, 55.0)):
            raw.append({"type": "price_changed", "at": timedelta(days=days),
                        "properties": {"sku": f"S{sku}", "price": price, "currency": "EUR"}})
        raw.append({"type": "inventory_changed", "properties": {"sku": f"S{sku}", "location": "online",
                                                                "quantity": sku % 7}})
        for store in range(sku % 3, stores, 3):
            raw.append({"type": "inventory_changed", "properties": {"sku": f"S{sku}", "location": f"st{store}",
                                                                    "quantity": 1 + sku % 4}})
    return [Event.parse({"id": f"cat{n}", "type": row["type"], "source": "api",
                         "timestamp": (START + row.get("at", timedelta(0))).isoformat(),
                         "properties": row["properties"]}) for n, row in enumerate(raw)]


def bench_send_reads(skus: int, stores: int, repeats: int = 200) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        url = f"sqlite:///{Path(scratch) / 'catalog.db'}"
        upgrade(url)
        engine = get_engine(url)
        events = catalog_events(skus, stores)
        for start in range(0, len(events), 500):
            apply_catalog_events(engine, events[start:start + 500])
        now = START + timedelta(days=40)
        customer = {"latitude": 41.1, "longitude": 29.1, "preferred_store_id": "st3"}
        for size in (1, 5, 50):
            wanted = [f"S{(n * 37) % skus}" for n in range(size)]
            items = [{"sku": sku, "quantity": 1, "price": 50.0} for sku in wanted]
            context = {"cart": {"items": items, "total": 50.0 * size}, "customer": customer}
            began = time.perf_counter()
            for _ in range(repeats):
                at_send("drop_items", context, load_snapshot(engine, wanted, now),
                        pickup_url="https://shop.example/pickup?sku={sku}&store={store_id}")
            per_send = (time.perf_counter() - began) / repeats * 1000
            print(f"send-time catalog read + decision, cart of {size:>2} items "
                  f"({skus} skus, {stores} stores, SQLite): {per_send:.2f} ms per send")


def customer_timeline(number: int, skus: int) -> list[Event]:
    """A customer with email consent who leaves a one-item cart (a different sku for each customer)."""
    customer_id = f"cus_{number}"
    at = START + timedelta(days=40)
    items = [{"sku": f"S{(number * 37) % skus}", "name": "Item", "quantity": 1, "price": 50.0}]
    return [
        Event.parse({"id": f"{customer_id}-p", "type": "customer_updated", "customer_id": customer_id,
                     "timestamp": at.isoformat(), "source": "api",
                     "properties": {"email": f"{customer_id}@example.com", "consent": {"email": True}}}),
        Event.parse({"id": f"{customer_id}-c", "type": "checkout_started", "customer_id": customer_id,
                     "timestamp": at.isoformat(), "source": "web",
                     "properties": {"cart_id": "k", "items": items, "total": 50.0, "currency": "EUR"}}),
    ]


def bench_simulate(customers: int, skus: int, stores: int) -> None:
    bundle = flagship()
    people = [event for n in range(customers) for event in customer_timeline(n, skus)]
    for label, shop in (("without catalog events", []), ("with a catalog timeline", catalog_events(skus, stores))):
        began = time.perf_counter()
        actions = simulate(bundle, [*shop, *people], workers=1)
        elapsed = time.perf_counter() - began
        skipped = sum(1 for action in actions if action.reason == "out_of_stock")
        low = sum(1 for action in actions if action.step == "first_reminder_low_stock" and action.action == "send")
        print(f"simulate flagship, {customers} customers {label}: {customers / elapsed:,.0f} customers/s "
              f"({skipped} skipped out_of_stock, {low} low-stock reminders)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skus", type=int, default=1000)
    parser.add_argument("--stores", type=int, default=50)
    parser.add_argument("--customers", type=int, default=5000)
    args = parser.parse_args()
    bench_send_reads(args.skus, args.stores)
    bench_simulate(args.customers, args.skus, args.stores)


if __name__ == "__main__":
    main()
