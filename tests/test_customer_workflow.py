"""The customer workflow on the real time-skipping Temporal server: what operators rely on.

Duplicates are acted on once, late and out-of-order events do the right thing, an edited journey
leaves runs under way alone, and continue-as-new loses nothing that was in flight.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from temporalio.api.enums.v1 import EventType
from temporalio.testing import WorkflowEnvironment

from omnicart.journey.loader import load_journey
from omnicart.journey.model import JourneyBundle
from omnicart.routing import customer_workflow_id
from tests.support.bundles import flagship
from tests.support.runtime import RecordingChannel, customer_worker, eventually, journal, send_event
from tests.support.short_journeys import copy_with_seconds
from tests.support.timelines import DAY, HOUR, Timeline, aligned_start, cart, describe, order, profile


async def _play(env: WorkflowEnvironment, task_queue: str, timeline: Timeline, customer_id: str,
                bundles: list[JourneyBundle], arrival: list[int] | None = None) -> None:
    """Signal the timeline's events at their timestamps (or in ``arrival`` order, all at once)."""
    start = aligned_start(await env.get_current_time())
    events = timeline.events(start, customer_id)
    if arrival is not None:
        await env.sleep(max(e.timestamp for e in events) - await env.get_current_time() + timedelta(minutes=1))
        for index in arrival:
            await send_event(env.client, task_queue, events[index], bundles)
        return
    for event in events:
        wait = event.timestamp - await env.get_current_time()
        if wait > timedelta(0):
            await env.sleep(wait)
        await send_event(env.client, task_queue, event, bundles)


async def test_a_repeated_event_id_is_acted_on_once(time_env: WorkflowEnvironment) -> None:
    channel = RecordingChannel()
    timeline = Timeline("dup", [(-DAY, "customer_updated", "api", profile()),
                                (timedelta(0), "checkout_started", "web", cart())])
    async with customer_worker(time_env.client, [channel.send_message]) as task_queue:
        await _play(time_env, task_queue, timeline, "cus_dup", [flagship()])
        start = aligned_start(await time_env.get_current_time() - timedelta(days=2))
        again = timeline.events(start, "cus_dup")[1]
        for _ in range(3):
            await send_event(time_env.client, task_queue, again, [flagship()])
        await time_env.sleep(2 * HOUR)
        lines = await journal(time_env.client, "cus_dup")
    assert [describe(line) for line in lines] == ["enter", "send email cart_reminder_1"]
    assert len(channel.requests) == 1


async def test_an_order_that_arrives_before_its_checkout_ends_the_run_at_once(
    time_env: WorkflowEnvironment,
) -> None:
    """The point-of-sale uploaded the order before the web shop's checkout event reached us."""
    timeline = Timeline("late", [(-DAY, "customer_updated", "api", profile()),
                                 (timedelta(0), "checkout_started", "web", cart()),
                                 (20 * HOUR, "order_placed", "store", order(store=True))])
    channel = RecordingChannel()
    async with customer_worker(time_env.client, [channel.send_message]) as task_queue:
        await _play(time_env, task_queue, timeline, "cus_late", [flagship()], arrival=[0, 2, 1])
        await time_env.sleep(4 * DAY)
        lines = await journal(time_env.client, "cus_late")
    assert [describe(line) for line in lines] == ["enter", "convert 79.5 USD", "exit order_placed"]
    assert channel.requests == []


async def test_an_older_profile_update_arriving_late_does_not_undo_a_newer_one(
    time_env: WorkflowEnvironment,
) -> None:
    newer = {**profile(), "consent": {"email": True, "sms": False}}
    timeline = Timeline("lww", [(-2 * DAY, "customer_updated", "api", profile()),
                                (-DAY, "customer_updated", "api", newer),
                                (timedelta(0), "checkout_started", "web", cart())])
    channel = RecordingChannel()
    async with customer_worker(time_env.client, [channel.send_message]) as task_queue:
        await _play(time_env, task_queue, timeline, "cus_lww", [flagship()], arrival=[1, 0, 2])
        await time_env.sleep(30 * HOUR)
        lines = await journal(time_env.client, "cus_lww")
    assert "skip sms cart_reminder_sms no_sms_consent" in [describe(line) for line in lines]
    assert [r.channel for r in channel.requests] == ["email", "email"]


