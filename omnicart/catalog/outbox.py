"""The fan-out outbox: a restock or price drop is written down where it is found, then started.

A retried ingest request re-applies its catalog events idempotently, but it would not find the
restock again (the stock is already above zero), so a fan-out started only *after* the apply
transaction could be lost to a Temporal outage or a crash in between. Instead the apply step writes
each change as a row of ``catalog_fanouts`` in the same transaction (:func:`record_fanouts`); then
:class:`FanoutStarter` starts a ``CatalogFanoutWorkflow`` for each row not yet started and marks it.
The ingest request that found the change starts it at once; rows it could not start (Temporal down)
are started by the next ingest request that tries, and by the sweep every worker runs
(:func:`keep_starting_fanouts`). Starting twice is harmless: the workflow id is the change's
(``omnicart.fanout.fanout_workflow_id``) and a second start of it is a no-op.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import Connection, Engine, select, tuple_, update
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from omnicart.catalog.changes import CatalogChanges
from omnicart.catalog.tables import catalog_fanouts
from omnicart.fanout import FANOUT_WORKFLOW, FanoutChange, FanoutInput, fanout_workflow_id
from omnicart.settings import Settings
from omnicart.storage import insert_ignoring_existing

logger = logging.getLogger(__name__)

START_BATCH = 100


def fanout_changes(changes: CatalogChanges) -> list[FanoutChange]:
    """The changes that start a fan-out: a sku back in stock from none anywhere (a store getting
    stock while the web shop has it is not "back in stock" to anyone), and every honest price drop."""
    found = [
        FanoutChange(kind="restock", change_id=restock.event_id, sku=restock.sku, at=restock.at,
                     location=restock.location)
        for restock in changes.restocks
        if restock.back_everywhere
    ]
    found += [
        FanoutChange(kind="price_drop", change_id=drop.event_id, sku=drop.sku, at=drop.at, price=drop.price,
                     reference_price=drop.reference_price, currency=drop.currency)
        for drop in changes.price_drops
    ]
    return found


def record_fanouts(connection: Connection, changes: CatalogChanges) -> int:
    """Write the fan-outs ``changes`` call for, in the caller's transaction; how many there were."""
    found = fanout_changes(changes)
    if found:
        now = datetime.now(UTC)
        connection.execute(
            insert_ignoring_existing(connection, catalog_fanouts, "kind", "change_id"),
            [{"kind": change.kind, "change_id": change.change_id, "sku": change.sku,
              "payload": change.model_dump(mode="json"), "created_at": now, "started_at": None}
             for change in found],
        )
    return len(found)


def unstarted_fanouts(engine: Engine, limit: int = START_BATCH) -> list[FanoutChange]:
    """The oldest fan-outs whose workflow has not been started yet."""
    table = catalog_fanouts.c
    query = select(table.payload).where(table.started_at.is_(None)).order_by(table.created_at).limit(limit)
    with engine.connect() as connection:
        return [FanoutChange.model_validate(payload) for payload in connection.execute(query).scalars()]


def mark_started(engine: Engine, changes: Sequence[FanoutChange]) -> None:
    if not changes:
        return
    table = catalog_fanouts.c
    keys = [(change.kind, change.change_id) for change in changes]
    with engine.begin() as connection:
        connection.execute(
            update(catalog_fanouts).where(tuple_(table.kind, table.change_id).in_(keys), table.started_at.is_(None))
            .values(started_at=datetime.now(UTC))
        )


class FanoutStarter:
    """Starts the outbox's waiting fan-outs on Temporal; shared by the ingest API and the worker's sweep."""

    def __init__(self, engine: Engine, client: Client, settings: Settings, *, timeout: float = 15.0) -> None:
        self.engine = engine
        self.client = client
        self.settings = settings
        self.timeout = timeout

    def input_for(self, change: FanoutChange) -> FanoutInput:
        settings = self.settings
        return FanoutInput(
            change=change,
            customers_per_unit=settings.fanout_customers_per_unit,
            page_size=settings.fanout_page_size,
            wave_interval_seconds=settings.fanout_wave_interval_minutes * 60,
        )

    async def start_pending(self) -> int:
        """Start every waiting fan-out (oldest first) and mark it; how many were started. Raises
        whatever Temporal or the database raised; the rows not marked stay for the next try."""
        started = 0
        while True:
            waiting = await asyncio.to_thread(unstarted_fanouts, self.engine, START_BATCH)
            for change in waiting:
                async with asyncio.timeout(self.timeout):
                    await self.start(change)
                await asyncio.to_thread(mark_started, self.engine, [change])
                started += 1
            if len(waiting) < START_BATCH:
                return started

    async def start_quietly(self) -> bool:
        """:meth:`start_pending`, where a failure is logged instead of raised: the changes are safe
        in the outbox, and the producer's request has already been applied."""
        try:
            await self.start_pending()
        except Exception as error:
            logger.warning("could not start waiting fan-outs now (%s); the sweep retries", type(error).__name__)
            return False
        return True

    async def start(self, change: FanoutChange) -> None:
        """Start the change's workflow; one already running or finished counts as started."""
        with contextlib.suppress(WorkflowAlreadyStartedError):
            await self.client.start_workflow(
                FANOUT_WORKFLOW,
                self.input_for(change),
                id=fanout_workflow_id(change),
                task_queue=self.settings.task_queue,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            )
        logger.info("fan-out %s started for sku %s", fanout_workflow_id(change), change.sku)


async def keep_starting_fanouts(starter: FanoutStarter, interval_seconds: float,
                                stop: asyncio.Event | None = None) -> None:
    """The sweep: start waiting fan-outs now and every interval until ``stop`` is set (the worker runs it)."""
    stop = stop or asyncio.Event()
    while not stop.is_set():
        await starter.start_quietly()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval_seconds)
