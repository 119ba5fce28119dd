"""Reference prices: the lowest price of the 30 days before a reduction (the EU Omnibus rule).

Directive 2019/2161 (art. 6a of 98/6/EC) says an announced price reduction must quote as the
prior price the lowest price applied in the 30 days before it. So a "drop" that only undoes a rise
of last week is not a drop: 100 → 120 → 110 quotes 100, and 110 is not below it. The lowest counts
every price in effect during the window, including the one already in effect when it opened.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, Engine, func, select

from omnicart.catalog.tables import price_history

OMNIBUS_DAYS = 30


def lowest_price(
    engine: Engine, sku: str, days: int = OMNIBUS_DAYS, before: datetime | None = None, currency: str | None = None
) -> float | None:
    """The lowest price of ``sku`` in effect during the ``days`` before ``before`` (default: now);
    None when the catalog knows no price of it then. With ``currency``, prices in that one only."""
    with engine.connect() as connection:
        return lowest_in(connection, sku, before or datetime.now(UTC), days, currency)


def is_honest_drop(engine: Engine, sku: str, new_price: float, at: datetime, currency: str | None = None) -> bool:
    """Whether ``new_price`` from ``at`` on is a reduction that may be announced: below the lowest
    price of the 30 days before. Without a price history there is nothing it is a reduction from."""
    reference = lowest_price(engine, sku, before=at, currency=currency)
    return reference is not None and new_price < reference


def lowest_in(
    connection: Connection, sku: str, before: datetime, days: int = OMNIBUS_DAYS, currency: str | None = None
) -> float | None:
    """:func:`lowest_price` on an open connection (the apply step asks inside its transaction)."""
    table = price_history.c
    start = before - timedelta(days=days)
    of_sku = [table.sku == sku] if currency is None else [table.sku == sku, table.currency == currency]
    within = connection.execute(
        select(func.min(table.price)).where(*of_sku, table.at >= start, table.at < before)
    ).scalar_one_or_none()
    # The price already in effect when the window opened counts too: it was applied in the window.
    standing = connection.execute(
        select(table.price).where(*of_sku, table.at < start).order_by(table.at.desc(), table.event_id.desc()).limit(1)
    ).scalar_one_or_none()
    found = [float(price) for price in (within, standing) if price is not None]
    return min(found) if found else None
