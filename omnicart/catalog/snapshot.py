"""A :class:`CatalogSnapshot` of some skus: from the product database (the send activity), or from a
timeline of catalog events as of a moment (``omnicart simulate``), so both decide on the same data.

The database read is a handful of queries whatever the template reads: products, stock and stores
of all the skus at once, and the 30-day lowest price of each known product.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, func, select

from omnicart.catalog.availability import CatalogSnapshot, Store
from omnicart.catalog.prices import OMNIBUS_DAYS
from omnicart.catalog.products import Product
from omnicart.catalog.stock import ONLINE
from omnicart.catalog.tables import price_history, products, stock, stores
from omnicart.events import Event
from omnicart.storage import utc

MAX_SKUS = 200
"""A cart holds at most 200 items (the tracking plan): more skus than that are not looked up."""


def load_snapshot(engine: Engine, skus: list[str], now: datetime | None = None) -> CatalogSnapshot:
    """What the product database says of ``skus`` now."""
    wanted = list(dict.fromkeys(skus))[:MAX_SKUS]
    if not wanted:
        return CatalogSnapshot()
    at = now or datetime.now(UTC)
    with engine.connect() as connection:
        found = {
            row.sku: Product(row.sku, row.name, row.url, row.image_url, row.category, row.price, row.currency,
                             None if row.updated_at is None else utc(row.updated_at))
            for row in connection.execute(select(products).where(products.c.sku.in_(wanted)))
        }
        levels: dict[str, dict[str, int]] = {}
        for row in connection.execute(select(stock.c.sku, stock.c.location, stock.c.quantity)
                                      .where(stock.c.sku.in_(wanted))):
            levels.setdefault(row.sku, {})[row.location] = int(row.quantity)
        store_ids = sorted({location for by in levels.values() for location in by if location != ONLINE})
        known_stores = {
            row.store_id: Store(row.store_id, row.name, row.address, row.latitude, row.longitude)
            for row in connection.execute(select(stores).where(stores.c.store_id.in_(store_ids)))
        } if store_ids else {}
        lowest = _lowest_prices(connection, found, at)
    return CatalogSnapshot(products=found, levels=levels, lowest=lowest, stores=known_stores)


def _lowest_prices(connection: Connection, found: dict[str, Product], before: datetime) -> dict[str, float]:
    """``omnicart.catalog.prices.lowest_in`` for every product at once, in two queries: the lowest
    price of the window, and the one standing when it opened (the latest before; ties: the
    greatest event id), each in the product's own currency when it has one."""
    if not found:
        return {}
    table = price_history.c
    start = before - timedelta(days=OMNIBUS_DAYS)
    skus = sorted(found)
    prices: dict[str, list[float]] = {}

    def mine(sku: str, currency: str | None) -> bool:
        wanted = found[sku].currency
        return wanted is None or currency == wanted

    within = select(table.sku, table.currency, func.min(table.price).label("price")).where(
        table.sku.in_(skus), table.at >= start, table.at < before
    ).group_by(table.sku, table.currency)
    for low in connection.execute(within):
        if mine(low.sku, low.currency):
            prices.setdefault(low.sku, []).append(float(low.price))
    latest = select(table.sku, table.currency, func.max(table.at).label("at")).where(
        table.sku.in_(skus), table.at < start
    ).group_by(table.sku, table.currency).subquery()
    standing = select(table.sku, table.currency, table.price, table.event_id, table.at).join(
        latest, (table.sku == latest.c.sku) & (table.at == latest.c.at)
        & ((table.currency == latest.c.currency) | (table.currency.is_(None) & latest.c.currency.is_(None)))
    )
    last: dict[str, tuple[datetime, str, float]] = {}
    for row in connection.execute(standing):
        candidate = (utc(row.at), row.event_id, float(row.price))
        if mine(row.sku, row.currency) and (row.sku not in last or candidate[:2] > last[row.sku][:2]):
            last[row.sku] = candidate  # the latest; of a tie, the greatest event id
    for sku, (_, _, price) in last.items():
        prices.setdefault(sku, []).append(price)
    return {sku: min(found_prices) for sku, found_prices in prices.items()}


