"""omnicart's own state (message ledger, event log, discount codes): engine, tables, migrations."""

from omnicart.storage.engine import (
    display_url,
    get_engine,
    in_chunks,
    insert_ignoring_existing,
    metadata,
    update_rows,
    utc,
)
from omnicart.storage.migrate import SchemaNotCurrent, require_current, upgrade

__all__ = [
    "SchemaNotCurrent",
    "display_url",
    "get_engine",
    "in_chunks",
    "insert_ignoring_existing",
    "metadata",
    "require_current",
    "update_rows",
    "upgrade",
    "utc",
]
