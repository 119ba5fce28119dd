"""The report of a simulated shop: N customers through every shipped journey, with a known truth.

    .venv/bin/python -m benchmarks.report_preview --customers 10000
    .venv/bin/python -m benchmarks.report_preview --customers 10000 --journey abandoned_cart --by variant

Half the customers ordered once on 1 September and lapsed (the win-back journey's offer reaches them
60 days later); the other half ordered in mid-October and abandoned a checkout on 1 November.
Whether they come back is drawn at random (seeded) from rates that depend on what they were sent,
so the readout has something true to find: a lapsed customer orders again after the win-back offer
3 % of the time when held out, 5 % with 10 % off and 7 % with 20 % off; a cart is recovered 12 % of
the time when reminded, 6 % when held out by the global holdout. The timeline is written to a JSON
lines file and run through ``omnicart report JOURNEY --simulate`` exactly as a marketer would, and
the time it took is printed.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from omnicart.engine.interpreter import assign_variant, held_out_by_hash
from omnicart.journey.loader import load_directory
from omnicart.journey.model import percent

ROOT = Path(__file__).resolve().parent.parent
FIRST_ORDER = datetime(2026, 9, 1, 15, tzinfo=UTC)
RECENT_ORDER = datetime(2026, 10, 15, 15, tzinfo=UTC)
CHECKOUT = datetime(2026, 11, 1, 15, tzinfo=UTC)
WIN_BACK_RATE = {"holdout": 0.03, "ten_percent": 0.05, "twenty_percent": 0.07}
CART_RATE = {"reminded": 0.12, "holdout": 0.06}


def event(customer: str, name: str, kind: str, at: datetime, source: str, **properties: Any) -> dict[str, Any]:
    return {"id": f"{customer}-{name}", "type": kind, "customer_id": customer, "timestamp": at.isoformat(),
            "source": source, "properties": properties}


def timeline(customers: int, seed: int) -> list[dict[str, Any]]:
    """Every customer's events; the arms are read with the interpreter's own hashes."""
    journeys = load_directory(ROOT / "journeys").bundles
    win_back = journeys["win_back"].journey
    global_share = journeys["win_back"].policies.global_holdout
    split = next(step.split for step in win_back.steps if step.split is not None)
    weights = {name: variant.weight for name, variant in split.variants.items()}
    rng = random.Random(seed)
    events: list[dict[str, Any]] = []
    for number in range(customers):
        customer = f"cus_{number:05d}"
        globally_held = global_share is not None and held_out_by_hash("global", customer, percent(global_share))
        events.append(event(customer, "profile", "customer_updated", FIRST_ORDER - timedelta(days=1), "api",
                            email=f"{customer}@example.com", first_name="Sam", timezone="America/New_York",
                            consent={"email": True, "sms": number % 3 != 0}, phone="+14155550100"))
        shopper = number % 2 == 0  # half of them shop again and abandon a cart in November
        first = (RECENT_ORDER if shopper else FIRST_ORDER) + timedelta(minutes=number % 600)
        events.append(event(customer, "order1", "order_placed", first, "web", order_id=f"o1-{customer}", total=60.0,
                            currency="USD"))
        if shopper:
            at = CHECKOUT + timedelta(minutes=number % 600)
            cart = {"cart_id": f"cart-{customer}", "total": 79.5, "currency": "USD",
                    "restore_url": "https://shop.example/cart/restore",
                    "items": [{"sku": "SHIRT", "name": "Linen shirt", "quantity": 1, "price": 79.5}]}
            events.append(event(customer, "checkout", "checkout_started", at, "web", **cart))
            if rng.random() < CART_RATE["holdout" if globally_held else "reminded"]:
                events.append(event(customer, "cart-order", "order_placed", at + timedelta(hours=rng.uniform(2, 80)),
                                    "web", order_id=f"o2-{customer}", cart_id=cart["cart_id"], total=79.5,
                                    currency="USD"))
            continue
        # The other half lapse: the win-back offer goes out 60 days after their order.
        held = globally_held or (win_back.holdout is not None
                                 and held_out_by_hash("win_back", customer, percent(win_back.holdout)))
        arm = "holdout" if held else assign_variant(split.experiment or "win_back_offer", customer, weights)
        if rng.random() < WIN_BACK_RATE[arm]:
            offered = FIRST_ORDER + timedelta(days=60, minutes=number % 600)
            events.append(event(customer, "order2", "order_placed", offered + timedelta(days=rng.uniform(1, 12)),
                                "web", order_id=f"o2-{customer}", total=rng.choice([45.0, 60.0, 90.0]),
                                currency="USD"))
    events.sort(key=lambda item: item["timestamp"])
    return events


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=10000)
    parser.add_argument("--journey", default="win_back")
    parser.add_argument("--by", default="step")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "timeline.jsonl"
        events = timeline(args.customers, args.seed)
        path.write_text("".join(json.dumps(item) + "\n" for item in events))
        began = time.perf_counter()
        subprocess.run([sys.executable, "-m", "omnicart.cli", "report", args.journey, "--simulate", str(path),
                        "--journeys", str(ROOT / "journeys"), "--by", args.by], check=True)
        elapsed = time.perf_counter() - began
    print(f"\n{args.customers:,} customers, {len(events):,} events: report previewed in {elapsed:.1f} s")


if __name__ == "__main__":
    main()
