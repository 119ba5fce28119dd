"""How fast ``omnicart simulate`` previews journeys: customer-journeys per second.

    .venv/bin/python -m benchmarks.simulate_speed --customers 50000
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from omnicart.events import Event
from omnicart.journey.loader import load_journey
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


def bench_simulate(journey_file: Path, customers: int) -> float:
    bundle = load_journey(journey_file)
    start = datetime(2026, 11, 22, 10, tzinfo=UTC)
    events = []
    for i in range(customers):
        for raw in customer_events(f"sim-{i}", start):
            events.append(Event.parse(raw))
        if i % 3 == 0:
            events.append(Event.parse({
                "id": f"sim-{i}-o", "type": "order_placed", "customer_id": f"sim-{i}",
                "timestamp": (start + timedelta(hours=30)).isoformat(), "source": "store",
                "properties": {"order_id": f"o{i}", "total": 79.5}}))
    began = time.perf_counter()
    actions = simulate(bundle, events)
    elapsed = time.perf_counter() - began
    assert sum(1 for a in actions if a.action == "enter") == customers
    return customers / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=20000)
    args = parser.parse_args()
    rate = bench_simulate(ROOT / "journeys" / "abandoned_cart.yaml", args.customers)
    print(f"simulate: {rate:,.0f} customer-journeys/s over {args.customers:,} customers (target >= 10,000)")


if __name__ == "__main__":
    main()
