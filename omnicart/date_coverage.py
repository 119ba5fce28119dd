"""How far the date-triggers schedule has covered time: where a run after an outage starts.

Each run delivers what fell due in its window. A run that never happened (workers down for a night,
the schedule paused for a deploy) would lose the birthdays of those hours if the next run only
looked back its usual two intervals. So a run that finishes records the end of its window here,
and the next starts from there when that is earlier than its lookback: missed hours are delivered
late rather than never, bounded by ``OMNICART_DATE_TRIGGER_MAX_CATCH_UP_DAYS`` so a schedule
revived after months does not greet everyone with stale messages. Event ids derived from the due
moment make the overlap harmless.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, DateTime, Engine, String, Table, select, update

from omnicart.storage import insert_ignoring_existing, metadata, utc

date_trigger_coverage = Table(
    "date_trigger_coverage",
    metadata,
    Column("schedule_id", String(200), primary_key=True),
    Column("covered_until", DateTime(timezone=True), nullable=False,
           comment="Every due moment up to here was delivered by a finished run."),
)


def covered_until(engine: Engine, schedule_id: str) -> datetime | None:
    """The end of the latest window a run of ``schedule_id`` finished, or None before the first."""
    with engine.connect() as connection:
        found = connection.execute(
            select(date_trigger_coverage.c.covered_until).where(date_trigger_coverage.c.schedule_id == schedule_id)
        ).scalar_one_or_none()
    return None if found is None else utc(found)


def record_covered(engine: Engine, schedule_id: str, until: datetime) -> None:
    """Move the coverage forward to ``until``; never back (an overlapping, older run may finish last)."""
    table = date_trigger_coverage.c
    with engine.begin() as connection:
        connection.execute(insert_ignoring_existing(connection, date_trigger_coverage, "schedule_id"),
                           [{"schedule_id": schedule_id, "covered_until": until}])
        connection.execute(update(date_trigger_coverage)
                           .where(table.schedule_id == schedule_id, table.covered_until < until)
                           .values(covered_until=until))
