"""Analytics: rows stored per second, and how long a journey's report takes, on SQLite and PostgreSQL.

    .venv/bin/python -m benchmarks.analytics --runs 20000

Each run is what the customer workflow records for an abandoned cart: enter, three steps, two
sends with a delivery and an open each, a third of them a conversion, an exit. Rows are stored in
batches of one run (as the send activity stores what a send carries); the report is
``omnicart report``'s work: ``load_rows`` then ``journey_report``, for all runs and for one day.
PostgreSQL runs with fsync off (a test server), so its numbers are an upper bound.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from omnicart.analytics.report import journey_report, load_rows
from omnicart.analytics.rows import JourneyActionRow, MessageOutcomeRow, action_id, outcome_id
from omnicart.analytics.store import record_actions, record_outcomes
from omnicart.storage import get_engine, upgrade
from tests.support.postgres import PostgresServer

START = datetime(2026, 11, 1, tzinfo=UTC)


def run_rows(n: int) -> tuple[list[JourneyActionRow], list[MessageOutcomeRow]]:
    customer, run = f"cus{n:07d}", f"run{n:07d}"
    at = START + timedelta(minutes=(n * 37) % (60 * 24 * 30))  # spread over 30 days
    actions: list[JourneyActionRow] = []
    outcomes: list[MessageOutcomeRow] = []

    def act(action: str, **fields: object) -> None:
        actions.append(JourneyActionRow.model_validate({
            "action_id": action_id(customer, run, len(actions)), "at": at + timedelta(hours=len(actions)),
            "customer_id": customer, "journey": "abandoned_cart", "version": "v1", "run_id": run,
            "action": action, **fields,
        }))

    act("enter")
    for step, channel in (("first_reminder", "email"), ("second_reminder", "sms")):
        message_id = f"msg_{customer}_{step}"
        act("step", step=step)
        act("send", step=step, channel=channel, message_id=message_id)
        for kind in ("delivered", "opened"):
            outcomes.append(MessageOutcomeRow(outcome_id=outcome_id(message_id, kind), message_id=message_id,
                                              outcome=kind, at=at, channel=channel))
    act("step", step="last_chance")
    if n % 3 == 0:
        act("convert", value=40.0, currency="EUR", message_id=f"msg_{customer}_second_reminder")
    act("exit", reason="order_placed" if n % 3 == 0 else "completed")
    return actions, outcomes


def bench(url: str, runs: int) -> None:
    upgrade(url)
    engine = get_engine(url)
    made = [run_rows(n) for n in range(runs)]
    rows = sum(len(actions) + len(outcomes) for actions, outcomes in made)
    began = time.perf_counter()
    for actions, outcomes in made:
        record_actions(engine, actions)
        record_outcomes(engine, outcomes)
    store_seconds = time.perf_counter() - began
    timings = []
    for since, until in ((None, None), (START + timedelta(days=3), START + timedelta(days=4))):
        began = time.perf_counter()
        actions, outcomes = load_rows(engine, "abandoned_cart", since, until)
        report = journey_report("abandoned_cart", actions, outcomes, since=since, until=until)
        timings.append((report.entered_runs, time.perf_counter() - began))
    print(f"{engine.dialect.name:>10}: {rows / store_seconds:8.0f} rows/s stored ({runs} runs, {rows} rows)")
    for entered, seconds in timings:
        print(f"{'':>10}  report over {entered:6d} runs: {seconds * 1000:8.0f} ms")
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        bench(f"sqlite:///{Path(scratch) / 'bench.db'}", args.runs)
    server = PostgresServer()
    server.start()
    try:
        bench(server.create_database(), args.runs)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
