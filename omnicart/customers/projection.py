"""Writing the customer profile projection from the events the ingest API forwards.

The rules are the workflow's own (``omnicart.engine.interpreter._learn``): each field (email, phone,
locale, time zone, each channel's consent, each named date) is last-writer-wins by *event* time,
with a tie going to the event applied later, so a late, older update cannot undo a newer one and
the same event applied twice changes nothing. First seen, last event and last order are the
minimum / maximum of event times. Both make the outcome independent of which API process applies
which request first.

One transaction per request. Two API processes updating the same customers at once stay correct
because every writer first inserts the missing rows (``ON CONFLICT DO NOTHING``) and then locks the
rows it merges into (``SELECT ... FOR UPDATE``; on SQLite the insert already holds the database's
write lock), always in reference order, so they wait for each other and never deadlock.

Nothing here may fail ingest: :meth:`ProfileProjection.record_quietly` logs and counts a failure
and carries on. The copy is best-effort and heals as later events restate the fields.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import SecretStr
from sqlalchemy import Connection, Engine, bindparam, select, update
from temporalio.common import MetricCounter, MetricMeter

from omnicart.customers.dates import CustomerDate, dates_in
from omnicart.customers.profiles import (
    contact_hash,
    customer_dates,
    customer_last_events,
    customer_profiles,
    normalised_email,
)
from omnicart.events import CHANNELS, Event
from omnicart.journey.model import DATE_REACHED
from omnicart.routing import customer_workflow_id
from omnicart.security.pseudonym import customer_ref
from omnicart.storage import in_chunks, insert_ignoring_existing, update_rows, utc

logger = logging.getLogger(__name__)

_PLAIN_FIELDS = ("email", "phone", "locale", "timezone")


@dataclass
class _Draft:
    """One customer's row and dates while a batch is merged into them."""

    row: dict[str, Any]
    dates: dict[str, dict[str, Any]]
    changed_dates: set[str] = field(default_factory=set)


class ProfileProjection:
    """Applies forwarded events to the projection; shared by every request of one API process."""

    def __init__(self, engine: Engine, secret: SecretStr, meter: MetricMeter | None = None) -> None:
        self.engine = engine
        self.secret = secret
        self.failures = 0
        self._failure_counter: MetricCounter | None = (
            None
            if meter is None
            else meter.create_counter(
                "omnicart_profile_update_failures", "Batches of events the customer profile copy missed", "batches"
            )
        )

    def record_quietly(self, events: Sequence[Event]) -> bool:
        """:meth:`record`, where a failure is logged and counted instead of raised (ingest goes on)."""
        try:
            self.record(events)
        except Exception as error:
            self.failures += 1
            if self._failure_counter is not None:
                self._failure_counter.add(1)
            # The type only: a database error's text may quote the values (emails) it failed on.
            logger.warning(
                "could not update the customer profiles for %d events (%s); they heal with later events",
                len(events),
                type(error).__name__,
            )
            return False
        return True

    def record(self, events: Sequence[Event]) -> None:
        """Apply ``events`` (any order, repeats allowed) in one transaction."""
        by_ref: dict[str, list[Event]] = {}
        for event in events:
            by_ref.setdefault(customer_ref(event.customer_id, self.secret), []).append(event)
        if not by_ref:
            return
        with self.engine.begin() as connection:
            for refs in in_chunks(sorted(by_ref)):
                self._merge(connection, {ref: by_ref[ref] for ref in refs})

    def _merge(self, connection: Connection, by_ref: dict[str, list[Event]]) -> None:
        refs = list(by_ref)  # sorted by the caller: every writer locks in the same order
        new_rows = [_new_row(ref, by_ref[ref]) for ref in refs]
        connection.execute(insert_ignoring_existing(connection, customer_profiles, "customer_ref"), new_rows)
        rows = connection.execute(
            select(customer_profiles)
            .where(customer_profiles.c.customer_ref.in_(refs))
            .order_by(customer_profiles.c.customer_ref)
            .with_for_update()
        ).all()
        drafts = {row.customer_ref: _Draft(row=_aware(dict(row._mapping)), dates={}) for row in rows}
        for stored in connection.execute(select(customer_dates).where(customer_dates.c.customer_ref.in_(refs))):
            drafts[stored.customer_ref].dates[stored.name] = _aware(dict(stored._mapping))
        before = {ref: dict(draft.row) for ref, draft in drafts.items()}
        for ref, draft in drafts.items():
            draft.row["customer_id"] = by_ref[ref][-1].customer_id  # restores an id retention cleared
            for event in by_ref[ref]:
                self._apply(draft, event)
            if draft.changed_dates:
                draft.row["dates"] = {
                    name: stored["value"] for name, stored in sorted(draft.dates.items()) if stored["value"] is not None
                }
        update_rows(connection, customer_profiles,
                    [draft.row for ref, draft in drafts.items() if draft.row != before[ref]])
        self._write_dates(connection, drafts)
        _write_last_events(connection, by_ref)

    def _apply(self, draft: _Draft, event: Event) -> None:
        """One event's effect on one customer (the workflow's ``_learn``, for the copied fields)."""
        row, at, properties = draft.row, event.timestamp, event.properties
        row["first_seen_at"] = min(row["first_seen_at"], at)
        row["last_event_at"] = max(row["last_event_at"], at)
        if event.type == "order_placed" and (row["last_order_at"] is None or row["last_order_at"] < at):
            row["last_order_at"] = at
        elif event.type == "consent_changed" and properties.get("channel") in CHANNELS:
            _set(row, f"consent_{properties['channel']}", bool(properties.get("granted")), at)
        elif event.type == "customer_updated":
            for name in _PLAIN_FIELDS:
                if name in properties and _set(row, name, properties[name] or None, at):
                    self._hash_contact(row, name)
            consent = properties.get("consent")
            if isinstance(consent, dict):
                for channel in CHANNELS:
                    if consent.get(channel) is not None:
                        _set(row, f"consent_{channel}", bool(consent[channel]), at)
            for stated in dates_in(properties):
                _set_date(draft, stated, at)

    def _hash_contact(self, row: dict[str, Any], name: str) -> None:
        plain = row[name]
        if name == "email":
            row["email_hash"] = None if plain is None else contact_hash(normalised_email(plain), self.secret)
        elif name == "phone":
            row["phone_hash"] = None if plain is None else contact_hash(plain.strip(), self.secret)

    @staticmethod
    def _write_dates(connection: Connection, drafts: dict[str, _Draft]) -> None:
        new: list[dict[str, Any]] = []
        known: list[dict[str, Any]] = []
        columns = ("value", "month_day", "day", "updated_at")
        for ref, draft in drafts.items():
            for name in sorted(draft.changed_dates):
                stored = draft.dates[name]
                row = {"customer_ref": ref, "name": name, **{column: stored[column] for column in columns}}
                (known if stored.get("_stored", True) else new).append(row)
        if new:
            connection.execute(customer_dates.insert(), new)
        update_rows(connection, customer_dates, known)


