"""Applying catalog and store events to the catalog tables, and seeing the restocks and drops they make.

The ingest API calls :func:`apply_catalog_events` with every new catalog or store event of a request,
in one transaction, before it answers: a producer told ``202`` knows the catalog has them. The rules
make the outcome independent of arrival order and of repeats, like the profile projection's:

* each row (a product's details, its price, a location's stock, a store) is last-writer-wins by
  *event* time, ties to the event applied later; a late, older event changes nothing;
* the price history has one row per event id, so an event applied twice is one price;
* a restock or price drop is reported only by the event that makes it current, and only the first
  time (re-applying the same stock level is not a change from none);
* the fan-outs those changes call for are written to the outbox (``omnicart.catalog.outbox``) in
  the same transaction, so none is lost between applying and starting it.

Two API processes applying one sku at once take turns: every writer first makes sure the sku's
``products`` row exists, then locks it (``SELECT ... FOR UPDATE``; SQLite's insert already holds the
database's write lock), always in sku order, so stock totals are read and written by one at a time.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, Table, select, update

from omnicart.catalog.changes import CatalogChanges, PriceDrop, Restock
from omnicart.catalog.outbox import record_fanouts
from omnicart.catalog.prices import lowest_in
from omnicart.catalog.tables import price_history, products, stock, stores
from omnicart.events import Event
from omnicart.storage import insert_ignoring_existing, update_rows, utc

logger = logging.getLogger(__name__)

CATALOG_EVENT_TYPES = frozenset({"product_updated", "inventory_changed", "price_changed"})
STORE_EVENT_TYPES = frozenset({"store_updated"})
_DETAILS = ("name", "url", "image_url", "category")
_STORE_FIELDS = ("name", "address", "timezone", "latitude", "longitude")


def is_catalog_event(event: Event) -> bool:
    """Whether ``event`` belongs to the catalog (a product or a store) rather than to a customer."""
    return event.type in CATALOG_EVENT_TYPES or event.type in STORE_EVENT_TYPES


@dataclass
class _Level:
    quantity: int
    at: datetime
    stored: bool


def apply_catalog_events(engine: Engine, events: Sequence[Event]) -> CatalogChanges:
    """Apply ``events`` (any order, repeats allowed; other types ignored) in one transaction, and
    return (and log) the restocks and honest price drops they made."""
    mine = sorted((event for event in events if is_catalog_event(event)), key=lambda e: (e.timestamp, e.id))
    changes = CatalogChanges(applied=len(mine))
    if not mine:
        return changes
    with engine.begin() as connection:
        _Batch(connection, mine, changes).run()
        # In the same transaction: a change found is in the fan-out outbox, or was never found.
        record_fanouts(connection, changes)
    for restock in changes.restocks:
        logger.info(
            "restock: %s at %s has %d (total %d%s)",
            restock.sku, restock.location, restock.quantity, restock.total,
            ", back from none everywhere" if restock.back_everywhere else "",
        )
    for drop in changes.price_drops:
        logger.info("price drop: %s to %s %s, below the 30-day lowest %s", drop.sku, drop.price, drop.currency or "",
                    drop.reference_price)
    return changes


class _Batch:
    """One transaction's worth of catalog events, merged into drafts of the rows they touch."""

    def __init__(self, connection: Connection, events: list[Event], changes: CatalogChanges) -> None:
        self.connection = connection
        self.events = events
        self.changes = changes
        self.products: dict[str, dict[str, Any]] = {}
        self.before: dict[str, dict[str, Any]] = {}
        self.levels: dict[str, dict[str, _Level]] = {}
        self.changed_levels: set[tuple[str, str]] = set()

    def run(self) -> None:
        skus = sorted({event.properties["sku"] for event in self.events if event.type in CATALOG_EVENT_TYPES})
        if skus:
            self._lock(skus)
        for event in self.events:
            if event.type == "store_updated":
                self._store(event)
            elif event.type == "inventory_changed":
                self._stock(event)
            else:
                if event.type == "product_updated":
                    self._details(event)
                if "price" in event.properties:
                    self._price(event)
        self._write()

    def _lock(self, skus: list[str]) -> None:
        connection = self.connection
        connection.execute(insert_ignoring_existing(connection, products, "sku"), [{"sku": sku} for sku in skus])
        rows = connection.execute(
            select(products).where(products.c.sku.in_(skus)).order_by(products.c.sku).with_for_update()
        ).all()
        for row in rows:
            values = {name: utc(v) if isinstance(v, datetime) else v for name, v in row._mapping.items()}
            self.products[row.sku] = values
            self.before[row.sku] = dict(values)
            self.levels[row.sku] = {}
        for level in connection.execute(select(stock).where(stock.c.sku.in_(skus))):
            self.levels[level.sku][level.location] = _Level(level.quantity, utc(level.updated_at), stored=True)

    def _details(self, event: Event) -> None:
        product = self.products[event.properties["sku"]]
        if _newer(product["details_at"], event.timestamp):
            product.update({name: event.properties.get(name) for name in _DETAILS})
            product["details_at"] = event.timestamp
            _touch(product, event.timestamp)

    def _price(self, event: Event) -> None:
        sku, price = event.properties["sku"], float(event.properties["price"])
        product = self.products[sku]
        currency = event.properties.get("currency") or product["currency"]
        reference = lowest_in(self.connection, sku, event.timestamp, currency=currency)
        inserted = _inserted(
            self.connection,
            price_history,
            {"event_id": event.id, "sku": sku, "price": price, "currency": currency, "at": event.timestamp},
        )
        if not _newer(product["price_at"], event.timestamp):
            return  # a late, older price: history only
        product.update(price=price, currency=currency, price_at=event.timestamp)
        _touch(product, event.timestamp)
        if inserted and reference is not None and price < reference:
            self.changes.price_drops.append(PriceDrop(sku, price, reference, currency, event.timestamp, event.id))

    def _stock(self, event: Event) -> None:
        sku, location, quantity = event.properties["sku"], event.properties["location"], event.properties["quantity"]
        levels = self.levels[sku]
        level = levels.get(location)
        if level is not None and not _newer(level.at, event.timestamp):
            return
        had_here = max(level.quantity, 0) if level is not None else 0
        had_anywhere = _total(levels.values())
        if level is None:
            level = levels[location] = _Level(quantity, event.timestamp, stored=False)
        level.quantity, level.at = quantity, event.timestamp
        self.changed_levels.add((sku, location))
        _touch(self.products[sku], event.timestamp)
        if had_here == 0 and quantity > 0:
            total = _total(levels.values())
            restock = Restock(sku, location, quantity, total, had_anywhere == 0, event.timestamp, event.id)
            self.changes.restocks.append(restock)

    def _store(self, event: Event) -> None:
        values = {name: event.properties.get(name) for name in _STORE_FIELDS}
        connection = self.connection
        row = {"store_id": event.properties["store_id"], **values, "updated_at": event.timestamp}
        if _inserted(connection, stores, row):
            return
        # An existing store: the newer statement wins, decided by the database row by row.
        connection.execute(
            update(stores)
            .where(stores.c.store_id == row["store_id"], stores.c.updated_at <= event.timestamp)
            .values(**values, updated_at=event.timestamp)
        )

    def _write(self) -> None:
        connection = self.connection
        update_rows(connection, products, [row for sku, row in self.products.items() if row != self.before[sku]])
        new: list[dict[str, Any]] = []
        known: list[dict[str, Any]] = []
        for sku, location in sorted(self.changed_levels):
            level = self.levels[sku][location]
            row = {"sku": sku, "location": location, "quantity": level.quantity, "updated_at": level.at}
            (known if level.stored else new).append(row)
        if new:
            connection.execute(stock.insert(), new)
        update_rows(connection, stock, known)


def _inserted(connection: Connection, table: Table, row: dict[str, Any]) -> bool:
    """Insert ``row`` unless its key is there; whether it went in (``RETURNING``: a rowcount after
    ``ON CONFLICT DO NOTHING`` is -1 on psycopg)."""
    [key] = table.primary_key.columns
    query = insert_ignoring_existing(connection, table, key.name).returning(key)
    return connection.execute(query, row).first() is not None


def _newer(stored_at: datetime | None, at: datetime) -> bool:
    """Last writer wins by event time; a tie goes to the event applied later (as the profiles do)."""
    return stored_at is None or stored_at <= at


def _touch(product: dict[str, Any], at: datetime) -> None:
    if product["updated_at"] is None or product["updated_at"] < at:
        product["updated_at"] = at


def _total(levels: Iterable[_Level]) -> int:
    """Units in stock across locations; an oversold location (below zero) counts as none."""
    return sum(max(level.quantity, 0) for level in levels)
