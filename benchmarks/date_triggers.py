"""Date-based triggers: how fast the schedule finds due customers in the projection, and its memory.

    .venv/bin/python -m benchmarks.date_triggers --customers 20000

Fills a SQLite projection with customers whose last orders are spread over one day, 60 days ago,
then works through one schedule window covering that day for the win-back journey exactly as
``deliver_due_dates`` does (indexed query, a page of 500 at a time, the due moment of each), without
signalling Temporal (that cost is one signal-with-start per customer, as for any event). Prints
customers found per second and the peak Python memory while paging (tracemalloc): it should not
grow with the number of customers.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path

from temporalio.client import Client

from activities.date_triggers import DateTriggerActivities
from omnicart.customers.projection import ProfileProjection
from omnicart.date_schedule import DateQuery, DateWindow, DuePage
from omnicart.events import Event
from omnicart.journey.loader import load_journey
from omnicart.settings import Settings
from omnicart.storage import get_engine, upgrade

ORDERED = datetime(2026, 1, 1, tzinfo=UTC)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=20000)
    args = parser.parse_args()
    bundle = load_journey(Path("journeys/win_back.yaml"))
    settings = Settings()
    with tempfile.TemporaryDirectory() as scratch:
        url = f"sqlite:///{Path(scratch) / 'bench.db'}"
        upgrade(url)
        engine = get_engine(url)
        projection = ProfileProjection(engine, settings.signing_secret)
        step = timedelta(days=1) / args.customers
        batch: list[Event] = []
        for n in range(args.customers):
            batch.append(Event(id=f"o{n}", type="order_placed", customer_id=f"cus{n:07d}", source="web",
                               timestamp=ORDERED + n * step, properties={"order_id": f"o{n}"}))
            if len(batch) == 1000:
                projection.record(batch)
                batch = []
        projection.record(batch)

        client: Client = None  # type: ignore[assignment]  # find_due never signals
        activities = DateTriggerActivities(engine, settings.signing_secret, client, settings,
                                           lambda: {"win_back": bundle})
        window = DateWindow(start=ORDERED + timedelta(days=60), end=ORDERED + timedelta(days=61))
        query = DateQuery(journey="win_back", kind="after", event_type="order_placed")
        tracemalloc.start()
        began = time.perf_counter()
        found, pages, cursor = 0, 0, None
        while True:
            due, cursor = activities.find_due(bundle, DuePage(query=query, window=window, cursor=cursor))
            found, pages = found + len(due), pages + 1
            if cursor is None:
                break
        elapsed = time.perf_counter() - began
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    print(f"customers in the projection: {args.customers}; due in the window: {found} ({pages} pages of 500)")
    print(f"found per second: {found / elapsed:,.0f} ({elapsed:.2f} s)")
    print(f"peak memory while paging: {peak / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
