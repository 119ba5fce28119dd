"""What a pause with "runs under way exit" costs on the real Temporal dev server: how fast the
customers' workflows are listed and told (``omnicart.journey_exit``), and how long until every run
has journalled its exit.

    .venv/bin/python -m benchmarks.pause_exit --customers 300 --rate 1000

``--customers`` customers wait in the flagship (first reminder an hour away); the pause tells every
running customer workflow of the task queue at up to ``--rate`` signals a second (the product's
default, ``OMNICART_JOURNEY_EXIT_RATE``, is 50: a pause of 100,000 customers then takes about 33
minutes, on purpose, so the cluster keeps serving events meanwhile).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from omnicart.journey_exit import exit_runs, running_customers
from omnicart.routing import customer_workflow_id
from tests.support.bundles import flagship
from tests.support.runtime import RecordingChannel, customer_worker, journal, send_event
from tests.support.timelines import Timeline, cart, profile


async def run(customers: int, rate: float) -> None:
    binary = Path(sys.executable).parent / "temporal"
    env = await WorkflowEnvironment.start_local(dev_server_existing_path=str(binary),
                                                data_converter=pydantic_data_converter, dev_server_log_level="error")
    try:
        async with customer_worker(env.client, [RecordingChannel().send_message]) as queue:
            timeline = Timeline("bench", [(timedelta(0), "customer_updated", "api", profile()),
                                          (timedelta(minutes=1), "checkout_started", "web", cart())])
            start = datetime.now(UTC) - timedelta(minutes=5)
            ids = [f"cus_bench_{number}" for number in range(customers)]
            began = time.perf_counter()
            async def arrive(customer: str) -> None:
                for event in timeline.events(start, customer):
                    await send_event(env.client, queue, event, [flagship()])

            for first in range(0, customers, 50):
                await asyncio.gather(*(arrive(customer) for customer in ids[first:first + 50]))
            while (await env.client.count_workflows(running_customers(queue))).count < customers:
                await asyncio.sleep(0.2)  # visibility catches up
            print(f"{customers} customers waiting in the flagship after {time.perf_counter() - began:.1f} s")

            began = time.perf_counter()
            told = await exit_runs(env.client, queue, "abandoned_cart", datetime.now(UTC), per_second=rate)
            telling = time.perf_counter() - began
            print(f"told {told} workflows in {telling:.2f} s: {told / telling:,.0f} signals/s (limit {rate:g}/s)")

            async def exited(customer: str) -> bool:
                try:
                    return any(line["action"] == "exit" for line in await journal(env.client, customer))
                except RPCError:  # a workflow task timed out on a loaded machine: Temporal retries it
                    await report_failure(env.client, customer)
                    return False

            waiting = set(ids)
            while waiting:
                answers = await asyncio.gather(*(exited(customer) for customer in sorted(waiting)))
                waiting -= {customer for customer, done in zip(sorted(waiting), answers, strict=True) if done}
            print(f"every run journalled exit journey_paused {time.perf_counter() - began:.2f} s after the pause")
    finally:
        await env.shutdown()


async def report_failure(client: Client, customer: str) -> None:
    """Say why a customer's workflow task failed (a timeout under load, or a bug), once per cause."""
    history = await client.get_workflow_handle(customer_workflow_id(customer)).fetch_history()
    for event in history.events:
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED:
            cause = event.workflow_task_failed_event_attributes.failure.message
            if cause not in SEEN:
                SEEN.add(cause)
                print(f"a workflow task of {customer} failed: {cause}")


SEEN: set[str] = set()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--customers", type=int, default=300)
    parser.add_argument("--rate", type=float, default=1000.0, help="Signals a second (the product's default: 50).")
    args = parser.parse_args()
    asyncio.run(run(args.customers, args.rate))


if __name__ == "__main__":
    main()
