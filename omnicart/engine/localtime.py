"""Wall-clock arithmetic in the customer's own time zone.

Durations (``wait: 1h``) are elapsed time and need none of this. A time of day (``until: "09:00"``)
and quiet hours follow the customer's wall clock, so they are computed on local calendar dates with
``zoneinfo``: across a daylight-saving change, "09:00 tomorrow" is 23 or 25 hours away, not 24.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


@lru_cache(maxsize=512)
def zone(name: str | None, fallback: str = "UTC") -> ZoneInfo:
    """The customer's zone, or the journey's fallback when it is unknown or not a real zone."""
    for candidate in (name, fallback, "UTC"):
        if candidate:
            try:
                return ZoneInfo(candidate)
            except (ZoneInfoNotFoundError, ValueError):
                continue
    return ZoneInfo("UTC")


def next_local_time(at: datetime, tz: ZoneInfo, clock: time) -> datetime:
    """The first instant at or after ``at`` when the local clock in ``tz`` shows ``clock`` (in UTC).

    A time skipped by a spring-forward change resolves to the instant just after the gap.
    """
    local = at.astimezone(tz)
    for days in range(3):
        day = local.date() + timedelta(days=days)
        candidate = local_instant(datetime.combine(day, clock), tz)
        if candidate >= at:
            return candidate
    raise AssertionError("unreachable: a clock time recurs within two local days")  # pragma: no cover


def quiet_until(at: datetime, tz: ZoneInfo, start: time, end: time) -> datetime | None:
    """When the quiet window that contains ``at`` ends, or None when ``at`` is not quiet.

    The window is [start, end) on the local clock and may wrap midnight (21:00-09:00).
    """
    now = at.astimezone(tz).time()
    if start == end:
        return None
    quiet = (start <= now < end) if start < end else (now >= start or now < end)
    return next_local_time(at, tz, end) if quiet else None


def local_instant(naive_local: datetime, tz: ZoneInfo) -> datetime:
    """A naive local wall time as a UTC instant, moving a non-existent (skipped) time forward."""
    aware = naive_local.replace(tzinfo=tz)
    as_utc = aware.astimezone(UTC)
    if as_utc.astimezone(tz).replace(tzinfo=None) != naive_local:
        # In a spring-forward gap: the wall time never happens; take the end of the gap.
        after = (naive_local + timedelta(hours=1)).replace(tzinfo=tz).astimezone(UTC)
        return after.astimezone(tz).replace(minute=0, second=0, microsecond=0).astimezone(UTC)
    return as_utc
