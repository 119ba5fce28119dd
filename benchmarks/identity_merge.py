"""What identity costs ``omnicart simulate``: customers per second when every cart begins anonymous
(views and a checkout under an anonymous id, then a login that links it) against the same events
sent with the customer id from the start; and the pure merge on its own, merges per second.

    .venv/bin/python -m benchmarks.identity_merge --customers 20000
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime, timedelta

from benchmarks.simulate_speed import ROOT
from omnicart.engine import interpreter, merge
from omnicart.events import Event
from omnicart.journey.loader import load_journey
from omnicart.journey.model import JourneyBundle
from omnicart.simulate import simulate

CART = {"cart_id": "c1", "total": 79.5, "currency": "USD", "restore_url": "https://shop.example/r",
        "items": [{"sku": "A", "name": "Shirt", "quantity": 1, "price": 79.5}]}
PROFILE = {"email": "bench@example.com", "consent": {"email": True}}


def timeline(number: int, now: datetime, *, anonymous: bool) -> list[Event]:
    """Three views and a checkout, then a login; anonymous: the first four carry only a cookie."""
    who = {"anonymous_id": f"ck{number}"} if anonymous else {"customer_id": f"cus{number}"}
    views = [("product_viewed", {"sku": f"S{view}"}) for view in range(3)]
    raw = [*views, ("checkout_started", CART)]
    events = [Event.model_validate({"id": f"{number}-{index}", "type": kind, **who, "source": "web",
                                    "timestamp": now + timedelta(minutes=index), "properties": props})
              for index, (kind, props) in enumerate(raw)]
    login = {"customer_id": f"cus{number}", **({"anonymous_id": f"ck{number}"} if anonymous else {})}
    events.append(Event.model_validate({"id": f"{number}-login", "type": "customer_updated", **login,
                                        "source": "web", "timestamp": now + timedelta(minutes=10),
                                        "properties": PROFILE}))
    return events


def bench_simulate(flagship: JourneyBundle, customers: int, *, anonymous: bool) -> float:
    now = datetime.now(UTC) - timedelta(days=5)
    events = [event for number in range(customers) for event in timeline(number, now, anonymous=anonymous)]
    started = time.perf_counter()
    actions = simulate(flagship, events, workers=1)
    elapsed = time.perf_counter() - started
    assert sum(action.action == "enter" for action in actions) == customers  # one flagship run each
    return customers / elapsed


def bench_merge(flagship: JourneyBundle, merges: int) -> float:
    now = datetime.now(UTC)
    events = timeline(0, now - timedelta(hours=1), anonymous=True)
    visitor = interpreter.new_state("anon:bench")
    for event in events[:4]:
        interpreter.handle_event(visitor, event, [flagship] if event.type == "checkout_started" else [], now)
    started = time.perf_counter()
    for number in range(merges):
        known = interpreter.new_state(f"cus{number}")
        merge.merge(known, visitor, now)
    return merges / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--customers", type=int, default=20000)
    args = parser.parse_args()
    flagship = load_journey(ROOT / "journeys" / "abandoned_cart.yaml")
    known = bench_simulate(flagship, args.customers, anonymous=False)
    anonymous = bench_simulate(flagship, args.customers, anonymous=True)
    print(f"simulate, known from the start : {known:10,.0f} customers/s (one process)")
    print(f"simulate, anonymous then linked: {anonymous:10,.0f} customers/s (one process)")
    print(f"merge alone                    : {bench_merge(flagship, args.customers):10,.0f} merges/s")


if __name__ == "__main__":
    main()
