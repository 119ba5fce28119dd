"""A product as the catalog knows it now: what messages print about a sku."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, select

from omnicart.catalog.tables import products
from omnicart.storage import utc


@dataclass(frozen=True)
class Product:
    sku: str
    name: str | None
    url: str | None
    image_url: str | None
    category: str | None
    price: float | None
    currency: str | None
    updated_at: datetime | None


def product_of(engine: Engine, sku: str) -> Product | None:
    """The newest state of ``sku``; None when no catalog event has named it."""
    with engine.connect() as connection:
        row = connection.execute(select(products).where(products.c.sku == sku)).first()
    if row is None:
        return None
    return Product(
        sku=row.sku,
        name=row.name,
        url=row.url,
        image_url=row.image_url,
        category=row.category,
        price=row.price,
        currency=row.currency,
        updated_at=None if row.updated_at is None else utc(row.updated_at),
    )
