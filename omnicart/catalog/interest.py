"""Which customers are interested in which sku, for how long: who a restock or price drop tells.

Recorded by the ingest API from customers' own events (``product_viewed``: viewed; the items of
``cart_updated`` and ``checkout_started``: carted; ``back_in_stock_requested``: requested), one row
per (sku, customer), keyed by the customer's reference like the profile projection
(``omnicart.security.pseudonym.customer_ref``). Merging is order-free: the strongest reason wins,
the latest expiry wins, the first time stays. Interest lasts ``OMNICART_INTEREST_DAYS`` (90) after
the event that showed it.

:func:`interested_customers` pages one sku's customers by key (``customer_ref``), never by
``OFFSET``, so the fan-out can work through 100,000 of them in constant time per page, carrying
only the cursor across continue-as-new. Like the profiles, recording never fails ingest.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import SecretStr
from sqlalchemy import Connection, Engine, delete, func, or_, select, tuple_

from omnicart.catalog.tables import customer_interest
from omnicart.events import Event
from omnicart.security.pseudonym import customer_ref
from omnicart.storage import insert_ignoring_existing, update_rows, utc

logger = logging.getLogger(__name__)

Reason = Literal["viewed", "carted", "requested"]
STRENGTH: dict[str, int] = {"viewed": 1, "carted": 2, "requested": 3}
MAX_PAGE_SIZE = 5000
_CHUNK = 400  # rows per statement: well below SQLite's bound-parameter limit


@dataclass(frozen=True)
class Interested:
    """One interested customer, as the fan-out needs them."""

    customer_id: str
    customer_ref: str
    reason: Reason
    expires_at: datetime


@dataclass(frozen=True)
class InterestPage:
    """One page, and the cursor of the next (None: this was the last). The cursor is opaque."""

    customers: list[Interested]
    next_cursor: str | None


def interest_in(event: Event) -> list[tuple[str, Reason]]:
    """The skus a customer event shows interest in, and why (nothing for other events)."""
    properties = event.properties
    if event.type == "product_viewed":
        return [(properties["sku"], "viewed")]
    if event.type == "back_in_stock_requested":
        return [(properties["sku"], "requested")]
    if event.type in ("cart_updated", "checkout_started"):
        items = properties.get("items") or []
        return [(item["sku"], "carted") for item in items if isinstance(item, dict) and item.get("sku")]
    return []


class InterestRecorder:
    """Writes interest from forwarded customer events; shared by every request of one API process."""

    def __init__(self, engine: Engine, secret: SecretStr, lasts: timedelta) -> None:
        self.engine = engine
        self.secret = secret
        self.lasts = lasts
        self.failures = 0

    def record_quietly(self, events: Sequence[Event]) -> bool:
        """:meth:`record`, where a failure is logged and counted instead of raised (ingest goes on)."""
        try:
            self.record(events)
        except Exception as error:
            self.failures += 1
            # The type only: a database error's text may quote the values (customer ids) it failed on.
            logger.warning("could not record interest for %d events (%s)", len(events), type(error).__name__)
            return False
        return True

    def record(self, events: Sequence[Event]) -> int:
        """Merge the interest ``events`` show into the table in one transaction; how many rows it touched."""
        merged: dict[tuple[str, str], dict[str, Any]] = {}
        for event in events:
            for sku, reason in interest_in(event):
                ref = customer_ref(event.customer_id, self.secret)
                stated = {
                    "sku": sku,
                    "customer_ref": ref,
                    "customer_id": event.customer_id,
                    "reason": reason,
                    "created_at": event.timestamp,
                    "stated_at": event.timestamp,
                    "expires_at": event.timestamp + self.lasts,
                }
                key = (sku, ref)
                merged[key] = _merged(merged[key], stated) if key in merged else stated
        if not merged:
            return 0
        keys = sorted(merged)  # every writer in the same order: no deadlock between API processes
        with self.engine.begin() as connection:
            for start in range(0, len(keys), _CHUNK):
                self._merge(connection, {key: merged[key] for key in keys[start : start + _CHUNK]})
        return len(merged)

    def move(self, from_customer_id: str, to_customer_id: str) -> int:
        """Give one customer's interest to another (an anonymous visitor who became known), merged
        with what the other already had, in one transaction; how many rows moved. Idempotent."""
        source, target = customer_ref(from_customer_id, self.secret), customer_ref(to_customer_id, self.secret)
        with self.engine.begin() as connection:
            rows = connection.execute(
                select(customer_interest).where(customer_interest.c.customer_ref == source)
            ).mappings().all()
            moved = {
                (row["sku"], target): {**_aware(dict(row)), "customer_ref": target, "customer_id": to_customer_id}
                for row in rows
            }
            for start in range(0, len(moved), _CHUNK):
                keys = sorted(moved)[start : start + _CHUNK]
                self._merge(connection, {key: moved[key] for key in keys})
            delete_interest(connection, source)
        return len(moved)

    @staticmethod
    def _merge(connection: Connection, rows: dict[tuple[str, str], dict[str, Any]]) -> None:
        table = customer_interest.c
        connection.execute(
            insert_ignoring_existing(connection, customer_interest, "sku", "customer_ref"), list(rows.values())
        )
        stored = connection.execute(
            select(customer_interest)
            .where(tuple_(table.sku, table.customer_ref).in_(list(rows)))
            .order_by(table.sku, table.customer_ref)
            .with_for_update()
        ).all()
        changed = []
        for row in stored:
            before = _aware(dict(row._mapping))
            after = _merged(before, rows[(row.sku, row.customer_ref)])
            if after != before:
                changed.append(after)
        update_rows(connection, customer_interest, changed)


def _merged(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """Two statements of one customer's interest in one sku as one: order does not matter."""
    latest = new if new["stated_at"] >= old["stated_at"] else old
    return {
        **old,
        "customer_id": latest["customer_id"],
        "reason": max(old["reason"], new["reason"], key=STRENGTH.__getitem__),
        "created_at": min(old["created_at"], new["created_at"]),
        "stated_at": max(old["stated_at"], new["stated_at"]),
        "expires_at": max(old["expires_at"], new["expires_at"]),
    }


