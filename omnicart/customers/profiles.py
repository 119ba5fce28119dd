"""The customer profile projection: its tables, and the questions other features ask of it.

A queryable copy of each customer, written by the ingest API as events arrive
(``omnicart.customers.projection``), so the console's search and date-based triggers can find
customers without asking every workflow. The workflow stays the source of truth for journeys; this
copy is best-effort (see docs/ARCHITECTURE.md for its guarantees).

Rows are keyed by the customer's *reference* (``omnicart.security.pseudonym.customer_ref``: the id
itself when opaque, its keyed hash when the id is an email or phone number), so retention can clear
an id that is personal data and the row is still found and updated by the same id later. Emails and
phones are kept in plain text beside their keyed hashes; retention clears the plain copies and keeps
the hashes, so ``find_by_email`` still answers for a customer whose address is past retention.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, Field, SecretStr
from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    ColumnElement,
    Connection,
    Date,
    DateTime,
    Engine,
    Index,
    Row,
    Select,
    String,
    Table,
    and_,
    delete,
    func,
    or_,
    select,
    tuple_,
    update,
)

from omnicart import limits
from omnicart.events import CHANNELS, Channel
from omnicart.security.pseudonym import customer_ref, keyed_hash, looks_personal
from omnicart.storage import metadata, utc

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000

customer_profiles = Table(
    "customer_profiles",
    metadata,
    Column("customer_ref", String(200), primary_key=True, comment="The id, or its keyed hash if personal."),
    Column("customer_id", String(200), nullable=True, comment="Cleared by retention if personal."),
    Column("workflow_id", String(300), nullable=False),
    Column("email", String(limits.MAX_EMAIL_CHARS), nullable=True),
    Column("email_hash", String(40), nullable=True, index=True),
    Column("email_at", DateTime(timezone=True), nullable=True, comment="Time of the event that last stated it."),
    Column("phone", String(limits.MAX_PHONE_CHARS), nullable=True),
    Column("phone_hash", String(40), nullable=True, index=True),
    Column("phone_at", DateTime(timezone=True), nullable=True),
    *(
        column
        for channel in CHANNELS
        for column in (
            Column(f"consent_{channel}", Boolean, nullable=True),
            Column(f"consent_{channel}_at", DateTime(timezone=True), nullable=True),
        )
    ),
    Column("locale", String(limits.MAX_SHORT_CHARS), nullable=True),
    Column("locale_at", DateTime(timezone=True), nullable=True),
    Column("timezone", String(limits.MAX_SHORT_CHARS), nullable=True),
    Column("timezone_at", DateTime(timezone=True), nullable=True),
    Column("first_seen_at", DateTime(timezone=True), nullable=False),
    Column("last_event_at", DateTime(timezone=True), nullable=False),
    Column("last_order_at", DateTime(timezone=True), nullable=True),
    Column("dates", JSON, nullable=False, comment="{name: YYYY-MM-DD or --MM-DD}, a copy of customer_dates."),
    Index("ix_customer_profiles_last_order", "last_order_at", "customer_ref"),
)

customer_dates = Table(
    "customer_dates",
    metadata,
    Column("customer_ref", String(200), primary_key=True),
    Column("name", String(64), primary_key=True),
    Column("value", String(10), nullable=True, comment="YYYY-MM-DD or --MM-DD; null once cleared."),
    Column("month_day", String(5), nullable=True, comment="MM-DD, what a yearly trigger compares."),
    Column("day", Date, nullable=True, comment="The full date, when it has a year."),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index("ix_customer_dates_month_day", "name", "month_day", "customer_ref"),
    Index("ix_customer_dates_day", "name", "day", "customer_ref"),
)

customer_last_events = Table(
    "customer_last_events",
    metadata,
    Column("customer_ref", String(200), primary_key=True),
    Column("event_type", String(100), primary_key=True),
    Column("at", DateTime(timezone=True), nullable=False, comment="Latest event of this type (event time)."),
    Index("ix_customer_last_events_type_at", "event_type", "at", "customer_ref"),
)
"""When each customer last did each thing (ordered, touched a cart): what an ``after`` trigger counts from."""


class Consent(BaseModel):
    """A channel's consent as last stated, and when (the event's time)."""

    granted: bool | None = None
    changed_at: datetime | None = None


class CustomerProfile(BaseModel):
    """One customer as the projection knows them; no hashes (they are for lookups only)."""

    customer_id: str | None = Field(description="Null once retention cleared an id that is an email or phone.")
    workflow_id: str
    email: str | None = None
    phone: str | None = None
    consent: dict[Channel, Consent]
    locale: str | None = None
    timezone: str | None = None
    first_seen_at: datetime
    last_event_at: datetime
    last_order_at: datetime | None = None
    dates: dict[str, str] = Field(description="Named dates: YYYY-MM-DD, or --MM-DD without a year.")


@dataclass(frozen=True)
class Page:
    """One page of customers, and the cursor that asks for the next (None: this was the last)."""

    customers: list[CustomerProfile]
    next_cursor: str | None


@dataclass(frozen=True)
class LastEventPage:
    """A page of customers with the time of each one's latest event of the type asked about."""

    customers: list[CustomerProfile]
    last_at: list[datetime]
    next_cursor: str | None


