"""The load run: 10,000 customers through the API, as production runs it, and what each journey costs.

    .venv/bin/python -m benchmarks.load                     # 10,000 flagship journeys
    .venv/bin/python -m benchmarks.load --customers 1000 --workers 2

Everything as OS processes, as deployed: PostgreSQL (durable: fsync on), a Temporal dev server on a
file database, the API under uvicorn and ``python worker.py`` (one by default: on a 2-core machine a
second worker measures contention, not scale-out). Each customer's profile and checkout are posted
in batches by a few concurrent producers; the flagship runs with hours played as seconds (a journey
lasts about 72 s) and sends to the outbox. It prints:

- ingest: events per second the API took while posting;
- latency from event to send for the first reminder: from the request carrying the checkout to the
  outbox line, minus the step's 1 s wait (p50, p99);
- CPU seconds per journey of each process (API, worker, Temporal server, PostgreSQL): what a cluster
  multiplies, read from ``/proc`` over the whole run;
- history events, bytes and Temporal actions per journey (a sample of customers), against the
  minimal hand-written workflow (``benchmarks/minimal_workflow.py``) run on the same server and codec.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr

from benchmarks.deployment import deployed, post_until_taken
from benchmarks.run import History, bench_minimal, bench_worker, mean_history
from benchmarks.simulate_speed import customer_events
from omnicart.channels.outbox import read_outbox
from omnicart.dev import TemporalDevServer
from omnicart.routing import customer_workflow_id
from omnicart.settings import Settings
from omnicart.storage import upgrade
from tests.support.bundles import publish_folder
from tests.support.postgres import PostgresServer
from tests.support.processes import CLOCK_TICKS, Processes

FIRST_WAIT = timedelta(seconds=1)  # the flagship's "wait: 1h", played as a second
SENDS = 3
BATCH = 50  # customers per request (two events each)
PRODUCERS = 4  # requests in flight at once
SAMPLE = 100  # customers whose histories are measured


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of a process, its finished children (reaped: ``cutime``, ``cstime``) and its live
    children, recursively: PostgreSQL's work is done by the postmaster's backends."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = sum(int(fields[index]) for index in (11, 12, 13, 14))  # utime, stime, cutime, cstime
    total = ticks / CLOCK_TICKS
    for child in Path(f"/proc/{pid}/task").glob("*/children"):
        for child_pid in child.read_text().split():
            total += tree_cpu_seconds(int(child_pid))
    return total


def postmaster_pid(postgres: PostgresServer) -> int:
    return int((postgres.data / "postmaster.pid").read_text().split()[0])


class Meters:
    """CPU seconds of each part of the product, read at two moments."""

    def __init__(self, processes: Processes, temporal: TemporalDevServer, postgres: PostgresServer) -> None:
        self.processes, self.temporal, self.postgres = processes, temporal, postgres

    def read(self) -> dict[str, float]:
        assert self.temporal.process is not None
        parts = {name: tree_cpu_seconds(process.pid) for name, process in self.processes.running.items()}
        parts["temporal"] = tree_cpu_seconds(self.temporal.process.pid)
        parts["postgresql"] = tree_cpu_seconds(postmaster_pid(self.postgres))
        return parts


async def produce(url: str, customers: list[str], posted_at: dict[str, datetime]) -> float:
    """Post every customer's events with a few concurrent producers; seconds it took."""
    queue: asyncio.Queue[list[str]] = asyncio.Queue()
    for start in range(0, len(customers), BATCH):
        queue.put_nowait(customers[start:start + BATCH])

    async def producer(http: httpx.AsyncClient) -> None:
        while not queue.empty():
            batch = queue.get_nowait()
            now = datetime.now(UTC)
            events: list[dict[str, Any]] = [e for c in batch for e in customer_events(c, now)]
            await post_until_taken(http, url, events)
            for customer in batch:
                posted_at[customer] = now

    started = time.monotonic()
    async with httpx.AsyncClient(timeout=60) as http:
        await asyncio.gather(*(producer(http) for _ in range(PRODUCERS)))
    return time.monotonic() - started


async def wait_for(outbox: Path, lines: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while sum(1 for _ in outbox.open()) < lines if outbox.exists() else True:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the outbox did not reach {lines} lines in {timeout:.0f}s")
        await asyncio.sleep(1)


def percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


async def run(customers_wanted: int, workers: int, timeout: float) -> None:
    async with deployed("load", workers) as product:
        meters = Meters(product.processes, product.temporal, product.postgres)
        before = meters.read()
        customers = [f"load-{n:06d}" for n in range(customers_wanted)]
        posted_at: dict[str, datetime] = {}
        posting = await produce(product.url, customers, posted_at)
        await wait_for(product.outbox, customers_wanted * SENDS, timeout)
        after = meters.read()

        first = {line["customer_id"]: datetime.fromisoformat(line["sent_at"])
                 for line in read_outbox(product.outbox) if line["template"] == "cart_reminder_1"}
        latency = sorted((first[c] - posted_at[c] - FIRST_WAIT).total_seconds() for c in customers)
        sample = [customer_workflow_id(c) for c in customers[:: max(1, customers_wanted // SAMPLE)][:SAMPLE]]
        omnicart: History = await mean_history(product.client, sample)

        minimal_settings = Settings(data_dir=product.tmp / "minimal", journeys_dir=product.journeys,
                                    task_queue="load-minimal", encryption_keys=SecretStr(product.keys))
        upgrade(minimal_settings.database())
        publish_folder(minimal_settings.database(), product.journeys)
        async with bench_worker(product.client, minimal_settings):
            _, minimal = await bench_minimal(product.client, minimal_settings, minimal_settings.task_queue,
                                             min(SAMPLE, customers_wanted))

    n = customers_wanted
    print(f"{n:,} flagship journeys through the API ({workers} worker process{'es' if workers > 1 else ''}, "
          "PostgreSQL, Temporal dev server)")
    print(f"  ingest: {2 * n / posting:,.0f} events/s ({2 * n:,} events in {posting:.1f}s, {PRODUCERS} producers, "
          f"{BATCH} customers per request)")
    print(f"  event to send, first reminder (less its 1 s wait): p50 {percentile(latency, 50) * 1000:,.0f} ms, "
          f"p99 {percentile(latency, 99) * 1000:,.0f} ms, max {latency[-1] * 1000:,.0f} ms")
    spent = {name: after[name] - before.get(name, 0.0) for name in after}
    per_journey = ", ".join(f"{name} {seconds / n * 1000:.1f}" for name, seconds in spent.items())
    print(f"  CPU ms per journey: {per_journey}; total {sum(spent.values()) / n * 1000:.1f}")
    (o_events, o_bytes, o_actions), (m_events, m_bytes, m_actions) = omnicart, minimal
    print(f"  per journey, omnicart: {o_events:.1f} history events, {o_bytes:,.0f} bytes, {o_actions:.2f} actions")
    print(f"  per journey, minimal:  {m_events:.1f} history events, {m_bytes:,.0f} bytes, {m_actions:.2f} actions")
    print(f"  history bytes omnicart/minimal: {o_bytes / m_bytes:.2f} (target <= 2)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait for every message")
    args = parser.parse_args()
    asyncio.run(run(args.customers, args.workers, args.timeout))


if __name__ == "__main__":
    main()
