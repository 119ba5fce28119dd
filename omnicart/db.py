"""One SQLAlchemy engine for the product's own tables (event log, message ledger).

SQLite under the data directory by default; any SQLAlchemy URL (PostgreSQL, MySQL) in production.
Each component declares its tables on ``metadata`` in its own module; ``create_tables`` makes them.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from sqlalchemy import Engine, MetaData, create_engine, event

metadata = MetaData()


@lru_cache(maxsize=8)
def get_engine(url: str) -> Engine:
    """A pooled engine per URL; SQLite gets WAL so the API and a worker can share the file."""
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(connection, _record):  # type: ignore[no-untyped-def]
            cursor = connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


def create_tables(engine: Engine) -> None:
    metadata.create_all(engine)