def _aware(values: dict[str, Any]) -> dict[str, Any]:
    return {name: utc(value) if isinstance(value, datetime) else value for name, value in values.items()}


def interested_customers(
    engine: Engine,
    sku: str,
    after: str | None = None,
    limit: int = 1000,
    now: datetime | None = None,
    reason: Reason | None = None,
) -> InterestPage:
    """The customers interested in ``sku`` whose interest has not expired at ``now``, in key order,
    from just after the cursor ``after`` (a page's ``next_cursor``); at most ``limit`` (≤ 5,000).
    With ``reason``, only customers whose strongest reason is that one."""
    table = customer_interest.c
    size = max(1, min(limit, MAX_PAGE_SIZE))
    query = select(customer_interest).where(table.sku == sku, table.expires_at > (now or datetime.now(UTC)))
    if reason is not None:
        query = query.where(table.reason == reason)
    if after is not None:
        query = query.where(table.customer_ref > after)
    with engine.connect() as connection:
        rows = connection.execute(query.order_by(table.customer_ref).limit(size + 1)).all()
    kept = rows[:size]
    customers = [Interested(row.customer_id, row.customer_ref, row.reason, utc(row.expires_at)) for row in kept]
    return InterestPage(customers, kept[-1].customer_ref if len(rows) > size else None)


def count_interested(engine: Engine, sku: str, now: datetime | None = None) -> int:
    """How many customers' interest in ``sku`` has not expired at ``now``."""
    table = customer_interest.c
    query = select(func.count()).where(table.sku == sku, table.expires_at > (now or datetime.now(UTC)))
    with engine.connect() as connection:
        return int(connection.execute(query).scalar_one())


STRONGEST_FIRST: tuple[Reason, ...] = ("requested", "carted", "viewed")


def interested_strongest_first(
    engine: Engine, sku: str, after: str | None = None, limit: int = 1000, now: datetime | None = None
) -> InterestPage:
    """:func:`interested_customers`, those who asked to be told first, then those who had it in a
    cart, then those who viewed it: what a fan-out with less stock than interest should tell first.

    One keyset pass per reason on the index ``(sku, reason, customer_ref)``; the cursor
    (``<reason>:<customer_ref>``, opaque to callers) names the pass and the key, so each page still
    costs the same however deep into 100,000 customers it is.
    """
    reason_index, key = 0, None
    if after is not None:
        stated, _, ref = after.partition(":")
        reason_index, key = STRONGEST_FIRST.index(stated), ref or None
    customers: list[Interested] = []
    while reason_index < len(STRONGEST_FIRST) and len(customers) < limit:
        reason = STRONGEST_FIRST[reason_index]
        page = interested_customers(engine, sku, key, limit - len(customers), now, reason)
        customers += page.customers
        if page.next_cursor is not None:
            return InterestPage(customers, f"{reason}:{page.next_cursor}")
        reason_index, key = reason_index + 1, None
    if reason_index >= len(STRONGEST_FIRST):
        return InterestPage(customers, None)
    # The page filled exactly at the end of one reason's customers: the next page starts the next
    # reason, if anyone is left (so a fan-out learns it is done now, not one empty page later).
    more = any(interested_customers(engine, sku, None, 1, now, reason).customers
               for reason in STRONGEST_FIRST[reason_index:])
    return InterestPage(customers, f"{STRONGEST_FIRST[reason_index]}:" if more else None)


# --- erasure and retention (omnicart.privacy) ----------------------------------------------------


def delete_interest(connection: Connection, ref: str) -> int:
    """Erase one customer's interest (``ref`` as ``customer_ref`` makes it); how many rows went."""
    return connection.execute(delete(customer_interest).where(customer_interest.c.customer_ref == ref)).rowcount


def delete_old_interest(connection: Connection, cutoff: datetime, now: datetime) -> int:
    """Retention: interest already expired, or last shown before ``cutoff``; how many rows went."""
    table = customer_interest.c
    query = delete(customer_interest).where(or_(table.expires_at <= now, table.stated_at < cutoff))
    return connection.execute(query).rowcount
