"""Running the real customer workflow on a real Temporal server, for tests."""

from __future__ import annotations

import asyncio
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from temporalio import activity
from temporalio.client import Client
from temporalio.worker import Worker

from activities.analytics import AnalyticsActivities
from activities.catalog import CatalogActivities
from activities.journeys import JourneyActivities
from activities.quarantine import QuarantineActivities
from omnicart.analytics.store import record_actions
from omnicart.events import Event
from omnicart.journey.catalog import triggered_by
from omnicart.journey.model import JourneyBundle
from omnicart.journey.registry import JourneyRegistry
from omnicart.journey.versions import JourneyVersions
from omnicart.messages import SendRequest, SendResult
from omnicart.quarantine import QuarantineLog
from omnicart.routing import customer_workflow_id, signal_customer
from omnicart.settings import get_settings
from omnicart.signals import RECORD_ANALYTICS_ACTIVITY, IncomingEvent
from omnicart.storage import get_engine, upgrade
from workflows.customer import CustomerWorkflow
from workflows.sandbox import workflow_runner


class RecordingChannel:
    """Accepts every send and remembers it; stands in for the channel when a test is about journeys."""

    def __init__(self, analytics: Engine | None = None) -> None:
        self.requests: list[SendRequest] = []
        self.analytics = analytics  # where to store the analytics rows a send carries, like the real one

    @activity.defn(name="send_message")
    async def send_message(self, request: SendRequest) -> SendResult:
        if self.analytics is not None and request.analytics:
            record_actions(self.analytics, request.analytics)
        self.requests.append(request)
        return SendResult(message_id=request.message_id, channel=request.channel, outcome="sent",
                          provider="recording")


@asynccontextmanager
async def customer_worker(
    client: Client,
    activities: Sequence[Callable[..., Any]],
    quarantine: QuarantineLog | None = None,
    **options: Any,
) -> AsyncIterator[str]:
    """A worker for CustomerWorkflow on a fresh task queue (``options`` go to ``Worker``); yields the queue.

    Quarantined inputs and analytics rows are recorded in ``quarantine``'s database (by default a
    throwaway SQLite database).
    """
    task_queue = f"test-{uuid.uuid4()}"
    with tempfile.TemporaryDirectory() as scratch:
        log = quarantine or QuarantineLog(_database(Path(scratch) / "quarantine.db"))
        recording = QuarantineActivities(log).record_quarantine
        loading = JourneyActivities(JourneyVersions(JourneyRegistry(log.engine))).load_journeys
        stock = CatalogActivities(log.engine).catalog_for_conditions  # the catalog in the same database
        # Journey actions go to the same database (pass ``quarantine`` to read them), unless the test
        # brings its own record_analytics.
        names = {getattr(getattr(a, "__temporal_activity_definition", None), "name", None) for a in activities}
        analytics = [] if RECORD_ANALYTICS_ACTIVITY in names else [
            AnalyticsActivities(log.engine, get_settings().signing_secret).record_analytics]
        async with Worker(client, task_queue=task_queue, workflows=[CustomerWorkflow],
                          activities=[*activities, recording, loading, stock, *analytics],
                          workflow_runner=workflow_runner(), **options):
            yield task_queue


def _database(path: Path) -> Engine:
    url = f"sqlite:///{path}"
    upgrade(url)
    return get_engine(url)


def journeys_for(bundles: Sequence[JourneyBundle]) -> Callable[[str], list[JourneyBundle]]:
    return lambda event_type: triggered_by(bundles, event_type)


async def send_event(client: Client, task_queue: str, event: Event, bundles: Sequence[JourneyBundle],
                     max_history_events: int = 2000, send_timeout_seconds: float = 60.0) -> None:
    incoming = IncomingEvent(event=event, journeys=journeys_for(bundles)(event.type))
    await signal_customer(client, task_queue, event.customer_id, [incoming], max_history_events, send_timeout_seconds)


async def journal(client: Client, customer_id: str) -> list[dict[str, Any]]:
    handle = client.get_workflow_handle(customer_workflow_id(customer_id))
    result: list[dict[str, Any]] = await handle.query("journal")
    return result


def parse_at(line: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(line["at"].replace("Z", "+00:00"))


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 30.0) -> None:
    """Wait (in real time) until ``check`` holds: on a loaded machine, work lands a little later."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"still not true after {timeout:.0f}s")
        await asyncio.sleep(0.1)
