"""A send in flight survives continue-as-new, and an exit stops a send that has not reached the provider.

The real send activity (ledger, rendering, outbox channel) on a real worker and the real dev server.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from temporalio.api.enums.v1 import EventType
from temporalio.testing import WorkflowEnvironment

from activities.send import SendActivities
from omnicart.channels.base import Delivery, RenderedMessage
from omnicart.channels.outbox import OutboxSender, read_outbox
from omnicart.engine.state import CustomerState
from omnicart.events import Event
from omnicart.journey.loader import load_journey
from omnicart.ledger import LedgerStatus, MessageLedger
from omnicart.routing import customer_workflow_id
from omnicart.settings import Settings
from omnicart.storage import get_engine, upgrade
from tests.support.runtime import customer_worker, eventually, journal, send_event
from tests.support.short_journeys import copy_with_seconds
from tests.support.timelines import cart, describe, order, profile
from worker import HEARTBEAT_THROTTLE

ATTEMPT_TIMEOUT = 3.0


class SlowOutbox(OutboxSender):
    """The outbox as a provider that takes ``hold`` seconds to accept its first message."""

    def __init__(self, path: Path, hold: float) -> None:
        super().__init__(path)
        self.hold = hold
        self.calls = 0

    async def send(self, message: RenderedMessage) -> Delivery:
        self.calls += 1
        if self.calls == 1:
            await asyncio.sleep(self.hold)
        return await super().send(message)


def _activities(tmp_path: Path, sender: OutboxSender) -> tuple[SendActivities, MessageLedger]:
    settings = Settings(data_dir=tmp_path, signing_secret=SecretStr("in-flight-test"))
    upgrade(settings.database())
    ledger = MessageLedger(get_engine(settings.database()))
    return SendActivities(ledger, {"email": sender}, settings,
                          attempt_timeout=timedelta(seconds=ATTEMPT_TIMEOUT)), ledger


def _event(event_type: str, customer_id: str, number: int, properties: dict[str, object]) -> Event:
    return Event.parse({"id": f"{customer_id}-{number}", "type": event_type, "customer_id": customer_id,
                        "timestamp": datetime.now(UTC).isoformat(), "source": "web", "properties": properties})


async def test_continue_as_new_with_a_send_in_flight_sends_it_exactly_once(
    dev_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    client = dev_env.client
    fast = load_journey(copy_with_seconds(tmp_path / "journeys", durations={"1h": "1s", "24h": "30s", "72h": "40s"})
                        / "abandoned_cart.yaml")
    outbox = SlowOutbox(tmp_path / "outbox.jsonl", hold=2.0)
    activities, ledger = _activities(tmp_path, outbox)
    customer_id = f"cus_{uuid.uuid4().hex[:8]}"
    options: dict[str, Any] = {"max_history_events": 20, "send_timeout_seconds": ATTEMPT_TIMEOUT}
    async with customer_worker(client, [activities.send_message],
                               max_heartbeat_throttle_interval=HEARTBEAT_THROTTLE) as task_queue:
        await send_event(client, task_queue, _event("customer_updated", customer_id, 0, profile(sms=False)), [fast],
                         **options)
        await send_event(client, task_queue, _event("checkout_started", customer_id, 1, cart()), [fast], **options)

        async def called() -> bool:
            return outbox.calls >= 1

        await eventually(called)
        # While the provider holds the first reminder, events grow the history past the limit.
        for number in range(2, 8):
            await send_event(client, task_queue, _event("product_viewed", customer_id, number, {"sku": "S"}), [fast],
                             **options)

        handle = client.get_workflow_handle(customer_workflow_id(customer_id))

        async def sent_and_settled() -> bool:
            state = await handle.query("state", result_type=CustomerState)
            return len(read_outbox(tmp_path / "outbox.jsonl")) == 1 and not state.pending

        await eventually(sent_and_settled, timeout=60)
        lines = [describe(line) for line in await journal(client, customer_id)]

    runs = [run async for run in client.list_workflows(f"WorkflowId = '{customer_workflow_id(customer_id)}'")]
    assert len(runs) >= 2, "the workflow should have continued as new"
    first = min(runs, key=lambda run: run.start_time)
    history = await client.get_workflow_handle(first.id, run_id=first.run_id).fetch_history()
    kinds = [event.event_type for event in history.events]
    assert EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED in kinds
    assert EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED not in kinds  # it continued with the send in flight
    assert kinds[-1] == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW

    [message] = read_outbox(tmp_path / "outbox.jsonl")
    entry = ledger.find(message["message_id"])
    assert entry is not None and entry.status is LedgerStatus.SENT
    assert lines.count("send email cart_reminder_1") == 1


class _Notices(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.seen: dict[str, float] = {}

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        for key in ("cancellation received", "cancelled before the provider call"):
            if key in message:
                self.seen.setdefault(key, time.monotonic())


async def test_an_exit_stops_a_send_that_has_not_reached_the_provider(
    dev_env: WorkflowEnvironment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    client = dev_env.client
    fast = load_journey(copy_with_seconds(tmp_path / "journeys", durations={"1h": "1s", "24h": "30s", "72h": "40s"})
                        / "abandoned_cart.yaml")
    outbox = OutboxSender(tmp_path / "outbox.jsonl")
    activities, ledger = _activities(tmp_path, outbox)
    notices = _Notices()
    activity_log = logging.getLogger("temporalio.activity")
    level = activity_log.level
    activity_log.setLevel(logging.INFO)
    activity_log.addHandler(notices)
    customer_id = f"cus_{uuid.uuid4().hex[:8]}"
    # The database is busy (another writer holds it): the send blocks before it can claim the message.
    blocker = sqlite3.connect(tmp_path / "omnicart.db", timeout=30, isolation_level=None)
    try:
        async with customer_worker(client, [activities.send_message],
                                   max_heartbeat_throttle_interval=HEARTBEAT_THROTTLE) as task_queue:
            await send_event(client, task_queue, _event("customer_updated", customer_id, 0, profile(sms=False)),
                             [fast])
            blocker.execute("BEGIN IMMEDIATE")
            await send_event(client, task_queue, _event("checkout_started", customer_id, 1, cart()), [fast])
            handle = client.get_workflow_handle(customer_workflow_id(customer_id))

            async def sending() -> bool:
                return bool((await handle.describe()).raw_description.pending_activities)

            await eventually(sending)
            await asyncio.sleep(1.0)  # the attempt is running, waiting for the database
            exit_at = time.monotonic()
            await send_event(client, task_queue, _event("order_placed", customer_id, 2, order()), [fast])

            async def cancelled() -> bool:
                return "cancellation received" in notices.seen

            await eventually(cancelled)
            blocker.execute("COMMIT")

            async def stopped() -> bool:
                return "cancelled before the provider call" in notices.seen

            await eventually(stopped)
            lines = [describe(line) for line in await journal(client, customer_id)]
    finally:
        activity_log.removeHandler(notices)
        activity_log.setLevel(level)
        blocker.close()

    assert lines[-2:] == ["convert 79.5 USD", "exit order_placed"]
    assert read_outbox(tmp_path / "outbox.jsonl") == []
    [entry] = ledger.with_status(LedgerStatus.DEFERRED)
    assert entry.customer_id == customer_id and entry.error == "cancelled before the provider call"
    with capsys.disabled():
        print(f"\nexit -> send cancelled in the activity: {notices.seen['cancellation received'] - exit_at:.2f}s")


class BuggySms(OutboxSender):
    """A channel with a bug (it raises TypeError on every message)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.calls = 0

    async def send(self, message: RenderedMessage) -> Delivery:
        self.calls += 1
        raise TypeError("a bug in the channel")


