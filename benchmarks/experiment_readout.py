"""How long an experiment readout takes: analytics rows to per-customer observations to the verdict.

    .venv/bin/python -m benchmarks.experiment_readout --customers 100000

Builds the rows of a split with a 10 % holdout (ten_off / twenty_off / holdout at 45/45/10), each
customer coming back with one to three carts and converting at 10 % / 13 % / 7.5 %, then times
``customer_observations`` and ``analyze`` (two Newcombe intervals, Holm, SRM, one bootstrap of
2,000 resamples per comparison). A seeded generator makes the rows the same on every run.
"""

from __future__ import annotations

import argparse
import random
import time
from datetime import UTC, datetime, timedelta

from omnicart.analytics.experiments import HOLDOUT_ARM, ExperimentDesign, analyze, customer_observations
from omnicart.analytics.rows import JourneyActionRow

START = datetime(2026, 3, 2, tzinfo=UTC)
ARMS = {"ten_off": (0.45, 0.10), "twenty_off": (0.45, 0.13), HOLDOUT_ARM: (0.10, 0.075)}


def experiment_rows(customers: int, seed: int = 7) -> list[JourneyActionRow]:
    """Each customer's enter, split step and exit per cart, and a conversion for the buyers."""
    rng = random.Random(seed)
    names, weights = list(ARMS), [share for share, _ in ARMS.values()]
    rows: list[JourneyActionRow] = []
    for number in range(customers):
        customer = f"cus_{number}"
        arm = rng.choices(names, weights)[0]
        variant = arm if arm != HOLDOUT_ARM else rng.choice(["ten_off", "twenty_off"])
        holdout = "journey" if arm == HOLDOUT_ARM else None
        for cart in range(rng.randint(1, 3)):
            at = START + timedelta(minutes=number % 10_000, days=cart)
            run = f"{number}/{cart}"
            keys = {"customer_id": customer, "journey": "abandoned_cart", "version": "v1", "run_id": run}
            rows.append(JourneyActionRow(action_id=f"{run}/e", at=at, action="enter", holdout=holdout, **keys))
            rows.append(
                JourneyActionRow(
                    action_id=f"{run}/s", at=at, action="step", step="offer", experiment="cart_offer",
                    variant=variant, holdout=holdout, **keys,
                )
            )
            if rng.random() < ARMS[arm][1] / 2:  # about half the buyers buy twice over their carts
                rows.append(
                    JourneyActionRow(
                        action_id=f"{run}/c", at=at + timedelta(hours=5), action="convert",
                        value=round(rng.uniform(20, 120), 2), currency="EUR", variant=variant, holdout=holdout,
                        **keys,
                    )
                )
    return rows


def main(customers: int) -> None:
    design = ExperimentDesign(
        experiment="cart_offer",
        weights={name: share for name, (share, _) in ARMS.items()},
        minimum_detectable_effect=0.02,
        baseline_conversion=0.10,
    )
    rows = experiment_rows(customers)
    started = time.perf_counter()
    observations = customer_observations(rows, "cart_offer")
    observed = time.perf_counter()
    result = analyze(observations, design)
    analyzed = time.perf_counter()
    print(f"{len(rows):,} rows, {len(observations):,} customers")
    print(f"customer_observations: {observed - started:.2f} s ({len(rows) / (observed - started):,.0f} rows/s)")
    print(f"analyze:               {analyzed - observed:.2f} s")
    print(f"verdict: {result.verdict}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    main(parser.parse_args().customers)