class CatalogTimeline:
    """Catalog and store events of a preview, answering "what did the catalog say at this moment?".

    Each fact is the newest event at or before the moment, as the database keeps it (last writer
    wins by event time); the lowest price counts every price in effect in the 30 days before.
    """

    def __init__(self, events: Iterable[Event]) -> None:
        ordered = sorted(events, key=lambda event: (event.timestamp, event.id))
        self._details: dict[str, list[tuple[datetime, Event]]] = {}
        self._prices: dict[str, list[tuple[datetime, float, str | None]]] = {}
        self._levels: dict[str, dict[str, list[tuple[datetime, int]]]] = {}  # sku -> location -> levels
        self._stores: dict[str, list[tuple[datetime, Store]]] = {}
        for event in ordered:
            props = event.properties
            if event.type == "product_updated":
                self._details.setdefault(props["sku"], []).append((event.timestamp, event))
            if event.type in ("product_updated", "price_changed") and "price" in props:
                self._prices.setdefault(props["sku"], []).append(
                    (event.timestamp, float(props["price"]), props.get("currency"))
                )
            elif event.type == "inventory_changed":
                by_location = self._levels.setdefault(props["sku"], {})
                by_location.setdefault(props["location"], []).append((event.timestamp, int(props["quantity"])))
            elif event.type == "store_updated":
                store = Store(props["store_id"], props.get("name"), props.get("address"),
                              props.get("latitude"), props.get("longitude"))
                self._stores.setdefault(props["store_id"], []).append((event.timestamp, store))

    def __bool__(self) -> bool:
        return bool(self._details or self._prices or self._levels or self._stores)

    def snapshot(self, skus: list[str], at: datetime) -> CatalogSnapshot:
        """What the catalog said of ``skus`` at ``at``."""
        found: dict[str, Product] = {}
        levels: dict[str, dict[str, int]] = {}
        lowest: dict[str, float] = {}
        wanted = list(dict.fromkeys(skus))[:MAX_SKUS]
        for sku in wanted:
            details = _as_of(self._details.get(sku, []), at)
            price = _as_of(self._prices.get(sku, []), at)
            if details is not None or price is not None:
                props = details[1].properties if details is not None else {}
                currency = price[2] if price is not None and price[2] else props.get("currency")
                found[sku] = Product(sku, props.get("name"), props.get("url"), props.get("image_url"),
                                     props.get("category"), price[1] if price else None, currency, None)
                low = self._lowest(sku, at, currency)
                if low is not None:
                    lowest[sku] = low
            for location, history in self._levels.get(sku, {}).items():
                level = _as_of(history, at)
                if level is not None:
                    levels.setdefault(sku, {})[location] = level[1]
        store_ids = {location for by in levels.values() for location in by if location != ONLINE}
        known = {}
        for store_id in sorted(store_ids):
            entry = _as_of(self._stores.get(store_id, []), at)
            if entry is not None:
                known[store_id] = entry[1]
        return CatalogSnapshot(products=found, levels=levels, lowest=lowest, stores=known)

    def _lowest(self, sku: str, before: datetime, currency: str | None) -> float | None:
        """As ``omnicart.catalog.prices.lowest_in``: prices of the window, and the one standing when it opened."""
        start = before - timedelta(days=OMNIBUS_DAYS)
        history = [entry for entry in self._prices.get(sku, []) if currency is None or entry[2] == currency]
        within = [price for at, price, _ in history if start <= at < before]
        standing = [price for at, price, _ in history if at < start][-1:]
        found = within + standing
        return min(found) if found else None


def _as_of(history: Sequence[tuple[Any, ...]], at: datetime) -> Any:
    """The newest entry at or before ``at`` (ties: the one applied last) of a list in time order."""
    index = bisect.bisect_right([entry[0] for entry in history], at)
    return history[index - 1] if index else None
