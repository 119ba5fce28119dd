"""Benchmark: omnicart against a minimal hand-written workflow, and the simulator's speed.

    .venv/bin/python -m benchmarks.run                  # 200 journeys, hours played as seconds
    .venv/bin/python -m benchmarks.run --journeys 500 --simulate 50000

(a) N flagship journeys (a copy of journeys/abandoned_cart.yaml with seconds in place of hours, so
    one journey lasts 72 s) go through the real ingest API, worker, send activity and outbox on one
    Temporal dev server; then N runs of MinimalCartWorkflow do the same sleeps and sends through the
    same activity. Prints both throughputs (journeys completed per second, first request to last
    outbox line), their ratio, and the history events per journey of each. omnicart runs twice:
    with analytics (every journey action stored for reports) and without, and a third of its
    customers order after the last reminder (a conversion, the one analytics row no send carries).
    Prints the Temporal actions per journey of each (as Temporal Cloud bills them: the start,
    signals, activities and local-activity batches, timers, continue-as-new), so what analytics
    costs is a number: target at most +1 per journey.
(b) ``simulate`` over a generated timeline: customer-journeys per second.

Targets (issue 2): ratio >= 0.9, history events <= minimal + 2, simulate >= 10,000 per second.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import re
import shutil
import socket
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from pydantic import SecretStr
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.analytics import AnalyticsActivities
from activities.catalog import CatalogActivities
from activities.journeys import JourneyActivities
from activities.send import SendActivities
from benchmarks.minimal_workflow import MinimalCartInput, MinimalCartWorkflow
from benchmarks.simulate_speed import bench_simulate, customer_events
from omnicart.api.app import create_app
from omnicart.channels.outbox import OutboxSender
from omnicart.events import Event
from omnicart.journey.registry import JourneyRegistry
from omnicart.journey.versions import JourneyVersions
from omnicart.ledger import MessageLedger
from omnicart.routing import customer_workflow_id
from omnicart.security.keys import new_key_spec
from omnicart.settings import Settings
from omnicart.signals import EVENT_SIGNAL, IncomingEvent
from omnicart.storage import get_engine, upgrade
from omnicart.temporal import data_converter
from tests.support.bundles import publish_folder
from workflows.customer import CustomerWorkflow
from workflows.sandbox import workflow_runner

ROOT = Path(__file__).resolve().parent.parent
SENDS_PER_JOURNEY = 3


def seconds_for_hours(source: Path, target_dir: Path) -> Path:
    """Copy the flagship with every hour as a second, no quiet hours (the clock would decide) and no
    late_after (a loaded machine would skip messages)."""
    shutil.copytree(source.parent / "templates", target_dir / "templates")
    text = source.read_text()
    text = re.sub(r"\b(\d+)h\b", r"\1s", text)
    text = re.sub(r"\b7d\b", "1h", text)
    text = re.sub(r"\nquiet_hours:\n(  .*\n)+", "\n", text)
    # late_after guards against outages; on a loaded machine a second's lag would skip messages.
    text = re.sub(r"\n\s+late_after: .*", "", text)
    target = target_dir / source.name
    target.write_text(text)
    return target


async def wait_for_outbox(path: Path, lines: int, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and sum(1 for _ in path.open()) >= lines:
            return time.monotonic()
        await asyncio.sleep(0.2)
    raise TimeoutError(f"the outbox {path} did not reach {lines} lines in {timeout:.0f}s")


BILLED = {
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED,
    EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED,
    EventType.EVENT_TYPE_TIMER_STARTED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED,
}


def actions_in(events: Any) -> int:
    """Temporal actions as billed: billed event types, plus one per workflow task that ran local
    activities (patch markers are free)."""
    actions = 0
    local_batches: set[int] = set()
    for event in events:
        if event.event_type in BILLED:
            actions += 1
        elif (event.event_type == EventType.EVENT_TYPE_MARKER_RECORDED
              and event.marker_recorded_event_attributes.marker_name == "core_local_activity"):
            local_batches.add(event.marker_recorded_event_attributes.workflow_task_completed_event_id)
    return actions + len(local_batches)


async def history_size(client: Client, workflow_id: str) -> tuple[int, int, int]:
    """Events, bytes (as the server stores them: encoded, compressed, encrypted) and actions of every run."""
    events = size = actions = 0
    run_id: str | None = None
    while True:
        history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        events += len(history.events)
        size += sum(event.ByteSize() for event in history.events)
        actions += actions_in(history.events)
        run_id = history.events[0].workflow_execution_started_event_attributes.continued_execution_run_id or None
        if run_id is None:
            return events, size, actions


async def mean_history(client: Client, workflow_ids: list[str]) -> tuple[float, float, float]:
    sizes = [await history_size(client, workflow_id) for workflow_id in workflow_ids]
    return (sum(e for e, _, _ in sizes) / len(sizes), sum(b for _, b, _ in sizes) / len(sizes),
            sum(a for _, _, a in sizes) / len(sizes))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


History = tuple[float, float, float]


async def bench_omnicart(
    client: Client, settings: Settings, journey_dir: Path, n: int
) -> tuple[float, History, History]:
    """Throughput; the mean history of every customer (a third ordered); of those who did not order."""
    port = free_port()
    publish_folder(settings.database(), journey_dir)  # as a deploy does: journeys travel by version
    app = create_app(settings, client=client)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.05)
    run = uuid.uuid4().hex[:6]
    customers = [f"omni-{run}-{i}" for i in range(n)]
    started = time.monotonic()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
        now = datetime.now(UTC)
        for chunk in range(0, n, 50):
            batch = [e for c in customers[chunk:chunk + 50] for e in customer_events(c, now)]
            response = await http.post("/v1/events", json={"events": batch})
            response.raise_for_status()
        finished = await wait_for_outbox(settings.outbox(), n * SENDS_PER_JOURNEY, timeout=600)
        # A third of the customers order after the last reminder: a conversion within the goal window.
        orders = [{"id": f"{c}-o", "type": "order_placed", "customer_id": c, "timestamp": datetime.now(UTC).isoformat(),
                   "source": "web", "properties": {"order_id": f"o-{c}", "total": 79.5, "currency": "USD"}}
                  for c in customers[::3]]
        for chunk in range(0, len(orders), 50):
            (await http.post("/v1/events", json={"events": orders[chunk:chunk + 50]})).raise_for_status()
    await asyncio.sleep(5)  # the conversions' rows are stored
    sample = customers[:60]
    everyone = await mean_history(client, [customer_workflow_id(c) for c in sample])
    no_order = await mean_history(client, [customer_workflow_id(c) for i, c in enumerate(sample) if i % 3])
    server.should_exit = True
    await serving
    return n / (finished - started), everyone, no_order


async def bench_minimal(
    client: Client, settings: Settings, task_queue: str, n: int
) -> tuple[float, tuple[float, float, float]]:
    """The minimal workflow, started by the same signals omnicart's ingest sends (journeys by version)."""
    version = JourneyRegistry(get_engine(settings.database())).published()["abandoned_cart"].version
    run = uuid.uuid4().hex[:6]
    ids = [f"minimal-{run}-{i}" for i in range(n)]
    started = time.monotonic()
    now = datetime.now(UTC)
    for index, workflow_id in enumerate(ids):
        events = [Event.parse(e) for e in customer_events(workflow_id, now)]
        signal = [IncomingEvent(event=event, journeys=[version] if event.type == "checkout_started" else [])
                  for event in events]
        await client.start_workflow(
            MinimalCartWorkflow.run,
            MinimalCartInput(customer_id=workflow_id, journey_version=version, email=f"m{index}@example.com"),
            id=workflow_id, task_queue=task_queue, start_signal=EVENT_SIGNAL, start_signal_args=[signal],
        )
    finished = await wait_for_outbox(settings.outbox(), n * SENDS_PER_JOURNEY, timeout=600)
    return n / (finished - started), await mean_history(client, ids[:20])


