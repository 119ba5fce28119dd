"""Nothing a customer sends can wedge their workflow: what the interpreter fails on is quarantined.

The poison used here is real: an event that skipped the API's property validation (an older producer
signalling directly, or a bug in a webhook mapping) with ``push_tokens: 5``, which the interpreter
cannot iterate. A bug and its fix are played by patching an interpreter function, which the
workflow shares with this process because the sandbox passes the engine through.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from omnicart.engine import interpreter
from omnicart.engine.state import CustomerState
from omnicart.events import Event
from omnicart.journey.loader import load_journey
from omnicart.quarantine import QuarantineLog
from omnicart.routing import customer_workflow_id
from omnicart.signals import QUARANTINE_QUERY
from omnicart.simulate import simulate
from omnicart.storage import get_engine, upgrade
from tests.support.bundles import flagship
from tests.support.runtime import RecordingChannel, customer_worker, eventually, journal, send_event
from tests.support.short_journeys import copy_with_seconds
from tests.support.timelines import cart, describe, order, profile

T0 = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)


def _event(event_type: str, at: datetime, properties: dict[str, Any], customer_id: str = "c1",
           number: int = 0) -> Event:
    """Built without the per-type property validation the API does, as a direct signaller would."""
    return Event.model_validate({"id": f"{customer_id}-{number}-{event_type}", "type": event_type,
                                 "customer_id": customer_id, "timestamp": at, "source": "api",
                                 "properties": properties})


def poison(at: datetime, customer_id: str = "c1") -> Event:
    return _event("customer_updated", at, {"push_tokens": 5}, customer_id, number=99)


def _bug_for_grace(learn: Any) -> Any:
    """A bug in the profile code that a later deploy fixes: renaming anyone to Grace fails."""

    def buggy(state: CustomerState, event: Event, ctx: dict[str, Any]) -> None:
        if event.properties.get("first_name") == "Grace":
            raise AttributeError("a bug in the profile code")
        learn(state, event, ctx)

    return buggy


@pytest.fixture
def started() -> Iterator[CustomerState]:
    state = interpreter.new_state("c1")
    interpreter.handle_event(state, _event("customer_updated", T0 - timedelta(days=1), profile()), [], T0, safe=True)
    interpreter.handle_event(state, _event("checkout_started", T0, cart(), number=1), [flagship()], T0, safe=True)
    yield state


def test_unsafe_mode_raises_what_safe_mode_quarantines(started: CustomerState) -> None:
    with pytest.raises(TypeError):
        interpreter.handle_event(started.checkpoint(), poison(T0), [], T0)


def test_a_poison_event_is_rolled_back_and_quarantined_and_the_run_goes_on(started: CustomerState) -> None:
    before = started.checkpoint()
    out = interpreter.handle_event(started, poison(T0 + timedelta(minutes=5)), [], T0 + timedelta(minutes=5),
                                   safe=True)

    [entry] = started.quarantine
    assert entry.kind == "event" and entry.event is not None and entry.event.id == "c1-99-customer_updated"
    assert entry.error.startswith("TypeError")
    assert [a.action for a in out.actions] == ["quarantine"]
    assert started.profile == before.profile and started.runs == before.runs  # nothing half-applied
    assert "c1-99-customer_updated" in started.seen  # a redelivery is not tried (and failed) again
    assert entry.summary()["event_type"] == "customer_updated" and "push_tokens" not in str(entry.summary())

    timers = interpreter.handle_timers(started, T0 + timedelta(hours=1), safe=True)
    assert [describe(a.as_json()) for a in timers.actions] == ["send email cart_reminder_1"]
    done = interpreter.handle_event(started, _event("order_placed", T0 + timedelta(hours=2), order(), number=2), [],
                                    T0 + timedelta(hours=2), safe=True)
    # The reminder is still in flight (no outcome yet): the conversion is credited to no message.
    assert [describe(a.as_json()) for a in done.actions] == ["convert 79.5 USD", "exit order_placed"]


def test_a_run_whose_wait_fails_ends_with_internal_error_and_other_runs_go_on(
    started: CustomerState, monkeypatch: pytest.MonkeyPatch
) -> None:
    second = interpreter.handle_event(started, _event("checkout_started", T0, cart("cart_2"), number=3),
                                      [flagship()], T0, safe=True)
    assert [a.action for a in second.actions] == ["enter"]
    real_advance = interpreter._advance

    def broken_for_cart_1(state: CustomerState, run: Any, at: datetime, out: Any, **times: Any) -> None:
        if run.key == "cart_1":
            raise KeyError("a bug in one step")
        real_advance(state, run, at, out, **times)

    monkeypatch.setattr(interpreter, "_advance", broken_for_cart_1)
    out = interpreter.handle_timers(started, T0 + timedelta(hours=1), safe=True)

    assert [describe(a.as_json()) for a in out.actions] == [
        "quarantine KeyError: 'a bug in one step'", "exit internal_error", "send email cart_reminder_1",
    ]
    assert [run.key for run in started.runs] == ["cart_2"]
    assert [entry.kind for entry in started.quarantine] == ["timer"]


def test_replay_after_a_fix_applies_the_event(started: CustomerState, monkeypatch: pytest.MonkeyPatch) -> None:
    real_learn = interpreter._learn
    monkeypatch.setattr(interpreter, "_learn", _bug_for_grace(real_learn))
    rename = _event("customer_updated", T0 + timedelta(minutes=1), {"first_name": "Grace"}, number=5)
    interpreter.handle_event(started, rename, [], T0 + timedelta(minutes=1), safe=True)
    assert started.profile.first_name == "Ada" and len(started.quarantine) == 1

    interpreter.replay_quarantined(started, T0 + timedelta(minutes=2))  # still broken: back in quarantine
    assert len(started.quarantine) == 1 and started.quarantined_total == 2

    monkeypatch.setattr(interpreter, "_learn", real_learn)  # the fix is deployed
    interpreter.replay_quarantined(started, T0 + timedelta(minutes=3))
    assert started.quarantine == [] and started.profile.first_name == "Grace"


def test_simulate_quarantines_exactly_as_the_workflow_would(monkeypatch: pytest.MonkeyPatch) -> None:
    real_learn = interpreter._learn
    monkeypatch.setattr(interpreter, "_learn", _bug_for_grace(real_learn))
    events = [
        _event("customer_updated", T0 - timedelta(days=1), profile()),
        _event("checkout_started", T0, cart(), number=1),
        _event("customer_updated", T0 + timedelta(minutes=30), {"first_name": "Grace"}, number=2),
    ]
    lines = [describe(action.as_json()) for action in simulate(flagship(), events, workers=1)]
    assert lines[:3] == ["enter", "quarantine AttributeError: a bug in the profile code",
                         "send email cart_reminder_1"]
    assert lines[-1] == "exit completed"


# --- on the real dev server -----------------------------------------------------------------------


async def _quarantine(client: Client, customer_id: str) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = await client.get_workflow_handle(
        customer_workflow_id(customer_id)).query(QUARANTINE_QUERY)
    return entries


async def _no_failing_workflow_task(client: Client, customer_id: str) -> None:
    description = await client.get_workflow_handle(customer_workflow_id(customer_id)).describe()
    pending = description.raw_description.pending_workflow_task
    assert pending.attempt <= 1, f"workflow task failing: attempt {pending.attempt}"


async def test_a_poison_event_never_wedges_the_workflow_and_is_replayable_after_a_fix(
    dev_env: WorkflowEnvironment, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = dev_env.client
    fast = load_journey(copy_with_seconds(tmp_path) / "abandoned_cart.yaml")
    customer_id = f"cus_{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC)
    channel = RecordingChannel()
    upgrade(f"sqlite:///{tmp_path / 'omnicart.db'}")
    engine = get_engine(f"sqlite:///{tmp_path / 'omnicart.db'}")
    log = QuarantineLog(engine)
    async with customer_worker(client, [channel.send_message], quarantine=log) as task_queue:
        await send_event(client, task_queue, _event("customer_updated", now, profile(), customer_id), [fast])
        await send_event(client, task_queue, _event("checkout_started", now, cart(), customer_id, 1), [fast])
        await send_event(client, task_queue, poison(now, customer_id), [fast])
        handle = client.get_workflow_handle(customer_workflow_id(customer_id))

        async def quarantined() -> bool:
            return len(await _quarantine(client, customer_id)) == 1

        await eventually(quarantined)
        [entry] = await _quarantine(client, customer_id)
        assert entry["event_type"] == "customer_updated" and entry["error"].startswith("TypeError")
        await _no_failing_workflow_task(client, customer_id)

        # Operators find it on the list across customers.
        async def listed() -> bool:
            return [e.workflow_id for e in log.open_entries()] == [customer_workflow_id(customer_id)]

        await eventually(listed)
        listing = _cli(dev_env, tmp_path, "quarantine", "list")
        assert customer_workflow_id(customer_id) in listing and "TypeError" in listing

        # The rest of the journey goes on: reminders, then the order ends it.
        async def reminded() -> bool:
            return len(channel.requests) >= 1

        await eventually(reminded)
        await send_event(client, task_queue, _event("order_placed", datetime.now(UTC), order(), customer_id, 2), [fast])

        async def ended() -> bool:
            return "exit order_placed" in [describe(line) for line in await journal(client, customer_id)]

        await eventually(ended)
        await _no_failing_workflow_task(client, customer_id)

        # The quarantine continued-as-new: the failing input is state now, not history to replay.
        runs = [e async for e in client.list_workflows(f"WorkflowId = '{customer_workflow_id(customer_id)}'")]
        assert len(runs) >= 2

        # A bug that a later deploy fixes: quarantined now, applied by replay afterwards.
        real_learn = interpreter._learn
        monkeypatch.setattr(interpreter, "_learn", _bug_for_grace(real_learn))
        rename = _event("customer_updated", datetime.now(UTC), {"first_name": "Grace"}, customer_id, 3)
        await send_event(client, task_queue, rename, [fast])

        async def two_quarantined() -> bool:
            return len(await _quarantine(client, customer_id)) == 2

        await eventually(two_quarantined)
        monkeypatch.setattr(interpreter, "_learn", real_learn)
        replayed = await asyncio.to_thread(_cli, dev_env, tmp_path, "quarantine", "replay", customer_id)
        assert "1 still quarantined" in replayed  # the real poison stays; the bug's victim went through
        handle = client.get_workflow_handle(customer_workflow_id(customer_id))
        remaining = await handle.query(QUARANTINE_QUERY)
        assert [item["error"].split(":")[0] for item in remaining] == ["TypeError"]
        state = await handle.query("state", result_type=CustomerState)
        assert state.profile.first_name == "Grace"
        await _no_failing_workflow_task(client, customer_id)
        history = await handle.fetch_history()
        assert not any(e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED for e in history.events)


def _cli(env: WorkflowEnvironment, data_dir: Path, *args: str) -> str:
    """``omnicart ARGS`` as an operator runs it, against this Temporal and this product database."""
    environment = {**os.environ, "TEMPORAL_ADDRESS": env.client.service_client.config.target_host,
                   "OMNICART_DATA_DIR": str(data_dir), "COLUMNS": "250"}
    done = subprocess.run([sys.executable, "-m", "omnicart.cli", *args], env=environment, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout
