"""The customer profile projection: update throughput and query latency, on SQLite and a throwaway PostgreSQL.

    .venv/bin/python -m benchmarks.profiles --customers 20000 --threads 4

Updates go as the ingest API sends them: batches of 10 events (customer_updated with an email,
a phone and a birthday; order_placed) from several threads, each batch one transaction. Then each
query a console or a date-based trigger asks is timed (median of 20, first page of 100), and on
PostgreSQL the plan of the birthday query is printed, to show it reads an index, not the table.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from sqlalchemy import text

from omnicart.customers.profiles import CustomerProfiles
from omnicart.customers.projection import ProfileProjection
from omnicart.events import Event
from omnicart.storage import get_engine, upgrade
from tests.support.postgres import PostgresServer

SECRET = SecretStr("benchmark")
START = datetime(2026, 1, 1, tzinfo=UTC)


def events_of(n: int) -> list[Event]:
    customer = f"cus{n:07d}"
    birthday = f"19{70 + n % 30}-{1 + n % 12:02d}-{1 + n % 28:02d}"
    properties = {"email": f"customer{n}@example.com", "phone": f"+4477009{n:05d}", "birthday": birthday}
    return [
        Event(id=f"u{n}", type="customer_updated", customer_id=customer, timestamp=START, source="web",
              properties=properties),
        Event(id=f"o{n}", type="order_placed", customer_id=customer, timestamp=START + timedelta(hours=n % 5000),
              source="web", properties={"order_id": f"o{n}"}),
    ]


def median_ms(call: Callable[[], Any]) -> float:
    times = []
    for _ in range(20):
        began = time.perf_counter()
        call()
        times.append(time.perf_counter() - began)
    return statistics.median(times) * 1000


def bench(url: str, customers: int, threads: int) -> None:
    upgrade(url)
    engine = get_engine(url)
    projection, profiles = ProfileProjection(engine, SECRET), CustomerProfiles(engine, SECRET)

    def apply(start: int) -> None:
        projection.record([event for n in range(start, min(start + 5, customers)) for event in events_of(n)])

    with ThreadPoolExecutor(threads) as pool:
        began = time.perf_counter()
        list(pool.map(apply, range(0, customers, 5)))
        seconds = time.perf_counter() - began
    name = engine.dialect.name
    print(f"{name:>10}: {2 * customers / seconds:8.0f} events/s into the projection ({customers} customers, "
          f"batches of 10, {threads} threads)")
    queries: dict[str, Callable[[], Any]] = {
        "find_by_id": lambda: profiles.find_by_id("cus0001234"),
        "find_by_email": lambda: profiles.find_by_email("customer1234@example.com"),
        "birthdays_on (first 100)": lambda: profiles.birthdays_on("03-04"),
        "last_order_before (first 100)": lambda: profiles.last_order_before(START + timedelta(hours=100)),
        "search, substring (first 100)": lambda: profiles.search("1234"),
    }
    for label, query in queries.items():
        print(f"{'':>10}  {label:<32} {median_ms(query):7.2f} ms")
    if name == "postgresql":
        with engine.connect() as connection:
            connection.execute(text("ANALYZE"))
            size = connection.execute(
                text("SELECT pg_total_relation_size('customer_profiles') + pg_total_relation_size('customer_dates')")
            ).scalar_one()
            plan = connection.execute(
                text("EXPLAIN SELECT customer_ref FROM customer_dates WHERE name = 'birthday' AND month_day = '03-04'")
            ).scalars()
            print(f"{'':>10}  {size / customers:6.0f} bytes per customer (profile + one date, indexes included)")
            print(f"{'':>10}  birthday plan: {' / '.join(line.strip() for line in plan)}")
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        bench(f"sqlite:///{Path(scratch) / 'bench.db'}", args.customers, args.threads)
    server = PostgresServer()
    server.start()
    try:
        bench(server.create_database(), args.customers, args.threads)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
