"""Running one benchmark on both databases the product supports: SQLite in a scratch folder, then
a throwaway PostgreSQL server started from the installed binaries (tests/support/postgres.py)."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

from tests.support.postgres import PostgresServer


def on_sqlite_and_postgresql(bench: Callable[[str], None]) -> None:
    """Call ``bench`` with the URL of a new SQLite database, then of a new PostgreSQL one."""
    with tempfile.TemporaryDirectory() as scratch:
        bench(f"sqlite:///{Path(scratch) / 'bench.db'}")
    server = PostgresServer()
    server.start()
    try:
        bench(server.create_database())
    finally:
        server.stop()
