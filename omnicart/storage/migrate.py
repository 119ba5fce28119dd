"""Bringing a database to the schema this code needs: Alembic, run from Python, one process at a time.

``omnicart db upgrade`` calls ``upgrade``; the worker and the API call ``require_current`` at start
and refuse to run on an older (or newer) schema rather than fail later on a missing column.

Three things Alembic alone does not do for us:

* **One migrator at a time.** Deployments start several processes at once; two of them running
  the same ``ALTER`` is at best an error. PostgreSQL: a session advisory lock held for the whole
  upgrade. SQLite: a lock file next to the database (SQLite cannot run DDL in a transaction that
  excludes other connections the way Alembic needs).
* **Databases made before migrations.** Earlier versions made the tables with ``create_all``; such
  a database has every baseline table and no ``alembic_version``. It is stamped at the baseline
  (and then upgraded) instead of failing on "table already exists".
* **Configuration without ``alembic.ini``.** The scripts ship inside the package
  (``omnicart/storage/migrations``), so an installed wheel can migrate its database.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from filelock import FileLock
from sqlalchemy import Connection, Engine, inspect, text

from omnicart.storage.engine import get_engine

SCRIPT_LOCATION = "omnicart.storage:migrations"
BASELINE = "0001_baseline"
# The tables ``create_all`` made before migrations existed: what the baseline revision creates.
BASELINE_TABLES = frozenset(
    {"message_ledger", "message_recipients", "message_evidence", "ingested_events", "discount_codes"}
)
# Any fixed 64-bit number, the same in every process: pg_advisory_lock's key for "migrating".
ADVISORY_LOCK_KEY = 0x6F6D6E6963617274  # "omnicart"
UPGRADE_COMMAND = "omnicart db upgrade"


class SchemaNotCurrent(RuntimeError):
    """The database is not at the schema this code was written for."""


class PartialLegacySchema(RuntimeError):
    """Some, not all, pre-migration tables exist: neither a fresh database nor one to stamp."""


def alembic_config(url: str, connection: Connection | None = None) -> Config:
    """Alembic's configuration for this database, built in code (no ``alembic.ini``).

    With ``connection``, Alembic runs on it (inside the caller's lock and transaction).
    """
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    config.attributes["connection"] = connection
    return config


def head_revisions() -> tuple[str, ...]:
    """The revisions the code needs (one, unless two branches were merged without a merge revision)."""
    return tuple(ScriptDirectory.from_config(alembic_config("sqlite://")).get_heads())


def current_revisions(engine: Engine) -> tuple[str, ...]:
    """The revisions the database is at; empty for a database never migrated."""
    with engine.connect() as connection:
        return tuple(MigrationContext.configure(connection).get_current_heads())


def upgrade(url: str, revision: str = "head") -> tuple[str, ...]:
    """Migrate the database at ``url`` to ``revision``, holding the migration lock; its revisions after."""
    engine = get_engine(url)
    with migration_lock(engine), engine.begin() as connection:
        config = alembic_config(url, connection)
        if _is_legacy(connection):
            command.stamp(config, BASELINE)
        command.upgrade(config, revision)
    return current_revisions(engine)


def check_models(url: str) -> None:
    """``alembic check``: raise when the tables declared in code differ from what the migrations make.

    The database at ``url`` must be at head. Tests run this so a table or column added without a
    migration fails CI rather than a deployment.
    """
    engine = get_engine(url)
    with engine.connect() as connection:
        command.check(alembic_config(url, connection))


def new_revision(message: str) -> Path:
    """Write a migration for what the declared tables have and the migrations do not (autogenerate).

    It compares against a throwaway SQLite database at head, so it needs no server; the file lands
    in ``omnicart/storage/migrations/versions`` for a person to review (see docs/DEPLOYMENT.md).
    """
    with tempfile.TemporaryDirectory() as scratch:
        url = f"sqlite:///{Path(scratch) / 'head.db'}"
        upgrade(url)
        engine = get_engine(url)
        try:
            with engine.connect() as connection:
                script = command.revision(alembic_config(url, connection), message=message, autogenerate=True)
        finally:
            engine.dispose()
    assert script is not None and not isinstance(script, list)
    return Path(script.path)


def require_current(engine: Engine) -> None:
    """Raise ``SchemaNotCurrent``, saying what to run, unless the database is exactly at head."""
    current, heads = current_revisions(engine), head_revisions()
    if set(current) != set(heads):
        where = engine.url.render_as_string(hide_password=True)
        at = ", ".join(current) or "no schema (never migrated)"
        raise SchemaNotCurrent(
            f"the database {where} is at {at}, this code needs {', '.join(heads)}: "
            f"run `{UPGRADE_COMMAND}` (with the same OMNICART_DATABASE_URL) before starting it"
        )


@contextlib.contextmanager
def migration_lock(engine: Engine) -> Iterator[None]:
    """Hold the database's migration lock: concurrent upgraders run one after the other."""
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": ADVISORY_LOCK_KEY})
            try:
                yield
            finally:
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": ADVISORY_LOCK_KEY})
        return
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if not database or database == ":memory:":
        yield  # in-memory SQLite: one connection, nobody else can see it
        return
    with FileLock(f"{database}.migrate.lock"):
        yield


def _is_legacy(connection: Connection) -> bool:
    """True for a database made by ``create_all`` before migrations: stamp it, do not create again."""
    tables = set(inspect(connection).get_table_names())
    if "alembic_version" in tables or not tables & BASELINE_TABLES:
        return False
    missing = BASELINE_TABLES - tables
    if missing:
        raise PartialLegacySchema(
            f"the database has some of omnicart's tables but not {', '.join(sorted(missing))}; "
            "it was not made by omnicart, or only in part: migrate it by hand or start from an empty one"
        )
    return True
