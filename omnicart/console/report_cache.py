"""The analytics reports the console shows, kept for a short while.

A journey's report reads every row of the runs that entered in the period: for a month of 10,000
customers that is tens of thousands of rows, seconds of work, far over a page's budget. The console
therefore serves each (journey, period) report from memory for ``max_age`` seconds and computes the
default period of every published journey ahead of time (``warm``), so the pages a marketer opens
first answer at once; a page says when its numbers were computed. A stale report is served while a
fresh one is computed in the background, so only a period nobody asked for yet waits for the database.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine

from omnicart.analytics.report import JourneyReport, stored_journey_report

Key = tuple[str, datetime, datetime]


@dataclass(frozen=True)
class CachedReport:
    report: JourneyReport | None
    computed_at: datetime
    monotonic: float


class ReportCache:
    """Reports by (journey, since, until): fresh for ``max_age`` seconds, then refreshed behind the page."""

    def __init__(self, engine: Engine, max_age: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.engine = engine
        self.max_age = max_age
        self._clock = clock
        self._reports: dict[Key, CachedReport] = {}
        self._refreshing: set[Key] = set()
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="console-reports")

    def get(self, journey: str, since: datetime, until: datetime) -> CachedReport:
        """The report, computed now only if this period was never asked for."""
        key = (journey, since, until)
        with self._lock:
            cached = self._reports.get(key)
            stale = cached is not None and self._clock() - cached.monotonic >= self.max_age
            if stale and key not in self._refreshing:
                self._refreshing.add(key)
                self._pool.submit(self._compute, key)
        return cached if cached is not None else self._compute(key)

    def warm(self, journeys: list[str], since: datetime, until: datetime) -> None:
        """Compute these journeys' reports for the period in the background (the default period, at start)."""
        for journey in journeys:
            key = (journey, since, until)
            with self._lock:
                if key in self._reports or key in self._refreshing:
                    continue
                self._refreshing.add(key)
            self._pool.submit(self._compute, key)

    def _compute(self, key: Key) -> CachedReport:
        journey, since, until = key
        try:
            report = stored_journey_report(self.engine, journey, since=since, until=until)
            cached = CachedReport(report, datetime.now(UTC), self._clock())
            with self._lock:
                self._reports[key] = cached
            return cached
        finally:
            with self._lock:
                self._refreshing.discard(key)
