"""``omnicart simulate`` must agree exactly with what the real workflows do for the same timeline.

Each flagship branch runs twice: through the simulator, and through the real CustomerWorkflow on the
time-skipping Temporal server with events signalled at their timestamps. The journals must list the
same actions, with the same channels, templates, reasons and values, at the same times.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from temporalio.testing import WorkflowEnvironment

from omnicart.simulate import simulate
from tests.support.bundles import browse, flagship
from tests.support.runtime import RecordingChannel, customer_worker, journal, parse_at, send_event
from tests.support.timelines import DAY, Timeline, aligned_start, browse_timelines, describe, flagship_timelines

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
        for event in sorted(events, key=lambda e: e.timestamp):
            wait = event.timestamp - await time_env.get_current_time()
            if wait > timedelta(0):
                await time_env.sleep(wait)
            await send_event(time_env.client, task_queue, event, [bundle])
        await time_env.sleep(start + 8 * DAY - await time_env.get_current_time())
        actual = await journal(time_env.client, customer_id)

    assert [_shape(line) for line in actual] == [_shape(line) for line in expected]
    for got, want in zip(actual, expected, strict=True):
        drift = parse_at(got) - parse_at(want)
        assert timedelta(0) <= drift <= SIGNAL_SLACK, (got, want)
    sent = [(r.channel, r.template_name) for r in channel.requests]
    assert sent == [(line["channel"], line["template"]) for line in expected if line["action"] == "send"]


def _shape(line: dict[str, object]) -> dict[str, object]:
    return {key: value for key, value in line.items() if key != "at"}


@pytest.mark.parametrize(("journey", "timeline"), CASES, ids=[f"{j}-{t.name}" for j, t in CASES])
def test_journey_does_what_its_definition_says(journey: str, timeline: Timeline) -> None:
    start = aligned_start(datetime(2026, 11, 22, 8, 30, tzinfo=UTC))
    lines = [action.as_json() for action in simulate(BUNDLES[journey](), timeline.events(start, "cus_1"))]
    assert [(parse_at(line) - start, describe(line)) for line in lines] == timeline.expect
