"""The restock fan-out: customers notified per second, peak memory, and the fan-out's history size.

    .venv/bin/python -m benchmarks.fanout                       # 100,000 interested customers
    .venv/bin/python -m benchmarks.fanout --customers 10000
    .venv/bin/python -m benchmarks.fanout --customers 2000 --run-customers

N customers viewed one sku (interest rows written in a child process, so this process's memory is the
fan-out's own). Then one restock with enough units to tell them all in one wave goes through the real
apply step (``apply_catalog_events``: stock, and the fan-out outbox row in the same transaction), and
``CatalogFanoutWorkflow`` runs on a Temporal dev server with its activities in this process: each
page of interest read, every customer's ``back_in_stock`` event recorded in the event log and
delivered by signal-with-start (encrypted, as in production), at most ``fanout_concurrency`` at once.

What runs: every customer's workflow is really created and signalled on the server. By default no
worker runs them (their task queue has none), so the number is the fan-out's own throughput, what
the fan-out worker can hand over; with ``--run-customers`` a customer worker in this process also
runs each customer's workflow task (no journeys are published, so nothing is sent), and both share
the machine's cores. Every customer is new to the codec, so each signal also creates and stores the
customer's data key (as a first event would). Prints customers told per second, the process's peak
RSS (with ``--tracemalloc`` also the peak of Python memory traced while the fan-out ran, which slows
it), and the fan-out's history: events and bytes over all its runs, and how many times it continued
as new.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import multiprocessing
import resource
import shutil
import sys
import tempfile
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pydantic import SecretStr
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.analytics import AnalyticsActivities
from activities.journeys import JourneyActivities
from activities.quarantine import QuarantineActivities
from activities.restock import FanoutActivities
from omnicart.catalog import InterestRecorder, apply_catalog_events
from omnicart.catalog.outbox import FanoutStarter, unstarted_fanouts
from omnicart.events import Event
from omnicart.fanout import FanoutResult, fanout_workflow_id
from omnicart.journey.registry import JourneyRegistry
from omnicart.journey.versions import JourneyVersions
from omnicart.quarantine import QuarantineLog
from omnicart.security.keys import new_key_spec
from omnicart.settings import Settings
from omnicart.storage import get_engine, upgrade
from omnicart.temporal import data_converter
from workflows.customer import CustomerWorkflow
from workflows.restock import CatalogFanoutWorkflow
from workflows.sandbox import workflow_runner

SKU = "BENCH-SKU"
BATCH = 5000


def fill(url: str, customers: int, secret: str, at: datetime) -> None:
    """N customers who viewed the sku (run in a child process)."""
    recorder = InterestRecorder(get_engine(url), SecretStr(secret), timedelta(days=90))
    for start in range(0, customers, BATCH):
        recorder.record([
            Event(id=f"view{n}", type="product_viewed", customer_id=f"cus{n:07d}", source="web", timestamp=at,
                  properties={"sku": SKU})
            for n in range(start, min(start + BATCH, customers))
        ])


def restock(settings: Settings, customers: int, at: datetime) -> None:
    """A product, then enough units to tell everyone in one wave, through the real apply step."""
    units = math.ceil(customers / settings.fanout_customers_per_unit) + 1
    events = [
        Event(id="bench-product", type="product_updated", customer_id="", source="api", timestamp=at,
              properties={"sku": SKU, "name": "Bench runner", "price": 80.0, "currency": "USD"}),
        Event(id="bench-restock", type="inventory_changed", customer_id="", source="api",
              timestamp=at + timedelta(seconds=1), properties={"sku": SKU, "location": "online", "quantity": units}),
    ]
    apply_catalog_events(get_engine(settings.database()), events)


async def history_size(client: Client, workflow_id: str) -> tuple[int, int, int]:
    """Events and bytes over every run of the workflow, and the number of runs."""
    events = size = runs = 0
    async for execution in client.list_workflows(f"WorkflowId = '{workflow_id}'"):
        history = await client.get_workflow_handle(workflow_id, run_id=execution.run_id).fetch_history()
        runs += 1
        events += len(history.events)
        size += sum(event.ByteSize() for event in history.events)
    return events, size, runs


async def bench(customers: int, run_customers: bool, trace: bool) -> None:
    binary = Path(sys.executable).parent / "temporal"
    with tempfile.TemporaryDirectory(prefix="omnicart-fanout-") as tmp:
        keys = SecretStr(new_key_spec("bench"))  # a new data key per customer, as in production
        settings = Settings(data_dir=Path(tmp), encryption_keys=keys, task_queue="bench-customers")
        url = settings.database()
        upgrade(url)
        at = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
        began = time.perf_counter()
        child = multiprocessing.get_context("spawn").Process(
            target=fill, args=(url, customers, settings.signing_secret.get_secret_value(), at))
        child.start()
        child.join()
        if child.exitcode != 0:
            raise SystemExit("filling the interest table failed")
        print(f"{customers:,} interested customers written in {time.perf_counter() - began:.1f} s")
        restock(settings, customers, at)
        [change] = unstarted_fanouts(get_engine(url))

        env = await WorkflowEnvironment.start_local(
            dev_server_existing_path=str(binary if binary.exists() else shutil.which("temporal")),
            data_converter=data_converter(settings),
            dev_server_log_level="error",
        )
        try:
            client = env.client
            engine = get_engine(url)
            fanout = FanoutActivities(engine, client, settings, lambda: {})
            fanout_worker = Worker(client, task_queue="bench-fanout", workflows=[CatalogFanoutWorkflow],
                                   activities=[fanout.fanout_stock_units, fanout.deliver_fanout_page],
                                   workflow_runner=workflow_runner())
            workers = [fanout_worker]
            if run_customers:
                log = QuarantineLog(engine)
                workers.append(Worker(
                    client, task_queue=settings.task_queue, workflows=[CustomerWorkflow],
                    activities=[QuarantineActivities(log).record_quarantine,
                                JourneyActivities(JourneyVersions(JourneyRegistry(engine))).load_journeys,
                                AnalyticsActivities(engine, settings.signing_secret).record_analytics],
                    workflow_runner=workflow_runner(), max_concurrent_workflow_tasks=50))
            if trace:
                tracemalloc.start()
            for worker in workers:
                await worker.__aenter__()
            try:
                started = time.perf_counter()
                result: FanoutResult = await client.execute_workflow(
                    CatalogFanoutWorkflow.run, FanoutStarter(engine, client, settings).input_for(change),
                    id=fanout_workflow_id(change), task_queue="bench-fanout")
                elapsed = time.perf_counter() - started
                peak = tracemalloc.get_traced_memory()[1] if trace else None
            finally:
                tracemalloc.stop()
                for worker in reversed(workers):
                    await worker.__aexit__(None, None, None)
            events, size, runs = await history_size(client, fanout_workflow_id(change))
        finally:
            await env.shutdown()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"customer workflows run by a worker: {'yes' if run_customers else 'no (created and signalled only)'}")
    print(f"told {result.told:,} (delivered {result.delivered:,}) in {result.waves} wave(s), {elapsed:.1f} s: "
          f"{result.told / elapsed:,.0f} customers notified per second")
    traced = f"peak traced Python memory during the fan-out: {peak / 1e6:.1f} MB; " if peak is not None else ""
    print(f"{traced}peak RSS of this process (workers, activities, client; not the server): {rss:.0f} MB")
    print(f"fan-out history: {events:,} events, {size / 1e3:,.0f} kB over {runs} run(s); "
          f"continued as new {result.continued} time(s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--run-customers", action="store_true", help="also run every customer's workflow")
    parser.add_argument("--tracemalloc", action="store_true",
                        help="also trace Python allocations (the peak while fanning out; slows it about twofold)")
    args = parser.parse_args()
    asyncio.run(bench(args.customers, args.run_customers, args.tracemalloc))


if __name__ == "__main__":
    main()
