"""One SQLAlchemy engine per database URL, and the ``MetaData`` every table of the product joins.

SQLite under the data directory by default; PostgreSQL (``postgresql+psycopg://``) in production,
where several workers and API processes on several machines must share one ledger and one event
log. Each component declares its tables on ``metadata`` in its own module; the schema itself is
made and changed only by the migrations (``omnicart db upgrade``), never by ``create_all``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, Insert, MetaData, Table, bindparam, create_engine, event, make_url, update
from sqlalchemy.dialects import postgresql, sqlite

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


IN_LIST_CHUNK = 500
"""Values per ``IN (...)`` list: well below SQLite's bound-parameter limit, and a plan PostgreSQL keeps."""

_T = TypeVar("_T")


def in_chunks(values: Sequence[_T], size: int = IN_LIST_CHUNK) -> Iterator[Sequence[_T]]:
    """``values`` in slices small enough for one ``IN (...)`` list each."""
    for start in range(0, len(values), size):
        yield values[start : start + size]


def utc(value: datetime) -> datetime:
    """A stored time as an aware UTC datetime, whichever database it came from.

    SQLite hands back naive datetimes (everything stored is UTC); PostgreSQL hands back aware ones
    in the session's time zone, which need not be UTC. Callers compare and print them: one form.
    """
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def display_url(url: str) -> str:
    """The URL with its password masked: what messages and logs may show."""
    return make_url(url).render_as_string(hide_password=True)


def insert_ignoring_existing(
    connection: Connection, table: Table, key: str | tuple[str, ...], *more_keys: str
) -> Insert:
    """``INSERT ... ON CONFLICT (key, ...) DO NOTHING``: for rows two processes may add at once, or
    that arrive twice, where the first copy wins and the others change nothing. ``key``: a column,
    or the columns of a composite primary key (as a tuple, or one after another)."""
    dialect = connection.dialect.name
    columns = [*([key] if isinstance(key, str) else key), *more_keys]
    if dialect == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing(index_elements=columns)
    if dialect == "sqlite":
        return sqlite.insert(table).on_conflict_do_nothing(index_elements=columns)
    raise NotImplementedError(f"{table.name} supports SQLite and PostgreSQL, not {dialect}")


def update_rows(connection: Connection, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """Write ``rows`` (every column of ``table`` by name) over the stored rows with the same primary
    key, in one executemany: what a merge of drafts into existing rows ends with."""
    if not rows:
        return
    keys = [column.name for column in table.primary_key.columns]
    values = [column.name for column in table.columns if column.name not in keys]
    connection.execute(
        update(table)
        .where(*(table.c[name] == bindparam(f"key_{name}") for name in keys))
        .values({name: bindparam(f"new_{name}") for name in values}),
        [{**{f"key_{n}": row[n] for n in keys}, **{f"new_{n}": row[n] for n in values}} for row in rows],
    )
