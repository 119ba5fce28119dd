"""Splits, holdouts and frequency caps on the real workflow (time-skipping server), against simulate.

The win-back journey starts 60 days after an order, so only the time-skipping server can run it in a test. Each
customer here is known (by hash) to land in one arm: ten percent, twenty percent, or the holdout;
the workflow must agree with ``omnicart simulate`` line by line, keep the customer in the same
variant when they lapse again, and send a holdout customer nothing at all.
"""

from __future__ import annotations

import itertools
from datetime import timedelta
from pathlib import Path
from typing import Any

from temporalio.testing import WorkflowEnvironment

from omnicart.analytics.report import journey_report, load_rows
from omnicart.events import Event
from omnicart.journey.loader import load_journey
from omnicart.journey.model import JourneyBundle, Policies
from omnicart.quarantine import QuarantineLog
from omnicart.simulate import date_events, simulate, timeline_event
from omnicart.storage import get_engine, upgrade
from tests.support.bundles import JOURNEYS, browse, flagship
from tests.support.runtime import RecordingChannel, customer_worker, journal, parse_at, send_event
from tests.support.timelines import DAY, HOUR, aligned_start, cart, describe, profile

SIGNAL_SLACK = timedelta(seconds=2)
# Known by hash (see omnicart.engine.interpreter.assign_variant): each lands in a different arm.
ARMS = {"cus_1": "twenty_percent", "cus_2": "ten_percent", "cus_5": "holdout"}


def win_back() -> JourneyBundle:
    return load_journey(JOURNEYS / "win_back.yaml")


def order(number: int, total: float) -> dict[str, Any]:
    return {"order_id": f"order_{number}", "total": total, "currency": "USD"}


def events(customer_id: str, steps: list[tuple[timedelta, str, dict[str, Any]]], start: Any) -> list[Event]:
    return [
        timeline_event({"id": f"{customer_id}-{index}", "type": kind, "customer_id": customer_id,
                        "timestamp": (start + offset).isoformat(), "source": "web", "properties": properties})
        for index, (offset, kind, properties) in enumerate(steps)
    ]


async def play(env: WorkflowEnvironment, task_queue: str, bundles: list[JourneyBundle], timeline: list[Event],
               until: Any) -> list[dict[str, Any]]:
    for event in sorted(timeline, key=lambda e: e.timestamp):
        wait = event.timestamp - await env.get_current_time()
        if wait > timedelta(0):
            await env.sleep(wait)
        await send_event(env.client, task_queue, event, bundles)
    await env.sleep(until - await env.get_current_time())
    return await journal(env.client, timeline[0].customer_id)


