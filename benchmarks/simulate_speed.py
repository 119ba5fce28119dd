"""How fast ``omnicart simulate`` previews journeys: customer-journeys per second.

    .venv/bin/python -m benchmarks.simulate_speed --customers 50000
    .venv/bin/python -m benchmarks.simulate_speed --journeys journeys/   # the whole folder, with views
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from omnicart.events import Event
from omnicart.journey.loader import load_files, named_files
from omnicart.simulate import simulate

ROOT = Path(__file__).resolve().parent.parent


def customer_events(customer_id: str, now: datetime) -> list[dict[str, Any]]:
    """A customer with email consent only (so every touch is an email) who abandons a cart."""
    stamp = now.isoformat()
    return [
        {"id": f"{customer_id}-p", "type": "customer_updated", "customer_id": customer_id, "timestamp": stamp,
         "source": "api", "properties": {"email": f"{customer_id}@example.com", "first_name": "Bench",
                                          "consent": {"email": True}}},
        {"id": f"{customer_id}-c", "type": "checkout_started", "customer_id": customer_id, "timestamp": stamp,
         "source": "web", "properties": {"cart_id": f"cart-{customer_id}", "total": 79.5, "currency": "USD",
                                          "restore_url": "https://shop.example/r",
                                          "items": [{"sku": "A", "name": "Shirt", "quantity": 1, "price": 79.5}]}},
    ]


def bench_simulate(journeys: Path, customers: int) -> float:
    """Customers per second through a journey file, or through every journey of a folder; for a folder
    each customer also viewed a product two days before the checkout (a browse-abandonment run)."""
    loaded = load_files(named_files([journeys]))
    assert not loaded.problems, loaded.problems
    start = datetime(2026, 11, 22, 10, tzinfo=UTC)
    events = []
    for i in range(customers):
        for raw in customer_events(f"sim-{i}", start):
            events.append(Event.parse(raw))
        if journeys.is_dir():
            events.append(Event.parse({
                "id": f"sim-{i}-v", "type": "product_viewed", "customer_id": f"sim-{i}",
                "timestamp": (start - timedelta(days=2)).isoformat(), "source": "web",
                "properties": {"sku": "A", "name": "Shirt", "price": 79.5, "url": "https://shop.example/p/a"}}))
        if i % 3 == 0:
            events.append(Event.parse({
                "id": f"sim-{i}-o", "type": "order_placed", "customer_id": f"sim-{i}",
                "timestamp": (start + timedelta(hours=30)).isoformat(), "source": "store",
                "properties": {"order_id": f"o{i}", "total": 79.5}}))
    began = time.perf_counter()
    actions = simulate(list(loaded.bundles.values()), events)
    elapsed = time.perf_counter() - began
    assert sum(1 for a in actions if a.action == "enter") == customers * len(loaded.bundles)
    return customers / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=20000)
    parser.add_argument("--journeys", type=Path, default=ROOT / "journeys" / "abandoned_cart.yaml",
                        help="A journey file, or a folder (every journey in it)")
    args = parser.parse_args()
    rate = bench_simulate(args.journeys, args.customers)
    print(f"simulate {args.journeys.name}: {rate:,.0f} customers/s over {args.customers:,} customers "
          "(target >= 10,000 customer-journeys/s)")


if __name__ == "__main__":
    main()
