"""The consent history: how fast ingest appends consent changes, and how long one customer's export takes.

    .venv/bin/python -m benchmarks.consent --changes 10000 --customers 1000

Changes are recorded as the ingest API records them after forwarding: batches of 100 events, each
batch one transaction (with the profile projection's addresses looked up), on SQLite in a temporary
folder. Then the export of single customers (what ``GET /v1/customers/{id}/consent`` answers) is
timed, median of 200.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pydantic import SecretStr

from omnicart.consent.history import ConsentHistory
from omnicart.events import Event
from omnicart.storage import get_engine, upgrade

SECRET = SecretStr("benchmark")
BATCH = 100


def consent_events(changes: int, customers: int) -> list[Event]:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    return [
        Event.parse({
            "id": f"evt_{n}", "type": "consent_changed", "customer_id": f"cus{n % customers:07d}", "source": "web",
            "timestamp": (start + timedelta(seconds=n)).isoformat(),
            "properties": {"channel": ("email", "sms", "push")[n % 3], "granted": n % 2 == 0, "source": "form",
                           "evidence": {"url": "https://shop.example/join", "text": "Send me offers",
                                        "ip": "203.0.113.7"}},
        })
        for n in range(changes)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=10_000)
    parser.add_argument("--customers", type=int, default=1_000)
    args = parser.parse_args()
    events = consent_events(args.changes, args.customers)
    with tempfile.TemporaryDirectory() as scratch:
        url = f"sqlite:///{Path(scratch) / 'omnicart.db'}"
        upgrade(url)
        history = ConsentHistory(get_engine(url), SECRET)
        began = time.perf_counter()
        for first in range(0, len(events), BATCH):
            history.record(events[first:first + BATCH])
        spent = time.perf_counter() - began
        print(f"recorded {len(events):,} consent changes in batches of {BATCH}: {len(events) / spent:,.0f} changes/s")
        timings = []
        for n in range(200):
            began = time.perf_counter()
            history.export(f"cus{n % args.customers:07d}")
            timings.append(time.perf_counter() - began)
        per_customer = args.changes // args.customers
        print(f"export of one customer ({per_customer} changes): median {statistics.median(timings) * 1000:.2f} ms")


if __name__ == "__main__":
    main()
