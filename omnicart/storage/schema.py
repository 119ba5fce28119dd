"""Which modules declare the product's tables: what the migrations compare the database with.

Tables live next to the code that uses them (the ledger in ``omnicart.ledger``, ...); importing
these modules puts every table on ``omnicart.storage.metadata``. A new table's module is added to
``TABLE_MODULES`` so that ``alembic check`` and autogenerate see it (see docs/DEPLOYMENT.md).
"""

from __future__ import annotations

import importlib

from sqlalchemy import MetaData

from omnicart.storage.engine import metadata

TABLE_MODULES = (
    "omnicart.ledger",
    "omnicart.api.event_log",
    "omnicart.discounts",
    "omnicart.quarantine",
    "omnicart.journey.registry",
    "omnicart.security.data_keys",
    "omnicart.customers.profiles",
    "omnicart.analytics.store",
    "omnicart.catalog.tables",
    "omnicart.date_coverage",
    "omnicart.consent.history",
    "omnicart.connectors.quarantine",
    "omnicart.connectors.shopify_inventory",
    "omnicart.console.users",
    "omnicart.api.webhook_inbox",
    "omnicart.identity",
    "omnicart.analytics.rollup_tables",
)


def load_tables() -> MetaData:
    """``metadata`` with every table of the product declared on it."""
    for module in TABLE_MODULES:
        importlib.import_module(module)
    return metadata
