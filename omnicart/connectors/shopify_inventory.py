"""Which sku each Shopify inventory item is: the link ``inventory_levels/update`` needs.

Shopify counts stock per *inventory item* and location, and names neither the variant nor its sku in
``inventory_levels/update``; only ``products/update`` (and ``products/create``) say which inventory
item each variant's sku is. So every product webhook refreshes this small table, and a stock level
for an item it does not know yet is quarantined and replayed once the product has arrived.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from sqlalchemy import Column, DateTime, Engine, String, Table, delete, select

from omnicart import limits
from omnicart.storage import metadata

shopify_inventory_items = Table(
    "shopify_inventory_items",
    metadata,
    Column("inventory_item_id", String(40), primary_key=True, comment="Shopify's id, as text."),
    Column("sku", String(limits.MAX_ID_CHARS), nullable=False),
    Column("linked_at", DateTime(timezone=True), nullable=False, comment="When a product webhook last said so."),
)


def link_inventory_items(engine: Engine, skus: Mapping[str, str]) -> None:
    """Remember that each inventory item id of ``skus`` is that sku (the newest product webhook wins)."""
    if not skus:
        return
    now = datetime.now(UTC)
    with engine.begin() as connection:
        connection.execute(
            delete(shopify_inventory_items).where(shopify_inventory_items.c.inventory_item_id.in_(list(skus)))
        )
        connection.execute(
            shopify_inventory_items.insert(),
            [{"inventory_item_id": item, "sku": sku, "linked_at": now} for item, sku in skus.items()],
        )


def sku_of_inventory_item(engine: Engine, inventory_item_id: str) -> str | None:
    table = shopify_inventory_items
    with engine.connect() as connection:
        sku: str | None = connection.execute(
            select(table.c.sku).where(table.c.inventory_item_id == inventory_item_id)
        ).scalar_one_or_none()
    return sku
