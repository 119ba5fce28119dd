"""The log of accepted event ids: what makes "the same id sent again is ignored" hold across requests.

An event is *recorded* before it is forwarded to Temporal and marked *forwarded* once its
customer's workflow has it. That split is what lets an outage lose nothing: an event recorded while
Temporal was unreachable (the producer was told ``503``) is still unforwarded, so when the producer
sends it again it is forwarded then, not mistaken for a duplicate. Only a forwarded id is a
duplicate. The customer workflow dedupes by id as well, so forwarding twice (two API processes
racing on one id) is harmless; this log is what keeps the common case cheap and the counts honest.

The table holds ids, type and times only: never properties, so no personal data lands here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Engine,
    Row,
    String,
    Table,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from omnicart.events import Event
from omnicart.storage import in_chunks, metadata, utc

# SQLite allows 999 bound parameters per statement in old builds; stay well below it.
_INSERT_ATTEMPTS = 3

ingested_events = Table(
    "ingested_events",
    metadata,
    Column("event_id", String(200), primary_key=True),
    Column("customer_id", String(200), nullable=False, index=True),
    Column("type", String(100), nullable=False),
    Column("timestamp", DateTime(timezone=True), nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("forwarded", Boolean, nullable=False, default=False),
)


@dataclass(frozen=True)
class LoggedEvent:
    """One row of the log, as the API and operators see it."""

    event_id: str
    customer_id: str
    type: str
    timestamp: datetime
    received_at: datetime
    forwarded: bool


@dataclass(frozen=True)
class Recorded:
    """The outcome of recording a batch of distinct events.

    ``to_forward`` keeps the order the events were given in: new events and events recorded
    earlier but never forwarded. ``duplicates`` are ids already forwarded: ignored.
    """

    to_forward: list[Event]
    duplicates: list[str]


class EventLog:
    """Accepted event ids in the product database (``omnicart.storage``), shared by every API process."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def record(self, events: Sequence[Event], received_at: datetime | None = None) -> Recorded:
        """Record the events not seen before and say which ones still have to be forwarded.

        ``events`` must have distinct ids (the caller folds in-batch duplicates). All new rows go
        in one transaction; if another process inserts one of the ids at the same moment the
        transaction fails on the primary key and is retried, and then sees that process's row.
        """
        received = received_at or datetime.now(UTC)
        for attempt in range(_INSERT_ATTEMPTS):
            try:
                return self._record_once(events, received)
            except IntegrityError:
                if attempt == _INSERT_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _record_once(self, events: Sequence[Event], received_at: datetime) -> Recorded:
        ids = [event.id for event in events]
        with self.engine.begin() as connection:
            known: dict[str, bool] = {}
            for chunk in in_chunks(ids):
                rows = connection.execute(
                    select(ingested_events.c.event_id, ingested_events.c.forwarded).where(
                        ingested_events.c.event_id.in_(chunk)
                    )
                )
                known.update({row.event_id: bool(row.forwarded) for row in rows})
            # Inserted in id order: two processes recording overlapping batches on PostgreSQL then
            # wait on the first shared id instead of each holding one the other needs (deadlock).
            new = sorted((event for event in events if event.id not in known), key=lambda event: event.id)
            if new:
                connection.execute(
                    ingested_events.insert(),
                    [
                        {
                            "event_id": event.id,
                            "customer_id": event.customer_id,
                            "type": event.type,
                            "timestamp": event.timestamp.astimezone(UTC),
                            "received_at": received_at,
                            "forwarded": False,
                        }
                        for event in new
                    ],
                )
        return Recorded(
            to_forward=[event for event in events if not known.get(event.id, False)],
            duplicates=[event.id for event in events if known.get(event.id, False)],
        )

    def mark_forwarded(self, event_ids: Sequence[str]) -> None:
        """Note that these events reached their customers' workflows: from now on they are duplicates."""
        if not event_ids:
            return
        with self.engine.begin() as connection:
            # In id order, like the inserts: two processes marking overlapping batches lock rows in
            # the same order, so neither waits on a row the other holds while holding one it needs.
            for chunk in in_chunks(sorted(set(event_ids))):
                connection.execute(
                    update(ingested_events).where(ingested_events.c.event_id.in_(chunk)).values(forwarded=True)
                )

    def get(self, event_id: str) -> LoggedEvent | None:
        """The row for one id, or None when it was never accepted (for operators and tests)."""
        with self.engine.connect() as connection:
            row = connection.execute(select(ingested_events).where(ingested_events.c.event_id == event_id)).first()
        return None if row is None else _logged(row)

    def unforwarded(self, limit: int = 100) -> list[LoggedEvent]:
        """Events recorded but not yet forwarded: what an outage left waiting for the producer's retry."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(ingested_events)
                .where(ingested_events.c.forwarded.is_(False))
                .order_by(ingested_events.c.received_at)
                .limit(limit)
            ).all()
        return [_logged(row) for row in rows]


def _logged(row: Row[Any]) -> LoggedEvent:
    return LoggedEvent(
        event_id=row.event_id,
        customer_id=row.customer_id,
        type=row.type,
        timestamp=utc(row.timestamp),
        received_at=utc(row.received_at),
        forwarded=bool(row.forwarded),
    )