def _write_last_events(connection: Connection, by_ref: dict[str, list[Event]]) -> None:
    """Keep each customer's latest time per event type (a maximum: order and repeats do not matter).
    ``date_reached`` is omnicart's own, never something the customer did."""
    latest: dict[tuple[str, str], datetime] = {}
    for ref, events in by_ref.items():
        for event in events:
            key = (ref, event.type)
            if event.type != DATE_REACHED and (key not in latest or latest[key] < event.timestamp):
                latest[key] = event.timestamp
    if not latest:
        return
    rows = [{"customer_ref": ref, "event_type": kind, "at": at} for (ref, kind), at in sorted(latest.items())]
    connection.execute(insert_ignoring_existing(connection, customer_last_events, ("customer_ref", "event_type")), rows)
    table = customer_last_events.c
    connection.execute(
        update(customer_last_events)
        .where(table.customer_ref == bindparam("ref"), table.event_type == bindparam("kind"))
        .where(table.at < bindparam("new"))
        .values(at=bindparam("new")),
        [{"ref": row["customer_ref"], "kind": row["event_type"], "new": row["at"]} for row in rows],
    )


def _set(row: dict[str, Any], name: str, value: Any, at: datetime) -> bool:
    """Last writer wins by event time, ties to the later-applied (as the workflow's ``_newer``)."""
    previous = row[f"{name}_at"]
    if previous is not None and previous > at:
        return False
    row[name] = value
    row[f"{name}_at"] = at
    return True


def _set_date(draft: _Draft, stated: CustomerDate, at: datetime) -> None:
    stored = draft.dates.get(stated.name)
    if stored is not None and stored["updated_at"] > at:
        return
    draft.dates[stated.name] = {
        "value": stated.value,
        "month_day": stated.month_day,
        "day": stated.day,
        "updated_at": at,
        "_stored": stored is not None and stored.get("_stored", True),
    }
    draft.changed_dates.add(stated.name)


def _new_row(ref: str, events: list[Event]) -> dict[str, Any]:
    """The row a customer not yet in the projection starts from (before the events are applied)."""
    first = min(event.timestamp for event in events)
    return {
        "customer_ref": ref,
        "customer_id": events[-1].customer_id,
        "workflow_id": customer_workflow_id(events[-1].customer_id),
        "first_seen_at": first,
        "last_event_at": first,
        "dates": {},
    }


def _aware(values: dict[str, Any]) -> dict[str, Any]:
    """Stored times as aware UTC (SQLite returns them naive), comparable with events' times."""
    return {name: utc(value) if isinstance(value, datetime) else value for name, value in values.items()}