def normalised_email(email: str) -> str:
    """The form an email is hashed in: case and surrounding space do not make another customer."""
    return email.strip().lower()


def contact_hash(value: str, secret: SecretStr) -> str:
    """The keyed hash a plain email (normalised) or E.164 phone is found by after retention."""
    return keyed_hash(value, secret)


class CustomerProfiles:
    """Read access to the projection, for the console, the API and date-based triggers."""

    def __init__(self, engine: Engine, secret: SecretStr) -> None:
        self.engine = engine
        self.secret = secret

    def ref(self, customer_id: str) -> str:
        """The row key of a customer id (see the module docstring)."""
        return customer_ref(customer_id, self.secret)

    def find_by_id(self, customer_id: str) -> CustomerProfile | None:
        rows = self._rows(select(customer_profiles).where(customer_profiles.c.customer_ref == self.ref(customer_id)))
        return rows[0] if rows else None

    def find_by_email(self, email: str) -> list[CustomerProfile]:
        """Every customer with this address (any case), also those whose plain copy retention cleared."""
        digest = contact_hash(normalised_email(email), self.secret)
        return self._rows(_by_ref(select(customer_profiles).where(customer_profiles.c.email_hash == digest)))

    def find_by_phone(self, phone: str) -> list[CustomerProfile]:
        """Every customer with this E.164 number, also those whose plain copy retention cleared."""
        digest = contact_hash(phone.strip(), self.secret)
        return self._rows(_by_ref(select(customer_profiles).where(customer_profiles.c.phone_hash == digest)))

    def search(self, text: str, cursor: str | None = None, limit: int = DEFAULT_PAGE_SIZE) -> Page:
        """Customers whose id, email or phone contains ``text`` (any case), or whose hashed email,
        phone or id is exactly ``text`` (so a full address finds a customer past retention)."""
        needle = text.strip()
        table = customer_profiles.c
        exact = [
            table.customer_ref == self.ref(needle),
            table.email_hash == contact_hash(normalised_email(needle), self.secret),
            table.phone_hash == contact_hash(needle, self.secret),
        ]
        partial = [
            func.lower(column).contains(needle.lower(), autoescape=True)
            for column in (table.customer_id, table.email, table.phone)
        ]
        return self._page_by_ref(select(customer_profiles).where(or_(*exact, *partial)), cursor, limit)

    def everyone(self, cursor: str | None = None, limit: int = DEFAULT_PAGE_SIZE) -> Page:
        """Every customer, page by page (in reference order)."""
        return self._page_by_ref(select(customer_profiles), cursor, limit)

    def dates_on(self, name: str, month_day: str, cursor: str | None = None, limit: int = DEFAULT_PAGE_SIZE) -> Page:
        """Customers whose date ``name`` falls on ``month_day`` (``MM-DD``) in any year.

        Exact: a ``02-29`` birthday is found on ``02-29`` only; a trigger that wants it on the 28th
        of a common year asks for both days.
        """
        query = _with_date(and_(customer_dates.c.name == name, customer_dates.c.month_day == month_day))
        return self._page_by_ref(query, cursor, limit)

    def birthdays_on(self, month_day: str, cursor: str | None = None, limit: int = DEFAULT_PAGE_SIZE) -> Page:
        """Customers whose birthday is ``month_day`` (``MM-DD``)."""
        return self.dates_on("birthday", month_day, cursor, limit)

    def date_is(self, name: str, day: date, cursor: str | None = None, limit: int = DEFAULT_PAGE_SIZE) -> Page:
        """Customers whose date ``name`` is exactly ``day`` (e.g. a subscription renewing then)."""
        query = _with_date(and_(customer_dates.c.name == name, customer_dates.c.day == day))
        return self._page_by_ref(query, cursor, limit)

    def last_order_before(self, before: datetime, cursor: str | None = None, limit: int = DEFAULT_PAGE_SIZE) -> Page:
        """Customers whose last order was before ``before``, oldest order first; never-ordered ones
        are not included (they have no last order)."""
        table = customer_profiles.c
        query = select(customer_profiles).where(table.last_order_at < before)
        if cursor is not None:
            at, ref = _decode(cursor, 2)
            query = query.where(tuple_(table.last_order_at, table.customer_ref) > tuple_(_instant(at), ref))
        rows = self._fetch(query.order_by(table.last_order_at, table.customer_ref).limit(_bounded(limit) + 1))
        return _page(rows, limit, lambda row: [utc(row.last_order_at).isoformat(), row.customer_ref])

    def last_event_between(
        self, event_type: str, start: datetime, end: datetime, cursor: str | None = None, limit: int = DEFAULT_PAGE_SIZE
    ) -> LastEventPage:
        """Customers whose latest ``event_type`` event happened in ``(start, end]``, oldest first,
        with that time: who an ``after`` trigger finds due in a window (index on type and time)."""
        table = customer_last_events.c
        query = (
            select(customer_profiles, table.at.label("last_at"))
            .join(customer_last_events, table.customer_ref == customer_profiles.c.customer_ref)
            .where(table.event_type == event_type, table.at > start, table.at <= end)
        )
        if cursor is not None:
            at, ref = _decode(cursor, 2)
            query = query.where(tuple_(table.at, table.customer_ref) > tuple_(_instant(at), ref))
        rows = self._fetch(query.order_by(table.at, table.customer_ref).limit(_bounded(limit) + 1))
        page = _page(rows, limit, lambda row: [utc(row.last_at).isoformat(), row.customer_ref])
        return LastEventPage(page.customers, [utc(row.last_at) for row in rows[: len(page.customers)]],
                             page.next_cursor)

    def _page_by_ref(self, query: Select[Any], cursor: str | None, limit: int) -> Page:
        if cursor is not None:
            [after] = _decode(cursor, 1)
            query = query.where(customer_profiles.c.customer_ref > after)
        rows = self._fetch(_by_ref(query).limit(_bounded(limit) + 1))
        return _page(rows, limit, lambda row: [row.customer_ref])

    def _fetch(self, query: Select[Any]) -> Sequence[Row[Any]]:
        with self.engine.connect() as connection:
            return connection.execute(query).all()

    def _rows(self, query: Select[Any]) -> list[CustomerProfile]:
        return [profile_of(row) for row in self._fetch(query)]