def same(actual: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    assert [{k: v for k, v in line.items() if k != "at"} for line in actual] == \
        [{k: v for k, v in line.items() if k != "at"} for line in expected]
    for got, want in zip(actual, expected, strict=True):
        assert timedelta(0) <= parse_at(got) - parse_at(want) <= SIGNAL_SLACK, (got, want)


async def test_win_back_arms_agree_with_simulate_and_stick_when_a_customer_lapses_again(
    time_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    bundle = win_back()
    channel = RecordingChannel()
    url = f"sqlite:///{tmp_path / 'product.db'}"
    upgrade(url)
    engine = get_engine(url)  # the worker stores its analytics rows here
    async with customer_worker(time_env.client, [channel.send_message], QuarantineLog(engine)) as task_queue:
        channel.analytics = engine  # a send stores the rows it carries, as the real send activity does
        for customer_id, arm in ARMS.items():
            start = aligned_start(await time_env.get_current_time())
            # Ordered, lapsed 60 days, came back with an order 3 days after the offer, lapsed again.
            timeline = events(customer_id, [(-DAY, "customer_updated", profile()), (timedelta(0), "order_placed",
                                            order(1, 50.0)), (63 * DAY, "order_placed", order(2, 80.0))], start)
            expected = [action.as_json() for action in simulate(bundle, timeline)]
            # What the date-triggers schedule delivers: 60 days after each order (test_date_triggers.py
            # proves the schedule finds them in the projection).
            due = date_events(bundle, timeline)
            assert [event.timestamp - start for event in due] == [60 * DAY, 123 * DAY]
            actual = await play(time_env, task_queue, [bundle], timeline + due, start + 140 * DAY)
            same(actual, expected)
            said = [describe(line) for line in actual]
            sent = [r for r in channel.requests if r.customer_id == customer_id]
            if arm == "holdout":
                assert sent == []  # counted, never messaged
                assert said.count("skip email win_back_10 holdout") + said.count("skip email win_back_20 holdout") == 2
                assert "convert 80.0 USD" in said  # the conversion is still recorded, credited to no message
            else:
                template = {"ten_percent": "win_back_10", "twenty_percent": "win_back_20"}[arm]
                assert [r.template_name for r in sent] == [template, template]  # the same arm both times
                assert {r.variant for r in sent} == {arm}
                assert "convert 80.0 USD via email" in said
            assert {line.get("variant") for line in actual if line["action"] in ("send", "skip")} == {arm} - {
                "holdout"} or arm == "holdout"

    # The report of those three customers, from the rows the workflows stored.
    actions, outcomes = load_rows(engine, "win_back")
    report = journey_report("win_back", actions, outcomes, bundle=bundle)
    assert (report.entered_runs, report.entered_customers, report.recipients) == (6, 3, 2)
    assert (report.converted_customers, report.revenue, report.uncredited_conversions) == (3, {"USD": 240.0}, 1)
    assert report.exits == {"restarted": 3, "completed": 3}
    assert (report.treated.entered_customers, report.holdout.entered_customers) == (2, 1)
    per_step = {group.key: group.sent for group in report.groups if group.sent}
    assert per_step == {"ten_percent_off": 2, "twenty_percent_off": 2}
    assert sum(group.skipped.get("holdout", 0) for group in report.groups) == 2
    by_variant = journey_report("win_back", actions, outcomes, by="variant")
    assert {group.key: group.conversions for group in by_variant.groups if group.conversions} == {
        "ten_percent": 1, "twenty_percent": 1}
    # Three readouts, each honest about three customers: not enough data.
    assert [r.design.experiment for r in report.experiments] == [
        "win_back_holdout", "win_back_discount", "win_back_discount (variants head to head)"]
    assert all(r.verdict.startswith("not enough data") for r in report.experiments)


async def test_a_frequency_cap_holds_across_journeys_in_the_workflow(time_env: WorkflowEnvironment) -> None:
    """Smart sending (one marketing message per 16 hours): the browse nudge waits for the cart email,
    in the workflow exactly as in ``omnicart simulate``."""
    policies = Policies.model_validate({"frequency_caps": [
        {"channel": "sms", "at_most": 2, "per": "7d"},
        {"channel": "any", "at_most": 1, "per": "16h", "when_capped": "hold", "max_hold": "1d"},
    ]})
    cart_journey = flagship().model_copy(update={"policies": policies, "version": "cart-capped"})
    browse_journey = browse().model_copy(update={"policies": policies, "version": "browse-capped"})
    start = aligned_start(await time_env.get_current_time())
    timeline = events("cus_capped", [
        (-DAY, "customer_updated", profile()),
        (timedelta(0), "checkout_started", cart()),
        (30 * timedelta(minutes=1), "product_viewed", {"sku": "SKU-9"}),
    ], start)
    channel = RecordingChannel()
    async with customer_worker(time_env.client, [channel.send_message]) as task_queue:
        lines = await play(time_env, task_queue, [cart_journey, browse_journey], timeline, start + 5 * DAY)
    same(lines, [action.as_json() for action in simulate([cart_journey, browse_journey], timeline)])
    said = [(parse_at(line) - start, line["journey"], describe(line)) for line in lines]
    # The cart email at 1h takes the 16-hour slot; the browse nudge, due at 2h30, holds until 17h.
    assert (HOUR, "abandoned_cart", "send email cart_reminder_1") in said
    assert (2 * HOUR + 30 * timedelta(minutes=1), "browse_abandonment", "hold email browse_email frequency_capped "
            "for 14.5h") in said
    assert (17 * HOUR, "browse_abandonment", "send email browse_email") in said
    # That nudge now holds the cart's SMS (due at 24h) until 33h: nobody hears from us twice in 16 hours.
    assert (24 * HOUR, "abandoned_cart", "hold sms cart_reminder_sms frequency_capped for 9h") in said
    assert (33 * HOUR, "abandoned_cart", "send sms cart_reminder_sms") in said
    sent_at = sorted(parse_at(line) for line in lines if line["action"] == "send")
    assert all(later - earlier >= 16 * HOUR for earlier, later in itertools.pairwise(sent_at))
    assert len(channel.requests) == len(sent_at)
