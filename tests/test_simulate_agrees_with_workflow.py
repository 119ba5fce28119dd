"""``omnicart simulate`` must agree exactly with what the real workflows do for the same timeline.

Each flagship branch runs twice: through the simulator, and through the real CustomerWorkflow on the
time-skipping Temporal server with events signalled at their timestamps. The journals must list the
same actions, with the same channels, templates, reasons and values, at the same times. A click
named by its step in the timeline reaches the workflow with the message id the preview printed, as a
marketer would copy it; a template that cannot render fails the same way in the preview and in the
real send activity.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.testing import WorkflowEnvironment

from activities.send import SendActivities
from omnicart.channels.outbox import OutboxSender, read_outbox
from omnicart.engine.interpreter import ENGAGEMENT
from omnicart.events import CHANNELS, Event
from omnicart.journey.model import JourneyBundle
from omnicart.ledger import MessageLedger
from omnicart.settings import Settings
from omnicart.simulate import simulate
from omnicart.storage import get_engine, upgrade
from tests.support.bundles import browse, flagship, order_thanks
from tests.support.runtime import RecordingChannel, customer_worker, journal, parse_at, send_event
from tests.support.timelines import (
    DAY,
    Timeline,
    aligned_start,
    browse_timelines,
    describe,
    flagship_timelines,
    store_order_without_items,
)

# The workflow reads the time when it handles a signal, which on the time-skipping server is a few
# real milliseconds after the instant the test slept to; timers fire at their exact deadlines.
SIGNAL_SLACK = timedelta(seconds=2)


CASES = [("abandoned_cart", t) for t in flagship_timelines()] + [("browse_abandonment", t) for t in browse_timelines()]
BUNDLES = {"abandoned_cart": flagship, "browse_abandonment": browse}


@pytest.mark.parametrize(("journey", "timeline"), CASES, ids=[f"{j}-{t.name}" for j, t in CASES])
async def test_simulate_matches_workflow(time_env: WorkflowEnvironment, journey: str, timeline: Timeline) -> None:
    bundle = BUNDLES[journey]()
    start = aligned_start(await time_env.get_current_time())
    customer_id = f"cus_{timeline.name}"
    events = timeline.events(start, customer_id)
    expected = [action.as_json() for action in simulate(bundle, events)]

    channel = RecordingChannel()
    async with customer_worker(time_env.client, [channel.send_message]) as task_queue:
        actual = await _play(time_env, task_queue, bundle, _with_message_ids(events, expected), start + 8 * DAY)

    _assert_same_journal(actual, expected)
    sent = [(r.channel, r.template_name) for r in channel.requests]
    assert sent == [(line["channel"], line["template"]) for line in expected if line["action"] == "send"]


async def test_a_template_that_fails_fails_alike_in_the_preview_and_the_worker(
    time_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    bundle, timeline = order_thanks(), store_order_without_items()
    start = aligned_start(await time_env.get_current_time())
    events = timeline.events(start, "cus_store_order")
    expected = [action.as_json() for action in simulate(bundle, events)]
    assert [(parse_at(line) - start, describe(line)) for line in expected] == timeline.expect

    settings = Settings(_env_file=None, data_dir=tmp_path)
    upgrade(settings.database())
    outbox = OutboxSender(settings.outbox(), console=io.StringIO())
    sends = SendActivities(MessageLedger(get_engine(settings.database())), dict.fromkeys(CHANNELS, outbox), settings)
    async with customer_worker(time_env.client, [sends.send_message]) as task_queue:
        actual = await _play(time_env, task_queue, bundle, events, start + DAY)

    _assert_same_journal(actual, expected)
    assert [line["template"] for line in read_outbox(settings.outbox())] == ["thanks_sms"]


async def _play(
    env: WorkflowEnvironment, task_queue: str, bundle: JourneyBundle, events: list[Event], until: datetime
) -> list[dict[str, Any]]:
    """Signal each event at its timestamp on the time-skipping server; the journal once ``until``."""
    for event in sorted(events, key=lambda e: e.timestamp):
        wait = event.timestamp - await env.get_current_time()
        if wait > timedelta(0):
            await env.sleep(wait)
        await send_event(env.client, task_queue, event, [bundle])
    await env.sleep(until - await env.get_current_time())
    return await journal(env.client, events[0].customer_id)


def _with_message_ids(events: list[Event], preview: list[dict[str, Any]]) -> list[Event]:
    """Engagement that names a step gets the message id the preview printed for that step's send."""
    printed = {line["step"]: line["message_id"] for line in preview if line["action"] == "send"}
    linked = []
    for event in events:
        step = event.properties.get("step")
        if event.type in ENGAGEMENT and step in printed:
            event = event.model_copy(update={"properties": {**event.properties, "message_id": printed[step]}})
        linked.append(event)
    return linked


def _assert_same_journal(actual: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    assert [_shape(line) for line in actual] == [_shape(line) for line in expected]
    for got, want in zip(actual, expected, strict=True):
        drift = parse_at(got) - parse_at(want)
        assert timedelta(0) <= drift <= SIGNAL_SLACK, (got, want)


def _shape(line: dict[str, object]) -> dict[str, object]:
    return {key: value for key, value in line.items() if key != "at"}


@pytest.mark.parametrize(("journey", "timeline"), CASES, ids=[f"{j}-{t.name}" for j, t in CASES])
def test_journey_does_what_its_definition_says(journey: str, timeline: Timeline) -> None:
    start = aligned_start(datetime(2026, 11, 22, 8, 30, tzinfo=UTC))
    lines = [action.as_json() for action in simulate(BUNDLES[journey](), timeline.events(start, "cus_1"))]
    assert [(parse_at(line) - start, describe(line)) for line in lines] == timeline.expect
