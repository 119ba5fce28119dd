"""The catalog's tables in the product database: products, stock per location, prices over time,
stores, and which customers are interested in which sku.

Written by the ingest API as catalog, store and customer events arrive (``omnicart.catalog.apply``,
``omnicart.catalog.interest``); read by journeys' checks and the restock and price-drop fan-out.
Every row that an event sets remembers the event's time (``*_at``), because each is last-writer-wins
by event time: a late, older event must not undo a newer one.
"""

from __future__ import annotations

from sqlalchemy import JSON, BigInteger, Column, DateTime, Double, Index, String, Table

from omnicart import limits
from omnicart.storage import metadata

products = Table(
    "products",
    metadata,
    Column("sku", String(limits.MAX_ID_CHARS), primary_key=True),
    Column("name", String(limits.MAX_NAME_CHARS), nullable=True),
    Column("url", String(limits.MAX_URL_CHARS), nullable=True),
    Column("image_url", String(limits.MAX_URL_CHARS), nullable=True),
    Column("category", String(limits.MAX_NAME_CHARS), nullable=True),
    Column("details_at", DateTime(timezone=True), nullable=True, comment="Time of the product_updated applied."),
    Column("price", Double, nullable=True),
    Column("currency", String(3), nullable=True),
    Column("price_at", DateTime(timezone=True), nullable=True, comment="Time of the event that set the price."),
    Column("updated_at", DateTime(timezone=True), nullable=True, comment="The newest event time applied."),
    comment="One row per sku; also the lock writers of that sku's stock take, so restocks are seen once.",
)

stock = Table(
    "stock",
    metadata,
    Column("sku", String(limits.MAX_ID_CHARS), primary_key=True),
    Column("location", String(limits.MAX_ID_CHARS), primary_key=True, comment="online, or a store_id."),
    Column("quantity", BigInteger, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, comment="Time of the event that set it."),
)

price_history = Table(
    "price_history",
    metadata,
    Column("event_id", String(limits.MAX_ID_CHARS), primary_key=True, comment="One row per event: idempotent."),
    Column("sku", String(limits.MAX_ID_CHARS), nullable=False),
    Column("price", Double, nullable=False),
    Column("currency", String(3), nullable=True),
    Column("at", DateTime(timezone=True), nullable=False, comment="When the price took effect (event time)."),
    Index("ix_price_history_sku_at", "sku", "at"),
)

stores = Table(
    "stores",
    metadata,
    Column("store_id", String(limits.MAX_ID_CHARS), primary_key=True),
    Column("name", String(limits.MAX_NAME_CHARS), nullable=True),
    Column("address", String(limits.MAX_URL_CHARS), nullable=True),
    Column("timezone", String(limits.MAX_SHORT_CHARS), nullable=True),
    Column("latitude", Double, nullable=True),
    Column("longitude", Double, nullable=True),
    Column("updated_at", DateTime(timezone=True), nullable=False, comment="Time of the store_updated applied."),
)

customer_interest = Table(
    "customer_interest",
    metadata,
    # (sku, customer_ref) first: the fan-out pages one sku's customers in this order, by the key.
    Column("sku", String(limits.MAX_ID_CHARS), primary_key=True),
    Column("customer_ref", String(200), primary_key=True, comment="The id, or its keyed hash if personal."),
    Column("customer_id", String(200), nullable=False, comment="Whose workflow to tell."),
    Column("reason", String(16), nullable=False, comment="viewed, carted or requested: the strongest."),
    Column("created_at", DateTime(timezone=True), nullable=False, comment="The first event that showed it."),
    Column("stated_at", DateTime(timezone=True), nullable=False, comment="The latest event that showed it."),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Index("ix_customer_interest_customer_ref", "customer_ref"),
    # The fan-out tells those who asked first, then carted, then viewed: one keyset pass per reason.
    Index("ix_customer_interest_sku_reason", "sku", "reason", "customer_ref"),
)

catalog_fanouts = Table(
    "catalog_fanouts",
    metadata,
    # The transactional outbox of restocks and price drops (omnicart.catalog.outbox): written in the
    # transaction that applies the catalog events, so a change found is never lost before its
    # fan-out workflow starts.
    Column("kind", String(16), primary_key=True, comment="restock or price_drop."),
    Column("change_id", String(limits.MAX_ID_CHARS), primary_key=True, comment="The causing event's id."),
    Column("sku", String(limits.MAX_ID_CHARS), nullable=False),
    Column("payload", JSON, nullable=False, comment="The FanoutChange the workflow starts with."),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=True, comment="Null until its workflow started."),
    Index("ix_catalog_fanouts_unstarted", "started_at", "created_at"),
)
