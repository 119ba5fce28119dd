"""Durations and local times as marketers write them: ``90m``, ``1h30m``, ``3d``, ``09:00``."""

from __future__ import annotations

import re
from datetime import time, timedelta
from functools import lru_cache

DURATION = re.compile(r"^(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
DURATION_PATTERN = r"^(\d+w)?(\d+d)?(\d+h)?(\d+m)?(\d+s)?$"
LOCAL_TIME_PATTERN = r"^([01]\d|2[0-3]):[0-5]\d$"


class DurationError(ValueError):
    """A duration or time of day that cannot be read."""


@lru_cache(maxsize=1024)
def parse_duration(text: str) -> timedelta:
    """Read ``1w2d3h4m5s`` (any subset, in that order) as a timedelta.

    The units are the ones marketers use in every journey tool; there is deliberately no month or
    year, whose length depends on the calendar.
    """
    match = DURATION.match(text.strip()) if text else None
    if not match or not any(match.groups()):
        raise DurationError(f"bad duration {text!r}: write it like 30m, 1h, 1h30m, 2d or 1w")
    weeks, days, hours, minutes, seconds = (int(part or 0) for part in match.groups())
    value = timedelta(weeks=weeks, days=days, hours=hours, minutes=minutes, seconds=seconds)
    if value <= timedelta(0):
        raise DurationError(f"bad duration {text!r}: it must be longer than zero")
    return value


@lru_cache(maxsize=256)
def parse_local_time(text: str) -> time:
    """Read a 24-hour ``HH:MM`` time of day."""
    if not re.match(LOCAL_TIME_PATTERN, text or ""):
        raise DurationError(f"bad time of day {text!r}: write it as 24-hour HH:MM, like 09:00 or 21:30")
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))