def profile_of(row: Row[Any]) -> CustomerProfile:
    """A stored row as the API shows it."""

    def when(value: datetime | None) -> datetime | None:
        return None if value is None else utc(value)

    return CustomerProfile(
        customer_id=row.customer_id,
        workflow_id=row.workflow_id,
        email=row.email,
        phone=row.phone,
        consent={
            channel: Consent(
                granted=row._mapping[f"consent_{channel}"], changed_at=when(row._mapping[f"consent_{channel}_at"])
            )
            for channel in CHANNELS
        },
        locale=row.locale,
        timezone=row.timezone,
        first_seen_at=utc(row.first_seen_at),
        last_event_at=utc(row.last_event_at),
        last_order_at=when(row.last_order_at),
        dates=dict(row.dates or {}),
    )


# --- erasure and retention (omnicart.privacy) ----------------------------------------------------


def delete_profile(connection: Connection, ref: str) -> int:
    """Erase one customer's projection (their profile row and dates); how many rows went."""
    dates = connection.execute(delete(customer_dates).where(customer_dates.c.customer_ref == ref)).rowcount
    dates += connection.execute(delete(customer_last_events).where(customer_last_events.c.customer_ref == ref)).rowcount
    return dates + connection.execute(delete(customer_profiles).where(customer_profiles.c.customer_ref == ref)).rowcount


def clear_old_contacts(connection: Connection, cutoff: datetime) -> int:
    """Clear plain emails and phones last stated before ``cutoff``, and ids that are an email or phone
    of customers not heard from since; hashes and consent stay. How many values were cleared."""
    table = customer_profiles.c
    cleared = 0
    for plain, stated_at in ((table.email, table.email_at), (table.phone, table.phone_at)):
        query = update(customer_profiles).where(plain.is_not(None), stated_at < cutoff).values({plain.name: None})
        cleared += connection.execute(query).rowcount
    candidates = connection.execute(
        select(table.customer_ref, table.customer_id).where(
            table.customer_id.is_not(None),
            table.last_event_at < cutoff,
            or_(table.customer_id.contains("@"), table.customer_id.startswith("+")),
        )
    ).all()
    personal = [row.customer_ref for row in candidates if looks_personal(row.customer_id)]
    if personal:
        query = update(customer_profiles).where(table.customer_ref.in_(personal)).values(customer_id=None)
        cleared += connection.execute(query).rowcount
    return cleared


# --- paging ---------------------------------------------------------------------------------------


def _with_date(condition: ColumnElement[bool]) -> Select[Any]:
    matching = select(customer_dates.c.customer_ref).where(condition)
    return select(customer_profiles).where(customer_profiles.c.customer_ref.in_(matching))


def _by_ref(query: Select[Any]) -> Select[Any]:
    return query.order_by(customer_profiles.c.customer_ref)


def _bounded(limit: int) -> int:
    return max(1, min(limit, MAX_PAGE_SIZE))


def _page(rows: Sequence[Row[Any]], limit: int, key: Any) -> Page:
    size = _bounded(limit)
    more = len(rows) > size
    kept = rows[:size]
    cursor = _encode(key(kept[-1])) if more and kept else None
    return Page(customers=[profile_of(row) for row in kept], next_cursor=cursor)


def _encode(key: list[str]) -> str:
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode().rstrip("=")


class BadCursor(ValueError):
    """A cursor this code did not hand out."""


def _decode(cursor: str, parts: int) -> list[str]:
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except ValueError:
        raise BadCursor("not a cursor from a previous page") from None
    if not (isinstance(key, list) and len(key) == parts and all(isinstance(part, str) for part in key)):
        raise BadCursor("not a cursor from a previous page")
    return key


def _instant(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise BadCursor("not a cursor from a previous page") from None
