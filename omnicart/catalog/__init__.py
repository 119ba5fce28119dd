"""The shop's catalog: products, stock per location, prices over time, stores, and customers' interest.

Kept in the product database from catalog and store events (``product_updated``,
``inventory_changed``, ``price_changed``, ``store_updated``) and customers' own events, by the ingest
API; read by what journeys need next: is it in stock, which stores near the customer have it, what
was its lowest price in the 30 days before a reduction, and who is interested when it comes back.
"""

from omnicart.catalog.apply import apply_catalog_events, is_catalog_event
from omnicart.catalog.changes import CatalogChanges, PriceDrop, Restock
from omnicart.catalog.interest import (
    Interested,
    InterestPage,
    InterestRecorder,
    count_interested,
    interested_customers,
)
from omnicart.catalog.prices import is_honest_drop, lowest_price
from omnicart.catalog.stock import StoreStock, in_stock, stock_of, stores_with_stock

__all__ = [
    "CatalogChanges",
    "InterestPage",
    "InterestRecorder",
    "Interested",
    "PriceDrop",
    "Restock",
    "StoreStock",
    "apply_catalog_events",
    "count_interested",
    "in_stock",
    "interested_customers",
    "is_catalog_event",
    "is_honest_drop",
    "lowest_price",
    "stock_of",
    "stores_with_stock",
]