def bench_worker(client: Client, settings: Settings) -> Worker:
    """An in-process worker for omnicart's customer workflow and the minimal one, sending to the outbox."""
    engine = get_engine(settings.database())
    quiet = io.StringIO()  # the outbox's console lines would drown the results
    activities = SendActivities(MessageLedger(engine),
                                {c: OutboxSender(settings.outbox(), console=quiet) for c in ("email", "sms", "push")},
                                settings)
    return Worker(client, task_queue=settings.task_queue, workflows=[CustomerWorkflow, MinimalCartWorkflow],
                  activities=[activities.send_message,
                              JourneyActivities(JourneyVersions(JourneyRegistry(engine))).load_journeys,
                              AnalyticsActivities(engine, settings.signing_secret).record_analytics,
                              CatalogActivities(engine).catalog_for_conditions],
                  workflow_runner=workflow_runner(), max_concurrent_activities=200)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--journeys", type=int, default=200)
    parser.add_argument("--simulate", type=int, default=20000)
    args = parser.parse_args()

    rate = bench_simulate(ROOT / "journeys" / "abandoned_cart.yaml", args.simulate)
    print(f"simulate: {rate:,.0f} customer-journeys/s over {args.simulate:,} customers (target >= 10,000)")

    binary = Path(sys.executable).parent / "temporal"
    with tempfile.TemporaryDirectory(prefix="omnicart-bench-") as tmp:
        journey_dir = Path(tmp) / "journeys"
        journey_dir.mkdir()
        seconds_for_hours(ROOT / "journeys" / "abandoned_cart.yaml", journey_dir)
        keys = SecretStr(new_key_spec("bench"))  # both workflows pay for encryption, as in production
        shared = Settings(data_dir=Path(tmp), encryption_keys=keys)  # customers' data keys live here
        upgrade(shared.database())
        env = await WorkflowEnvironment.start_local(
            dev_server_existing_path=str(binary if binary.exists() else shutil.which("temporal")),
            data_converter=data_converter(shared),
            dev_server_log_level="error",
        )
        try:
            results: dict[str, tuple[float, History, History]] = {}
            minimal: tuple[float, History] | None = None
            for name in ("omnicart", "omnicart-no-analytics", "minimal"):
                data = Path(tmp) / name
                settings = Settings(data_dir=data, journeys_dir=journey_dir, task_queue=f"bench-{name}",
                                    encryption_keys=keys, record_analytics=name != "omnicart-no-analytics")
                upgrade(settings.database())
                async with bench_worker(env.client, settings):
                    if name.startswith("omnicart"):
                        results[name] = await bench_omnicart(env.client, settings, journey_dir, args.journeys)
                    else:
                        publish_folder(settings.database(), journey_dir)
                        minimal = await bench_minimal(env.client, settings, settings.task_queue, args.journeys)
        finally:
            await env.shutdown()
    omni_rate, omni_all, (omni_hist, omni_bytes, omni_actions) = results["omnicart"]
    _, bare_all, _ = results["omnicart-no-analytics"]
    assert minimal is not None
    min_rate, (min_hist, min_bytes, min_actions) = minimal
    print("customers who did not order (the same journey as the minimal workflow):")
    print(f"  omnicart: {omni_rate:.2f} journeys/s, {omni_hist:.1f} history events, {omni_bytes:,.0f} history "
          f"bytes, {omni_actions:.2f} Temporal actions per journey")
    print(f"  minimal:  {min_rate:.2f} journeys/s, {min_hist:.1f} history events, {min_bytes:,.0f} history "
          f"bytes, {min_actions:.2f} Temporal actions per journey")
    print(f"  history bytes omnicart/minimal: {omni_bytes / min_bytes:.2f}")
    print(f"  throughput ratio omnicart/minimal: {omni_rate / min_rate:.3f} (target >= 0.9)")
    print(f"  history events over minimal: {omni_hist - min_hist:+.1f} (target <= +2)")
    print("every customer (a third ordered after the last reminder), with and without analytics:")
    for label, (events, size, actions) in (("with analytics", omni_all), ("without", bare_all)):
        print(f"  {label:>14}: {actions:.2f} Temporal actions, {events:.1f} history events, {size:,.0f} bytes "
              "per journey")
    print(f"  analytics adds {omni_all[2] - bare_all[2]:+.2f} Temporal actions per journey (target <= +1) and "
          f"{omni_all[1] - bare_all[1]:+,.0f} history bytes")


if __name__ == "__main__":
    asyncio.run(main())
