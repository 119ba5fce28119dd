"""Alembic's environment for omnicart: run by ``omnicart.storage.migrate`` (and the ``alembic`` CLI).

``render_as_batch`` makes autogenerate write ``ALTER``s as batch operations, which SQLite needs
(it can add a column but not alter or drop one; batch mode copies the table) and which run as plain
``ALTER``s on PostgreSQL.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from omnicart.storage.engine import get_engine
from omnicart.storage.schema import load_tables

config = context.config
target_metadata = load_tables()


def run_on(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run() -> None:
    if context.is_offline_mode():
        context.configure(
            url=config.get_main_option("sqlalchemy.url"),
            target_metadata=target_metadata,
            render_as_batch=True,
            literal_binds=True,
        )
        with context.begin_transaction():
            context.run_migrations()
        return
    given: Connection | None = config.attributes.get("connection")
    if given is not None:
        run_on(given)
        return
    url = config.get_main_option("sqlalchemy.url")
    assert url is not None, "set sqlalchemy.url (omnicart.storage.migrate.alembic_config does)"
    with get_engine(url).begin() as connection:
        run_on(connection)


run()
