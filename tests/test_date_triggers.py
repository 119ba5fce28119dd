"""Date-based triggers: the schedule's workflow on the time-skipping server, the projection it reads,
the customer workflows it starts, and ``omnicart simulate`` agreeing with them.

The schedule itself is a Temporal Schedule (hourly); here each of its runs is started by hand at the
virtual time it would fire, which the time-skipping server allows and a schedule there does not.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.date_triggers import DateTriggerActivities
from omnicart.customers.profiles import CustomerProfiles
from omnicart.customers.projection import ProfileProjection
from omnicart.date_schedule import DateTriggersInput, DateTriggersResult
from omnicart.engine import date_triggers
from omnicart.events import Event
from omnicart.journey.loader import JourneyError, load_journey
from omnicart.journey.model import JourneyBundle
from omnicart.journey.registry import JourneyRegistry
from omnicart.quarantine import QuarantineLog
from omnicart.settings import get_settings
from omnicart.simulate import simulate, timeline_event
from omnicart.storage import get_engine, upgrade
from tests.support.bundles import JOURNEYS
from tests.support.runtime import RecordingChannel, customer_worker, journal, parse_at, send_event
from tests.support.timelines import DAY, HOUR, describe, profile
from workflows.date_triggers import DateTriggersWorkflow

SLACK = timedelta(seconds=5)


def win_back() -> JourneyBundle:
    return load_journey(JOURNEYS / "win_back.yaml")


def birthday() -> JourneyBundle:
    return load_journey(JOURNEYS / "birthday.yaml")


def event(customer_id: str, kind: str, at: datetime, properties: dict[str, Any]) -> Event:
    return timeline_event({"id": f"{customer_id}-{kind}-{at.isoformat()}", "type": kind, "customer_id": customer_id,
                           "timestamp": at.isoformat(), "source": "web", "properties": properties})


def order(number: int) -> dict[str, Any]:
    return {"order_id": f"order_{number}", "total": 40.0, "currency": "USD"}


class Shop:
    """The product database (projection, registry, event log), a customer worker and a date worker."""

    def __init__(self, env: WorkflowEnvironment, tmp_path: Path, bundles: list[JourneyBundle]) -> None:
        url = f"sqlite:///{tmp_path / 'product.db'}"
        upgrade(url)
        self.env = env
        self.engine = get_engine(url)
        self.bundles = bundles
        JourneyRegistry(self.engine).publish(bundles, "test")
        self.projection = ProfileProjection(self.engine, get_settings().signing_secret)
        self.channel = RecordingChannel()
        self.task_queue = ""

    def published(self) -> Mapping[str, JourneyBundle]:
        return {bundle.journey.name: bundle for bundle in self.bundles}

    async def ingest(self, *events: Event) -> None:
        """What the API does with an event: the projection learns it, the workflow gets it."""
        self.projection.record(list(events))
        for item in events:
            await send_event(self.env.client, self.task_queue, item, self.bundles)

    async def schedule_fires(self, date_queue: str, max_catch_up: timedelta = 3 * DAY) -> DateTriggersResult:
        """One run of the hourly schedule, now (the virtual clock stands still meanwhile)."""
        with self.env.auto_time_skipping_disabled():
            return await self.env.client.execute_workflow(
                DateTriggersWorkflow.run,
                DateTriggersInput(lookback_seconds=2 * 3600, page_size=2,
                                  max_catch_up_seconds=max_catch_up.total_seconds()),
                id=f"date-triggers-{uuid.uuid4()}", task_queue=date_queue)

    async def until(self, moment: datetime) -> None:
        wait = moment - await self.env.get_current_time()
        if wait > timedelta(0):
            await self.env.sleep(wait)


@asynccontextmanager
async def running(shop: Shop) -> AsyncIterator[str]:
    """Both workers; yields the date-triggers task queue (the customer queue is ``shop.task_queue``)."""
    client: Client = shop.env.client
    async with customer_worker(client, [shop.channel.send_message], QuarantineLog(shop.engine)) as task_queue:
        shop.task_queue = task_queue
        settings = get_settings().model_copy(update={"task_queue": task_queue})
        dates = DateTriggerActivities(shop.engine, settings.signing_secret, client, settings, shop.published)
        date_queue = f"dates-{uuid.uuid4()}"
        async with Worker(client, task_queue=date_queue, workflows=[DateTriggersWorkflow],
                          activities=dates.activities()):
            yield date_queue


async def lines(client: Client, customer_id: str) -> list[str]:
    try:
        return [f"{line['journey']} {describe(line)}" for line in await journal(client, customer_id)]
    except Exception:
        return []  # no workflow: the customer never heard from us


async def test_a_win_back_published_today_reaches_existing_customers_once_and_restarts_on_a_new_order(
    time_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    shop = Shop(time_env, tmp_path, [win_back()])
    async with running(shop) as date_queue:
        t0 = (await time_env.get_current_time()).replace(minute=0, second=0, microsecond=0) + HOUR
        await shop.until(t0)
        # Customers who ordered before the journey existed; the projection knows them, their
        # workflows have long been idle. Five of them, so the schedule's query takes three pages.
        for number in range(1, 6):
            await shop.ingest(event(f"cus_{number}", "customer_updated", t0 - 80 * DAY, profile()),
                              event(f"cus_{number}", "order_placed", t0 - 59 * DAY, order(number)))
        await shop.ingest(event("cus_lapsed_long_ago", "order_placed", t0 - 200 * DAY, order(9)))
        # cus_2 orders again today: the clock restarts, tomorrow is no longer its day.
        await shop.ingest(event("cus_2", "order_placed", t0 + 2 * HOUR, order(22)))
        # cus_3's new order reaches its workflow but not the projection (a missed update): the
        # schedule still thinks it is due tomorrow, and the workflow must refuse the stale date.
        await send_event(time_env.client, shop.task_queue, event("cus_3", "order_placed", t0 + 3 * HOUR, order(33)),
                         shop.bundles)

        today = await shop.schedule_fires(date_queue)
        assert (today.due, today.delivered) == (0, 0)  # nobody is due yet: 59 days is not 60

        await shop.until(t0 + DAY + 30 * timedelta(minutes=1))
        tomorrow = await shop.schedule_fires(date_queue)
        assert (tomorrow.due, tomorrow.delivered) == (4, 4)  # cus_1, 3, 4, 5 (cus_3's is stale)
        again = await shop.schedule_fires(date_queue)  # an overlapping run, or the same run retried
        assert (again.due, again.delivered) == (4, 0)

        for customer_id in ("cus_1", "cus_4", "cus_5"):
            said = await lines(time_env.client, customer_id)
            assert said.count("win_back enter") == 1, (customer_id, said)
            assert any(line.startswith("win_back send email win_back_") or line == "win_back skip email "
                       "win_back_10 holdout" or line == "win_back skip email win_back_20 holdout" for line in said)
        assert "win_back enter" not in await lines(time_env.client, "cus_2")
        assert "win_back enter" not in await lines(time_env.client, "cus_3")
        assert await lines(time_env.client, "cus_lapsed_long_ago") == []

        # The run started at its due moment (60 days after the order), not when the schedule ran.
        entered = [line for line in await journal(time_env.client, "cus_1") if line["action"] == "enter"]
        assert timedelta(0) <= parse_at(entered[0]) - (t0 + DAY) <= 31 * timedelta(minutes=1)

        # cus_2's 60 days count from today's order: it is reached then, once.
        await shop.until(t0 + 60 * DAY + 2 * HOUR + 30 * timedelta(minutes=1))
        later = await shop.schedule_fires(date_queue)
        assert later.delivered == 1
        assert (await lines(time_env.client, "cus_2")).count("win_back enter") == 1

        # The run's waits counted from its due moment, not from when the schedule ran: the offer's
        # two weeks ended exactly 15 days after the day it was due.
        [completed] = [line for line in await journal(time_env.client, "cus_1") if line["action"] == "exit"]
        assert (describe(completed), parse_at(completed)) == ("exit completed", t0 + DAY + 14 * DAY)

        # A new order in the offer's two weeks converts, and ends the run (restarted): the clock starts again.
        await shop.until(t0 + 62 * DAY)
        await shop.ingest(event("cus_2", "order_placed", t0 + 62 * DAY, order(23)))
        said = await lines(time_env.client, "cus_2")
        assert "win_back exit restarted" in said
        assert any(line.startswith("win_back convert 40.0 USD") for line in said)


async def test_a_birthday_email_goes_at_ten_in_the_customers_zone_as_simulate_says(
    time_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    bundle = birthday()
    shop = Shop(time_env, tmp_path, [bundle])
    tokyo = ZoneInfo("Asia/Tokyo")
    async with running(shop) as date_queue:
        start = (await time_env.get_current_time()).replace(minute=0, second=0, microsecond=0) + HOUR
        await shop.until(start)
        birthday_day = (start + 2 * DAY).astimezone(tokyo).date()
        facts = event("cus_tomo", "customer_updated", start,
                      {**profile(sms=False, timezone="Asia/Tokyo"), "birthday": f"1990-{birthday_day:%m-%d}"})
        await shop.ingest(facts)
        # The schedule, every hour for three days.
        fired_at: list[datetime] = []
        for hour in range(1, 3 * 24):
            await shop.until(start + hour * HOUR + timedelta(seconds=1))
            if (await shop.schedule_fires(date_queue)).delivered:
                fired_at.append(await time_env.get_current_time())
        ten_local = datetime(birthday_day.year, birthday_day.month, birthday_day.day, 10, tzinfo=tokyo).astimezone(UTC)
        assert len(fired_at) == 1 and timedelta(0) <= fired_at[0] - ten_local <= HOUR + SLACK
        actual = await journal(time_env.client, "cus_tomo")

    expected = [action.as_json() for action in simulate(bundle, [facts])]
    assert [describe(line) for line in expected] == ["enter", "send email birthday_gift", "exit completed"]
    assert [parse_at(line) for line in expected] == [ten_local] * 3
    assert [describe(line) for line in actual] == [describe(line) for line in expected]
    for got, want in zip(actual, expected, strict=True):
        assert timedelta(0) <= parse_at(got) - parse_at(want) <= HOUR + SLACK  # the hourly schedule's latency
    assert [request.template_name for request in shop.channel.requests] == ["birthday_gift"]


async def test_birthdays_an_outage_skipped_go_out_late_when_the_schedule_is_back_within_its_bound(
    time_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    """Workers down for a night: the next run reaches back to where the last finished run stopped,
    not just its two-hour lookback; a gap longer than the catch-up bound is not delivered stale."""
    shop = Shop(time_env, tmp_path, [birthday()])
    async with running(shop) as date_queue:
        now = await time_env.get_current_time()
        start = now.replace(hour=0, minute=0, second=0, microsecond=0) + DAY  # midnight UTC
        await shop.until(start)
        for customer_id, day in (("cus_caught_up", start), ("cus_too_late", start + 3 * DAY)):
            facts = {**profile(sms=False, timezone="UTC"), "birthday": f"1990-{day:%m-%d}"}
            await shop.ingest(event(customer_id, "customer_updated", start - DAY, facts))
        assert (await shop.schedule_fires(date_queue)).due == 0  # midnight: the coverage starts here

        # The outage: no run from 00:00 to 15:00; cus_caught_up's 10:00 email fell inside it.
        await shop.until(start + 15 * HOUR)
        back = await shop.schedule_fires(date_queue)
        assert back.delivered == 1 and timedelta(0) <= back.window.start - start <= SLACK
        for _ in range(100):  # the customer's workflow sends on its own, moments after the signal
            if shop.channel.requests:
                break
            await asyncio.sleep(0.1)
        assert [request.template_name for request in shop.channel.requests] == ["birthday_gift"]
        late = [line for line in await journal(time_env.client, "cus_caught_up") if line["action"] == "send"]
        assert timedelta(0) <= parse_at(late[0]) - (start + 15 * HOUR) <= SLACK  # late, but sent

        # Three days on, a 40-hour outage with a 24-hour bound: cus_too_late's day (10:00 on day 3,
        # 34 hours before the run) is beyond the bound, so it is not sent stale a day later.
        await shop.until(start + 2 * DAY)
        assert (await shop.schedule_fires(date_queue)).delivered == 0
        await shop.until(start + 3 * DAY + 40 * HOUR)
        bounded = await shop.schedule_fires(date_queue, max_catch_up=DAY)
        assert timedelta(0) <= bounded.window.start - (start + 3 * DAY + 16 * HOUR) <= SLACK
        assert bounded.delivered == 0
        assert await lines(time_env.client, "cus_too_late") == []


def test_due_moments_follow_the_customers_clock_and_the_calendar() -> None:
    journey = birthday().journey
    tokyo, new_york = ZoneInfo("Asia/Tokyo"), ZoneInfo("America/New_York")
    year = (datetime(2027, 1, 1, tzinfo=UTC), datetime(2028, 1, 1, tzinfo=UTC))
    # 10:00 on the day, in each zone: the same birthday is due 14 hours apart.
    assert date_triggers.date_dues(journey.trigger, "--06-14", tokyo, *year) == [datetime(2027, 6, 14, 1, tzinfo=UTC)]
    assert date_triggers.date_dues(journey.trigger, "1990-06-14", new_york, *year) == [
        datetime(2027, 6, 14, 14, tzinfo=UTC)]
    # A leap-day birthday comes round on 28 February in a common year.
    leap_day = date_triggers.date_dues(journey.trigger, "2000-02-29", tokyo, *year)
    assert leap_day == [datetime(2027, 2, 28, 1, tzinfo=UTC)]
    # A renewal date (not yearly) is due once, on that date.
    renewal = journey.trigger.model_copy(update={"on_date": "subscription_renews_on"})
    assert date_triggers.date_dues(renewal, "2026-06-14", tokyo, *year) == []
    assert date_triggers.date_dues(renewal, "2027-03-01", tokyo, *year) == [datetime(2027, 3, 1, 1, tzinfo=UTC)]
    # 60 days after the last order, to the second; the queries ask for every calendar day in any zone.
    ordered = datetime(2027, 1, 1, 12, tzinfo=UTC)
    assert date_triggers.after_due(win_back().journey.trigger, ordered, tokyo) == ordered + 60 * DAY
    an_hour = (datetime(2027, 2, 28, 11, tzinfo=UTC), datetime(2027, 2, 28, 12, tzinfo=UTC))
    assert date_triggers.month_days_between(*an_hour) == ["02-27", "02-28", "02-29", "03-01"]


@pytest.mark.parametrize(("trigger", "message"), [
    ("{event: order_placed, after: {event: order_placed, days: 60}}",
     "exactly one of event, after or on_date (found: event, after)"),
    ("{on_date: birthday, key: cart_id}", "a date trigger has no 'key'"),
    ("{event: order_placed, at: '10:00'}", "'at' and 'yearly' belong to a date trigger"),
    ("{after: {event: order_placed, days: 0}}", "'days' must be at least 1, not 0"),
    ("{after: {event: ordr_placed, days: 60}}", "unknown event type 'ordr_placed' — did you mean 'order_placed'?"),
    ("{on_date: birthday, at: '25:00'}", "bad time of day '25:00'"),
])
def test_a_bad_date_trigger_is_an_error_at_its_place(tmp_path: Path, trigger: str, message: str) -> None:
    source = (JOURNEYS / "birthday.yaml").read_text()
    start = source.index("trigger:")
    end = source.index("goal:")
    (tmp_path / "templates").mkdir()
    for template in (JOURNEYS / "templates").iterdir():
        (tmp_path / "templates" / template.name).write_text(template.read_text())
    path = tmp_path / "birthday.yaml"
    path.write_text(source[:start] + f"trigger: {trigger}\n\n" + source[end:])
    line = source[:start].count("\n") + 1
    with pytest.raises(JourneyError) as caught:
        load_journey(path)
    problems = [str(problem) for problem in caught.value.problems]
    assert any(message in problem and f"birthday.yaml:{line}:" in problem for problem in problems), problems


def test_the_projection_keeps_each_customers_latest_event_per_type_in_any_order(database: str) -> None:
    """What the schedule's ``after`` query reads, on SQLite and PostgreSQL: the latest order of
    each customer whatever the arrival order, found by time range a page at a time."""
    engine = get_engine(database)
    secret = get_settings().signing_secret
    projection, profiles = ProfileProjection(engine, secret), CustomerProfiles(engine, secret)
    base = datetime(2027, 1, 1, tzinfo=UTC)
    newer = [event(f"cus_{n}", "order_placed", base + n * HOUR, order(n)) for n in range(5)]
    older = [event(f"cus_{n}", "order_placed", base - DAY, order(10 + n)) for n in range(5)]
    projection.record(newer[:3])
    projection.record(older + newer[3:])  # an older order arriving later does not move the clock back
    projection.record(newer)  # and applying events again changes nothing
    projection.record([date_triggers.date_event("win_back", "cus_0", date_triggers.Due(base + 60 * DAY))])

    found: list[tuple[str | None, datetime]] = []
    cursor = None
    while True:
        page = profiles.last_event_between("order_placed", base - HOUR, base + 3 * HOUR, cursor, limit=2)
        found += [(profile.customer_id, at) for profile, at in zip(page.customers, page.last_at, strict=True)]
        if (cursor := page.next_cursor) is None:
            break
    assert found == [(f"cus_{n}", base + n * HOUR) for n in range(4)]  # (start, end]: cus_4 is later
    assert profiles.last_event_between("date_reached", base, base + 90 * DAY).customers == []
