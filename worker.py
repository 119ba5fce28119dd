"""Run an omnicart worker against whatever Temporal the environment names.

    TEMPORAL_ADDRESS=my-ns.a1b2c.tmprl.cloud:7233 TEMPORAL_NAMESPACE=my-ns.a1b2c \\
    TEMPORAL_API_KEY=... python worker.py

Workers are stateless: run as many as the load needs, on as many machines as you like; Temporal
spreads customers' workflows and sends across them.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from temporalio.client import Client
from temporalio.worker import Worker

from activities.send import SendActivities
from omnicart.channels.registry import build_senders
from omnicart.db import create_tables, get_engine
from omnicart.ledger import MessageLedger
from omnicart.privacy.retention import keep_applying_retention
from omnicart.settings import Settings, get_settings
from omnicart.temporal import connect
from workflows.customer import CustomerWorkflow
from workflows.sandbox import workflow_runner


def build_worker(client: Client, settings: Settings) -> Worker:
    """A worker for the customer workflow and the send activity, wired to the configured channels."""
    engine = get_engine(settings.database())
    create_tables(engine)
    activities = SendActivities(
        MessageLedger(engine),
        build_senders(settings),
        settings,
        attempt_timeout=timedelta(seconds=settings.send_timeout_seconds),
    )
    return Worker(
        client,
        task_queue=settings.task_queue,
        workflows=[CustomerWorkflow],
        activities=[activities.send_message],
        workflow_runner=workflow_runner(),
    )


async def run_worker(client: Client, settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Run until ``stop`` is set (or forever), then finish in-flight tasks and return."""
    worker = build_worker(client, settings)
    retention = (
        asyncio.create_task(keep_applying_retention(settings, stop), name="retention")
        if settings.retention_days is not None
        else None
    )
    try:
        if stop is None:
            await worker.run()
            return
        async with worker:
            await stop.wait()
    finally:
        if retention is not None:
            retention.cancel()
            await asyncio.gather(retention, return_exceptions=True)


async def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = get_settings()
    client = await connect(settings)
    logging.getLogger("omnicart.worker").info("worker polling task queue %r", settings.task_queue)
    await run_worker(client, settings)


if __name__ == "__main__":
    asyncio.run(main())