async def test_a_channel_bug_is_not_retried_for_ever_the_step_falls_back(
    time_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    client = time_env.client
    outbox = OutboxSender(tmp_path / "outbox.jsonl")
    buggy = BuggySms(tmp_path / "unused.jsonl")
    settings = Settings(data_dir=tmp_path, signing_secret=SecretStr("bug-test"))
    upgrade(settings.database())
    activities = SendActivities(MessageLedger(get_engine(settings.database())), {"email": outbox, "sms": buggy},
                                settings)
    # The shipped flagship without its SMS quiet hours, so the time of day the test runs at does not matter.
    same_hours = {"1h": "1h", "24h": "24h", "72h": "72h"}
    journey = load_journey(copy_with_seconds(tmp_path / "journeys", durations=same_hours) / "abandoned_cart.yaml")
    customer_id = f"cus_{uuid.uuid4().hex[:8]}"
    now = await time_env.get_current_time()
    events = [
        Event.parse({"id": f"{customer_id}-0", "type": "customer_updated", "customer_id": customer_id,
                     "timestamp": (now - timedelta(days=1)).isoformat(), "source": "api", "properties": profile()}),
        Event.parse({"id": f"{customer_id}-1", "type": "checkout_started", "customer_id": customer_id,
                     "timestamp": (now - timedelta(hours=23, minutes=59)).isoformat(), "source": "web",
                     "properties": cart()}),
    ]
    async with customer_worker(client, [activities.send_message]) as task_queue:
        for event in events:
            await send_event(client, task_queue, event, [journey])
        await time_env.sleep(timedelta(hours=1))
        lines = [describe(line) for line in await journal(client, customer_id)]

    assert buggy.calls == 1  # not retried: a bug does not fix itself
    # The checkout is almost a day old: its 1-hour reminder is past the flagship's late_after.
    assert lines[:5] == ["enter", "skip email cart_reminder_1 too_late", "send sms cart_reminder_sms",
                         "skip sms cart_reminder_sms sms_failed", "send email cart_reminder_2"]
    assert [line["template"] for line in read_outbox(tmp_path / "outbox.jsonl")] == ["cart_reminder_2"]
