"""The catalog: applying catalog events, recording interest, and paging one sku's interested
customers as the restock fan-out will, on SQLite and a throwaway PostgreSQL.

    .venv/bin/python -m benchmarks.catalog --customers 100000

Interest goes in as the ingest API records it (batches of 100 product views, one transaction
each); then every interested customer of one sku is paged through by key in pages of 1,000, and
the time of the first and of the last page is printed: keyset paging keeps them alike, where
``OFFSET`` would make the last pages read the whole table. Catalog events go in as a back office
sends them (batches of 100 stock and price changes over 1,000 skus).
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime, timedelta

from pydantic import SecretStr

from benchmarks.databases import on_sqlite_and_postgresql
from omnicart.catalog import InterestRecorder, apply_catalog_events, interested_customers
from omnicart.events import Event
from omnicart.storage import get_engine, upgrade

SECRET = SecretStr("benchmark")
START = datetime(2026, 1, 1, tzinfo=UTC)
BATCH = 100


def view(n: int) -> Event:
    return Event(id=f"v{n}", type="product_viewed", customer_id=f"cus{n:07d}", timestamp=START, source="web",
                 properties={"sku": "TV-55"})


def change(n: int) -> Event:
    sku, at = f"SKU-{n % 1000:04d}", START + timedelta(seconds=n)
    if n % 2:
        return Event(id=f"s{n}", type="inventory_changed", timestamp=at, source="api",
                     properties={"sku": sku, "location": f"store_{n % 7}", "quantity": n % 5})
    return Event(id=f"p{n}", type="price_changed", timestamp=at, source="api",
                 properties={"sku": sku, "price": 10.0 + n % 13, "currency": "EUR"})


def bench(url: str, customers: int, changes: int) -> None:
    upgrade(url)
    engine = get_engine(url)
    name = engine.dialect.name
    recorder = InterestRecorder(engine, SECRET, timedelta(days=90))
    began = time.perf_counter()
    for start in range(0, customers, BATCH):
        recorder.record([view(n) for n in range(start, min(start + BATCH, customers))])
    recorded = time.perf_counter() - began
    print(f"{name:>10}: {customers / recorded:8.0f} interest rows/s recorded (batches of {BATCH})")

    page_times: list[float] = []
    seen, cursor = 0, None
    began = time.perf_counter()
    while True:
        page_began = time.perf_counter()
        page = interested_customers(engine, "TV-55", after=cursor, limit=1000, now=START + timedelta(days=1))
        page_times.append(time.perf_counter() - page_began)
        seen += len(page.customers)
        cursor = page.next_cursor
        if cursor is None:
            break
    paged = time.perf_counter() - began
    print(f"{'':>10}  paged {seen} customers in {len(page_times)} pages of 1,000: {seen / paged:8.0f} customers/s; "
          f"first page {page_times[0] * 1000:.1f} ms, last page {page_times[-1] * 1000:.1f} ms")

    events = [change(n) for n in range(changes)]
    restocks = drops = 0
    began = time.perf_counter()
    for start in range(0, changes, BATCH):
        applied = apply_catalog_events(engine, events[start : start + BATCH])
        restocks, drops = restocks + len(applied.restocks), drops + len(applied.price_drops)
    seconds = time.perf_counter() - began
    print(f"{'':>10}  {changes / seconds:8.0f} catalog events/s applied (batches of {BATCH}, 1,000 skus); "
          f"{restocks} restocks, {drops} price drops seen")
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--changes", type=int, default=20_000)
    args = parser.parse_args()
    on_sqlite_and_postgresql(lambda url: bench(url, args.customers, args.changes))


if __name__ == "__main__":
    main()
