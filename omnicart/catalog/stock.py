"""Stock per location, and the stores that have a sku now, nearest first.

What a send will check just before a message goes out ("is it still in stock?") and what an
in-store availability line prints. ``online`` is the web shop's stock; any other location is a
``store_id`` (``store_updated`` describes the store). A location below zero (oversold) has none.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sqlalchemy import Engine, select

from omnicart.catalog.tables import stock, stores

ONLINE = "online"
EARTH_RADIUS_KM = 6371.0088  # the IUGG mean radius


@dataclass(frozen=True)
class StoreStock:
    """A store that has the sku, as a message names it."""

    store_id: str
    name: str | None
    address: str | None
    timezone: str | None
    quantity: int
    distance_km: float | None  # None without a point to measure from, or a store without coordinates


def stock_of(engine: Engine, sku: str) -> dict[str, int]:
    """Units of ``sku`` at each location the catalog has heard of (zero and oversold included)."""
    with engine.connect() as connection:
        rows = connection.execute(select(stock.c.location, stock.c.quantity).where(stock.c.sku == sku)).all()
    return {row.location: row.quantity for row in rows}


def in_stock(engine: Engine, sku: str, location: str | None = None) -> bool:
    """Whether ``sku`` has at least one unit at ``location``, or anywhere when it is None."""
    levels = stock_of(engine, sku)
    if location is not None:
        return levels.get(location, 0) > 0
    return any(quantity > 0 for quantity in levels.values())


def stores_with_stock(
    engine: Engine, sku: str, near: tuple[float, float] | None = None, limit: int = 3
) -> list[StoreStock]:
    """The stores that have ``sku`` now: nearest to ``near`` (latitude, longitude) first, stores
    without coordinates last; without ``near``, most units first. At most ``limit``."""
    query = (
        select(stores, stock.c.quantity)
        .join(stock, stock.c.location == stores.c.store_id)
        .where(stock.c.sku == sku, stock.c.quantity > 0, stock.c.location != ONLINE)
    )
    with engine.connect() as connection:
        rows = connection.execute(query).all()
    found = [
        StoreStock(
            store_id=row.store_id,
            name=row.name,
            address=row.address,
            timezone=row.timezone,
            quantity=row.quantity,
            distance_km=(
                None
                if near is None or row.latitude is None or row.longitude is None
                else haversine_km(near, (row.latitude, row.longitude))
            ),
        )
        for row in rows
    ]
    # A shop has few stores (hundreds at most): measured here, the same on SQLite and PostgreSQL.
    if near is None:
        found.sort(key=lambda store: (-store.quantity, store.store_id))
    else:
        found.sort(key=lambda store: (store.distance_km is None, store.distance_km or 0.0, store.store_id))
    return found[: max(limit, 0)]


def haversine_km(a: tuple[float, float], b: tuple[float, float]) -> float:
    """The great-circle distance between two (latitude, longitude) points in degrees, in km.

    The haversine formula on a sphere: within 0.5 % of the ellipsoid, plenty to rank stores.
    """
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(min(1.0, h)))
