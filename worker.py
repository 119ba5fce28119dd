"""Run an omnicart worker against whatever Temporal the environment names.

    TEMPORAL_ADDRESS=my-ns.a1b2c.tmprl.cloud:7233 TEMPORAL_NAMESPACE=my-ns.a1b2c \\
    TEMPORAL_API_KEY=... python worker.py

Workers are stateless: run as many as the load needs, on as many machines as you like; Temporal
spreads customers' workflows and sends across them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta

from temporalio.client import Client
from temporalio.worker import Worker

from activities.analytics import AnalyticsActivities
from activities.catalog import CatalogActivities
from activities.date_triggers import DateTriggerActivities
from activities.identity import IdentityActivities
from activities.journeys import JourneyActivities
from activities.quarantine import QuarantineActivities
from activities.restock import FanoutActivities
from activities.send import SendActivities
from omnicart.api.unsubscribe import warn_about_public_defaults
from omnicart.catalog.outbox import FanoutStarter, keep_starting_fanouts
from omnicart.channels.registry import build_senders
from omnicart.date_schedule import ensure_schedule
from omnicart.journey.model import JourneyBundle
from omnicart.journey.registry import JourneyRegistry, PublishedJourneys
from omnicart.journey.versions import JourneyVersions
from omnicart.ledger import MessageLedger
from omnicart.observability import MetricsAddressInUse, configure_tracing, keep_counting_failing_customers
from omnicart.pacing import send_queue
from omnicart.privacy.retention import keep_applying_retention
from omnicart.quarantine import QuarantineLog
from omnicart.settings import Settings, get_settings
from omnicart.storage import SchemaNotCurrent, get_engine, require_current
from omnicart.temporal import connect
from workflows.customer import CustomerWorkflow
from workflows.date_triggers import DateTriggersWorkflow
from workflows.restock import CatalogFanoutWorkflow
from workflows.sandbox import workflow_runner

HEARTBEAT_THROTTLE = timedelta(seconds=2)


def build_worker(client: Client, settings: Settings) -> Worker:
    """A worker for the customer workflow and the send activity, wired to the configured channels.

    Raises ``SchemaNotCurrent`` when the database was not migrated (``omnicart db upgrade``): a
    worker on an old schema would fail its first send, long after the deployment looked fine.
    """
    return build_workers(client, settings)[0]


def build_workers(client: Client, settings: Settings) -> list[Worker]:
    """The main worker, then one per paced channel (``OMNICART_SEND_RATES``): the latter poll only
    that channel's send queue, at the configured rate, which the Temporal server enforces across
    every worker polling it (``omnicart/pacing.py`` says why)."""
    engine = get_engine(settings.database())
    require_current(engine)
    versions = JourneyVersions(JourneyRegistry(engine))
    published = PublishedJourneys(JourneyRegistry(engine))

    def active() -> dict[str, JourneyBundle]:
        return {name: item.bundle for name, item in published.all().items() if item.status == "active"}

    dates = DateTriggerActivities(engine, settings.signing_secret, client, settings, active)
    fanout = FanoutActivities(engine, client, settings, active)
    activities = SendActivities(
        MessageLedger(engine),
        build_senders(settings),
        settings,
        attempt_timeout=timedelta(seconds=settings.send_timeout_seconds),
        versions=versions,
    )
    paced = [
        Worker(
            client,
            task_queue=send_queue(settings.task_queue, channel),
            activities=[activities.send_message],
            max_task_queue_activities_per_second=rate,
            max_heartbeat_throttle_interval=HEARTBEAT_THROTTLE,
        )
        for channel, rate in sorted(settings.send_rates.items())
    ]
    main = Worker(
        client,
        task_queue=settings.task_queue,
        workflows=[CustomerWorkflow, DateTriggersWorkflow, CatalogFanoutWorkflow],
        activities=[
            activities.send_message,
            QuarantineActivities(QuarantineLog(engine)).record_quarantine,
            JourneyActivities(versions).load_journeys,
            CatalogActivities(engine).catalog_for_conditions,
            AnalyticsActivities(engine, settings.signing_secret).record_analytics,
            *dates.activities(),
            fanout.fanout_stock_units,
            fanout.deliver_fanout_page,
            IdentityActivities(client).hand_over,
        ],
        workflow_runner=workflow_runner(),
        # Sends heartbeat every second; the SDK passes one on at most this often, which bounds how
        # long a run's exit takes to stop a send that has not reached the provider yet.
        max_heartbeat_throttle_interval=HEARTBEAT_THROTTLE,
    )
    return [main, *paced]


async def run_worker(client: Client, settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Run until ``stop`` is set (or forever), then finish in-flight tasks and return.

    First it creates or updates the date-triggers schedule (idempotent), so wherever workers run
    (``omnicart dev`` included), date-based journeys reach every customer whose day comes. Meanwhile
    it sweeps the fan-out outbox, starting restock and price-drop fan-outs ingest could not start.
    """
    main, *paced = build_workers(client, settings)
    warn_about_public_defaults(settings, "worker")
    await ensure_schedule(client, settings.task_queue, timedelta(minutes=settings.date_trigger_interval_minutes),
                          timedelta(days=settings.date_trigger_max_catch_up_days))
    retention = (
        asyncio.create_task(keep_applying_retention(settings, stop), name="retention")
        if settings.retention_days is not None
        else None
    )
    # Restocks and price drops whose fan-out could not be started at ingest (Temporal was down then).
    starter = FanoutStarter(get_engine(settings.database()), client, settings)
    sweep = asyncio.create_task(
        keep_starting_fanouts(starter, settings.fanout_sweep_interval_seconds, stop), name="fanout-sweep")
    # Only where metrics are served: the gauge goes to this process's Prometheus endpoint.
    failing = (
        asyncio.create_task(
            keep_counting_failing_customers(client, settings.failing_customers_interval_seconds, stop),
            name="failing-customers",
        )
        if settings.metrics_address is not None
        else None
    )
    try:
        async with contextlib.AsyncExitStack() as workers:
            for worker in paced:
                await workers.enter_async_context(worker)
            if stop is None:
                await main.run()
                return
            async with main:
                await stop.wait()
    finally:
        for task in (retention, failing, sweep):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)


async def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = get_settings()
    configure_tracing("omnicart-worker")
    client = await connect(settings, serve_metrics=True)
    log = logging.getLogger("omnicart.worker")
    if settings.metrics_address:
        log.info("metrics at http://%s/metrics", settings.metrics_address)
    log.info("worker polling task queue %r", settings.task_queue)
    await run_worker(client, settings)


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except (SchemaNotCurrent, MetricsAddressInUse) as exc:
        raise SystemExit(f"worker.py: {exc}") from None