async def test_an_edited_journey_changes_only_runs_that_start_afterwards(time_env: WorkflowEnvironment) -> None:
    original = flagship()
    edited_journey = original.journey.model_copy(
        update={"steps": [original.journey.steps[0].model_copy(update={"wait": "3h"}), *original.journey.steps[1:]]}
    )
    edited = JourneyBundle(journey=edited_journey, templates=original.templates)
    assert edited.version != original.version
    channel = RecordingChannel()
    async with customer_worker(time_env.client, [channel.send_message]) as task_queue:
        first = Timeline("v1", [(-DAY, "customer_updated", "api", profile()),
                                (timedelta(0), "checkout_started", "web", cart("cart_a"))])
        await _play(time_env, task_queue, first, "cus_edit", [original])
        await time_env.sleep(10 * timedelta(minutes=1))
        start = await time_env.get_current_time()
        second = Timeline("v2", [(timedelta(0), "checkout_started", "web", cart("cart_b"))])
        for event in second.events(start, "cus_edit"):
            await send_event(time_env.client, task_queue, event, [edited])
        await time_env.sleep(4 * HOUR)
    versions = [(r.context["cart"]["cart_id"], r.journey_version) for r in channel.requests]
    assert versions == [("cart_a", original.version), ("cart_b", edited.version)]
    first_send, second_send = channel.requests
    assert second_send.context["trigger"]["timestamp"] > first_send.context["trigger"]["timestamp"]


async def test_continue_as_new_with_events_in_flight_loses_and_repeats_nothing(
    dev_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    """A customer with a busy history: the workflow starts fresh histories while events pour in.

    On the real dev server (the time-skipping test server mishandles continue-as-new racing
    signals), with the flagship's hours as seconds.
    """
    short = load_journey(copy_with_seconds(tmp_path) / "abandoned_cart.yaml")
    channel = RecordingChannel()
    customer_id = f"cus_busy_{uuid.uuid4().hex[:6]}"
    carts = [f"cart_{n}" for n in range(12)]
    async with customer_worker(dev_env.client, [channel.send_message]) as task_queue:
        now = datetime.now(UTC)
        setup = Timeline("setup", [(timedelta(0), "customer_updated", "api", profile(timezone="UTC"))])
        for event in setup.events(now - DAY, customer_id):
            await send_event(dev_env.client, task_queue, event, [short], max_history_events=60)
        burst = Timeline("burst", [(timedelta(milliseconds=n), "checkout_started", "web", cart(c))
                                   for n, c in enumerate(carts)])
        events = burst.events(now, customer_id)
        # Every event twice, concurrently: duplicates must still be dropped across histories.
        await asyncio.gather(*(send_event(dev_env.client, task_queue, e, [short], max_history_events=60)
                               for e in events + events))

        async def every_cart_reminded_thrice() -> bool:
            return len(channel.requests) >= 3 * len(carts)

        await eventually(every_cart_reminded_thrice)
        await asyncio.sleep(1)  # nothing more may arrive
        lines = await journal(dev_env.client, customer_id)
        continued = await _continued_from_earlier_run(dev_env, customer_workflow_id(customer_id))
    assert continued, "the busy customer's workflow should have continued as new"
    sent = sorted((r.context["cart"]["cart_id"], r.template_name) for r in channel.requests)
    assert sent == sorted((c, t) for c in carts for t in ("cart_reminder_1", "cart_reminder_sms", "cart_last_chance"))
    assert sum(1 for line in lines if line["action"] == "enter") == len(carts)


async def _continued_from_earlier_run(env: WorkflowEnvironment, workflow_id: str) -> bool:
    """Whether the workflow's current run was started by continue-as-new."""
    handle = env.client.get_workflow_handle(workflow_id)
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
            return bool(event.workflow_execution_started_event_attributes.continued_execution_run_id)
    return False
