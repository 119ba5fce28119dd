"""The date-triggers schedule's activities: which queries a window needs, and one page of one query.

Workflow code cannot read a database or signal-with-start, so these do both: an indexed query over
the customer profile projection (``omnicart.customers``) a page at a time (memory bounded by the
page size), the due moment of each customer by the one rule simulate also uses
(``omnicart.engine.date_triggers.dues``), and delivery of each ``date_reached`` event through
``omnicart.routing.deliver`` with its journey attached. Ingest's event log makes a retried page or an
overlapping window forward each event once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from pydantic import SecretStr
from sqlalchemy import Engine
from temporalio import activity
from temporalio.client import Client

from omnicart import date_coverage
from omnicart.api.event_log import EventLog
from omnicart.customers.profiles import CustomerProfile, CustomerProfiles
from omnicart.date_schedule import (
    COVERED_UNTIL_ACTIVITY,
    RECORD_COVERED_ACTIVITY,
    SCHEDULE_ID,
    DateQuery,
    DateWindow,
    DeliveredPage,
    DuePage,
)
from omnicart.engine.date_triggers import Due, date_event, dues, month_days_between
from omnicart.engine.localtime import zone
from omnicart.journey.model import JourneyBundle
from omnicart.pacing import send_queues
from omnicart.routing import deliver
from omnicart.settings import Settings

PLAN_ACTIVITY = "plan_date_queries"
DELIVER_ACTIVITY = "deliver_due_dates"
DAY_SLACK = timedelta(days=1)  # an 'at' time moves a due moment within its local day: ask a day wider


class DateTriggerActivities:
    """Bound to the product database, the published journeys and a Temporal client (to signal)."""

    def __init__(
        self,
        engine: Engine,
        secret: SecretStr,
        client: Client,
        settings: Settings,
        published: Callable[[], Mapping[str, JourneyBundle]],
        *,
        by_reference: bool = True,
    ) -> None:
        self.engine = engine
        self.profiles = CustomerProfiles(engine, secret)
        self.events = EventLog(engine)
        self.client = client
        self.settings = settings
        self.published = published
        self.by_reference = by_reference

    def activities(self) -> list[Callable[..., Any]]:
        """What a worker registers for the date-triggers workflow."""
        return [self.plan_date_queries, self.deliver_due_dates, self.covered_until, self.record_covered]

    @activity.defn(name=COVERED_UNTIL_ACTIVITY)
    async def covered_until(self) -> datetime | None:
        """Where the last finished run's window ended (None before the first)."""
        return date_coverage.covered_until(self.engine, SCHEDULE_ID)

    @activity.defn(name=RECORD_COVERED_ACTIVITY)
    async def record_covered(self, window: DateWindow) -> None:
        """Every due moment up to the window's end was delivered."""
        date_coverage.record_covered(self.engine, SCHEDULE_ID, window.end)

    def _dated(self) -> dict[str, JourneyBundle]:
        return {name: bundle for name, bundle in self.published().items()
                if bundle.journey.enabled and bundle.journey.trigger.is_date}

    @activity.defn(name=PLAN_ACTIVITY)
    async def plan_date_queries(self, window: DateWindow) -> list[DateQuery]:
        """One query per ``after`` journey, one per month-day of the window per ``on_date`` journey."""
        queries: list[DateQuery] = []
        for name, bundle in sorted(self._dated().items()):
            trigger = bundle.journey.trigger
            if trigger.after is not None:
                queries.append(DateQuery(journey=name, kind="after", event_type=trigger.after.event))
            elif trigger.on_date is not None:
                queries.extend(DateQuery(journey=name, kind="on_date", name=trigger.on_date, month_day=month_day)
                               for month_day in month_days_between(window.start, window.end))
        return queries

    @activity.defn(name=DELIVER_ACTIVITY)
    async def deliver_due_dates(self, page: DuePage) -> DeliveredPage:
        """Deliver the ``date_reached`` events due in the window to this page's customers."""
        bundle = self._dated().get(page.query.journey)
        if bundle is None:
            return DeliveredPage(due=0, delivered=0)  # unpublished or paused since the plan: nothing is due
        found = self.find_due(bundle, page)
        events = [date_event(bundle.journey.name, customer_id, due) for customer_id, due in found[0]]
        recorded = self.events.record(events) if events else None
        delivered = 0
        for event in recorded.to_forward if recorded is not None else []:
            activity.heartbeat(event.id)
            await deliver(
                self.client,
                self.settings.task_queue,
                event.customer_id,
                [event],
                lambda _type: [bundle],
                max_history_events=self.settings.max_history_events,
                send_timeout_seconds=self.settings.send_timeout_seconds,
                by_reference=self.by_reference,
                record_analytics=self.settings.record_analytics,
                send_queues=send_queues(self.settings),
            )
            self.events.mark_forwarded([event.id])
            delivered += 1
        return DeliveredPage(due=len(events), delivered=delivered, next_cursor=found[1])

    def find_due(self, bundle: JourneyBundle, page: DuePage) -> tuple[list[tuple[str, Due]], str | None]:
        """The customers of one page with a due moment in the window, and the next page's cursor."""
        journey, query, window = bundle.journey, page.query, page.window
        trigger = journey.trigger
        found: list[tuple[str, Due]] = []

        def consider(profile: CustomerProfile, last_event_at: dict[str, datetime]) -> None:
            if profile.customer_id is None:
                return  # retention cleared an id that was an email or phone: nobody to deliver to
            tz = zone(profile.timezone, journey.default_timezone)
            for due in dues(trigger, tz, window.start, window.end, last_event_at=last_event_at,
                            dates=profile.dates):
                found.append((profile.customer_id, due))

        if query.kind == "after" and trigger.after is not None and query.event_type is not None:
            days = timedelta(days=trigger.after.days)
            result = self.profiles.last_event_between(
                query.event_type, window.start - days - DAY_SLACK, window.end - days + DAY_SLACK,
                page.cursor, page.page_size)
            for profile, last_at in zip(result.customers, result.last_at, strict=True):
                consider(profile, {query.event_type: last_at})
            return found, result.next_cursor
        if query.kind == "on_date" and query.name is not None and query.month_day is not None:
            dated = self.profiles.dates_on(query.name, query.month_day, page.cursor, page.page_size)
            for profile in dated.customers:
                consider(profile, {})
            return found, dated.next_cursor
        return found, None

