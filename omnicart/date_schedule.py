"""The date-triggers schedule: its contract, and how every worker (``omnicart dev`` included) sets it up.

Journeys that start on time (``after: {event, days}``, ``on_date``) must reach customers who send
no event at that moment, including every existing customer when such a journey is published. So a
Temporal Schedule starts ``DateTriggersWorkflow`` every ``interval`` (an hour by default); it looks
back ``lookback`` (two intervals: a run that is late, or skipped while the previous one still
worked, is covered by the next) and asks activities to page through the customer profile
projection for the customers due in that window (indexed queries, a page at a time), delivering each
one ``date_reached`` event. Windows overlap on purpose: the event's id is derived from (journey,
customer, due moment), and ingest's event log forwards an id once. A finished run records how far
it covered (``omnicart.date_coverage``); the next starts there when that is further back than its
lookback, so hours when no run happened (an outage) are delivered late, up to ``max_catch_up``.

The models here are what the workflow and the activities exchange: pure, so the workflow sandbox
lets them through.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleUpdate,
)

DATE_TRIGGERS_WORKFLOW = "DateTriggersWorkflow"
SCHEDULE_ID = "omnicart-date-triggers"
WORKFLOW_ID = "omnicart/date-triggers"
DEFAULT_INTERVAL = timedelta(hours=1)
DEFAULT_MAX_CATCH_UP = timedelta(days=3)
PAGE_SIZE = 500
CATCH_UP_PATCH = "date-triggers-catch-up"
COVERED_UNTIL_ACTIVITY = "date_triggers_covered_until"
RECORD_COVERED_ACTIVITY = "record_date_triggers_covered"


class DateQuery(BaseModel):
    """One indexed question to the projection: customers whose last ``event`` fell in a range
    (``after``), or whose date ``name`` falls on ``month_day`` (``on_date``)."""

    journey: str
    kind: Literal["after", "on_date"]
    event_type: str | None = None
    name: str | None = None
    month_day: str | None = None


class DateWindow(BaseModel):
    """Due moments in ``(start, end]`` are this run's to deliver."""

    start: datetime
    end: datetime


class DuePage(BaseModel):
    """One page of one query: deliver what is due in it, and say where the next page starts."""

    query: DateQuery
    window: DateWindow
    cursor: str | None = None
    page_size: int = PAGE_SIZE


class DeliveredPage(BaseModel):
    due: int
    """Customers of this page with a due moment in the window."""
    delivered: int
    """Of those, the events forwarded now (not already by an earlier, overlapping run)."""
    next_cursor: str | None = None


class DateTriggersInput(BaseModel):
    """What a run works on; ``window`` and the rest are set when it continues as new."""

    lookback_seconds: float = 2 * DEFAULT_INTERVAL.total_seconds()
    max_catch_up_seconds: float = DEFAULT_MAX_CATCH_UP.total_seconds()
    page_size: int = PAGE_SIZE
    window: DateWindow | None = None
    queries: list[DateQuery] | None = None
    next_query: int = 0
    cursor: str | None = None
    due: int = 0
    delivered: int = 0


class DateTriggersResult(BaseModel):
    window: DateWindow
    queries: int
    due: int
    delivered: int


async def ensure_schedule(
    client: Client,
    task_queue: str,
    interval: timedelta = DEFAULT_INTERVAL,
    max_catch_up: timedelta = DEFAULT_MAX_CATCH_UP,
) -> None:
    """Create the date-triggers schedule, or update it to this interval and task queue (idempotent:
    every worker calls it when it starts, so the schedule follows the deployed interval and task queue)."""
    schedule = Schedule(
        action=ScheduleActionStartWorkflow(
            DATE_TRIGGERS_WORKFLOW,
            DateTriggersInput(lookback_seconds=2 * interval.total_seconds(),
                              max_catch_up_seconds=max_catch_up.total_seconds()),
            id=WORKFLOW_ID,
            task_queue=task_queue,
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=interval)]),
        # A run still working when the next is due: skip it, the next window's lookback covers it.
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP, catchup_window=interval),
    )
    try:
        await client.create_schedule(SCHEDULE_ID, schedule)
    except ScheduleAlreadyRunningError:
        await client.get_schedule_handle(SCHEDULE_ID).update(lambda _: ScheduleUpdate(schedule=schedule))
