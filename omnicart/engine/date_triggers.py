"""When a date-based trigger is due for a customer, and the event that says so.

One pure function decides the due moment from what is known of the customer (the time of their
last event of a type, or a date of their profile, and their time zone). The date-triggers schedule
(``activities/date_triggers.py``) asks it for the customers its indexed query finds, and
``omnicart simulate`` asks it for each customer of a timeline on its virtual clock, so a preview
starts a run at the very moment production does.

What reaches the customer's workflow is an ordinary event, ``date_reached``, whose timestamp is the
due moment (a late schedule still anchors the run's waits there) and whose id is a hash of
(journey, customer, due moment): a schedule run that overlaps the previous one, or runs twice,
names the same event, which ingest's event log and the workflow each accept once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from omnicart.engine.localtime import local_instant
from omnicart.events import Event
from omnicart.journey.durations import parse_local_time
from omnicart.journey.model import DATE_REACHED, Trigger

YEARLY_BY_DEFAULT = ("birthday",)
"""Dates that come round every year unless the trigger says ``yearly: false``."""


@dataclass(frozen=True)
class Due:
    """One moment a date trigger comes due for a customer, and what it was computed from."""

    at: datetime
    anchor: datetime | None = None
    """``after``: the time of the last such event."""
    value: str | None = None
    """``on_date``: the profile's date as stored."""


def dues(
    trigger: Trigger,
    tz: ZoneInfo,
    start: datetime,
    end: datetime,
    *,
    last_event_at: Mapping[str, datetime],
    dates: Mapping[str, str],
) -> list[Due]:
    """Every moment in ``(start, end]`` the trigger comes due for a customer of whom this is known:
    the time of their last event of each type, and their profile's dates. The one rule the schedule
    (from the projection) and ``omnicart simulate`` (from a timeline) both follow."""
    if trigger.after is not None:
        anchor = last_event_at.get(trigger.after.event)
        if anchor is None:
            return []
        due = after_due(trigger, anchor, tz)
        return [Due(due, anchor=anchor)] if start < due <= end else []
    if trigger.on_date is not None:
        value = dates.get(trigger.on_date)
        if value is None:
            return []
        return [Due(at, value=value) for at in date_dues(trigger, value, tz, start, end)]
    return []


def is_yearly(trigger: Trigger, value: str) -> bool:
    """Whether ``on_date`` fires every year: as the trigger says, else for a birthday or a date
    given without a year (``--MM-DD``), else once, on the date itself (a renewal)."""
    if value.startswith("--"):
        return True
    if trigger.yearly is not None:
        return trigger.yearly
    return trigger.on_date in YEARLY_BY_DEFAULT


def after_due(trigger: Trigger, anchor: datetime, tz: ZoneInfo) -> datetime:
    """``after: {event, days}``: the due moment counted from the last such event at ``anchor``.

    Without ``at``, exactly ``days`` later; with it, at that time of the customer's clock on the
    local day the ``days`` end.
    """
    assert trigger.after is not None
    due = anchor + timedelta(days=trigger.after.days)
    if trigger.at is None:
        return due.astimezone(UTC)
    return local_instant(datetime.combine(due.astimezone(tz).date(), parse_local_time(trigger.at)), tz)


def date_dues(trigger: Trigger, value: str, tz: ZoneInfo, start: datetime, end: datetime) -> list[datetime]:
    """``on_date``: each due moment of the profile's date ``value`` in ``(start, end]``.

    A 29 February comes round on 28 February in common years (the customer still hears from us).
    """
    clock = parse_local_time(trigger.at) if trigger.at else time(0, 0)
    if is_yearly(trigger, value):
        month, day = int(value[-5:-3]), int(value[-2:])
        years = range(start.astimezone(tz).year - 1, end.astimezone(tz).year + 2)
        days = [_on(year, month, day) for year in years]
    else:
        days = [date.fromisoformat(value)]
    dues = [local_instant(datetime.combine(day, clock), tz) for day in days]
    return [due for due in dues if start < due <= end]


def month_days_between(start: datetime, end: datetime) -> list[str]:
    """Every ``MM-DD`` some time zone's calendar shows in ``(start, end]``: the dates an indexed
    query must ask for (with 02-29 alongside 02-28, for birthdays on a leap day)."""
    first = (start - timedelta(hours=14)).date()
    last = (end + timedelta(hours=14)).date()
    found: list[str] = []
    day = first
    while day <= last:
        found.append(day.strftime("%m-%d"))
        if day.month == 2 and day.day == 28:
            found.append("02-29")
        day += timedelta(days=1)
    return list(dict.fromkeys(found))


def occurrence_id(journey: str, customer_id: str, due: datetime) -> str:
    """The ``date_reached`` event's id: the same for the same (journey, customer, due moment)."""
    digest = hashlib.sha256("\x1f".join((journey, customer_id, due.astimezone(UTC).isoformat())).encode())
    return f"date_{digest.hexdigest()[:32]}"


def date_event(journey: str, customer_id: str, due: Due) -> Event:
    """The ``date_reached`` event that starts ``journey`` for this customer at ``due.at``."""
    properties: dict[str, str] = {"journey": journey, "due_at": due.at.astimezone(UTC).isoformat()}
    if due.anchor is not None:
        properties["anchor"] = due.anchor.astimezone(UTC).isoformat()
    if due.value is not None:
        properties["date"] = due.value
    return Event(id=occurrence_id(journey, customer_id, due.at), type=DATE_REACHED, customer_id=customer_id,
                 timestamp=due.at, source="api", properties=properties)


def _on(year: int, month: int, day: int) -> date:
    if month == 2 and day == 29 and not _leap(year):
        return date(year, 2, 28)
    return date(year, month, day)


def _leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
