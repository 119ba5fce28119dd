"""Where analytics rows are kept: one table of journey actions, one of message outcomes.

Rows arrive more than once by design (a retried activity, a replayed workflow, a webhook the
provider delivers again), and their ids are derived from what they record (``omnicart.analytics.rows``),
so storing is ``INSERT ... ON CONFLICT DO NOTHING``: the first copy wins, the others change nothing,
and a fact is counted once however often it is told.

A customer is stored only by reference (``omnicart.security.pseudonym.customer_ref``: the id when it
is opaque, its keyed hash when it is an email or phone number), so the report counts distinct
customers without the table ever naming anyone; ``omnicart forget`` deletes a customer's rows by it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import SecretStr
from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    DateTime,
    Engine,
    Float,
    Index,
    String,
    Table,
    delete,
    false,
    select,
)

from omnicart.analytics.rollup_tables import ROLLUP_TABLES
from omnicart.analytics.rows import JourneyActionRow, MessageOutcomeRow
from omnicart.security.pseudonym import customer_ref
from omnicart.storage import insert_ignoring_existing, metadata

journey_actions = Table(
    "journey_actions",
    metadata,
    Column("action_id", String(64), primary_key=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("customer_ref", String(200), nullable=False, comment="customer_ref(): no raw email or phone."),
    Column("journey", String(200), nullable=False),
    Column("version", String(200), nullable=False),
    Column("run_id", String(200), nullable=True),
    Column("category", String(20), nullable=False),
    Column("action", String(20), nullable=False),
    Column("step", String(200), nullable=True),
    Column("channel", String(10), nullable=True),
    Column("template", String(200), nullable=True),
    Column("reason", String(200), nullable=True),
    Column("value", Float, nullable=True),
    Column("currency", String(3), nullable=True),
    Column("message_id", String(200), nullable=True, comment="A send's; a conversion's credited."),
    Column("experiment", String(200), nullable=True),
    Column("variant", String(200), nullable=True),
    Column("holdout", String(10), nullable=True),
    Column("folded", Boolean, nullable=False, server_default=false(), index=True,
           comment="Summed into the report tables yet (omnicart.analytics.rollups)."),
    Index("ix_journey_actions_journey_at", "journey", "at"),
    Index("ix_journey_actions_message_id", "message_id"),
    Index("ix_journey_actions_customer_ref", "customer_ref"),
)

message_outcomes = Table(
    "message_outcomes",
    metadata,
    Column("outcome_id", String(64), primary_key=True),
    Column("message_id", String(200), nullable=False, index=True),
    Column("outcome", String(20), nullable=False),
    Column("machine", Boolean, nullable=False, default=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("channel", String(10), nullable=True),
    Column("folded", Boolean, nullable=False, server_default=false(), index=True,
           comment="Summed into the report tables yet (omnicart.analytics.rollups)."),
)


def record_actions(engine: Engine, rows: Iterable[JourneyActionRow], secret: SecretStr | None = None) -> int:
    """Store journey actions, ignoring those already stored; how many were new.

    ``secret`` keys the pseudonym of personal customer ids (default: the configured signing secret).
    """
    values = [_action_values(row, secret) for row in rows]
    return _insert_new(engine, journey_actions, "action_id", values)


def record_outcomes(engine: Engine, rows: Iterable[MessageOutcomeRow]) -> int:
    """Store message outcomes, ignoring those already stored; how many were new."""
    values = [row.model_dump() for row in rows]
    return _insert_new(engine, message_outcomes, "outcome_id", values)


def delete_customer_rows(conn: Connection, reference: str) -> int:
    """Erase one customer's analytics (``reference`` as ``customer_ref`` makes it): their actions and
    what became of the messages they were sent. How many rows went."""
    sent = select(journey_actions.c.message_id).where(
        journey_actions.c.customer_ref == reference,
        journey_actions.c.action == "send",
        journey_actions.c.message_id.is_not(None),
    )
    deleted = conn.execute(delete(message_outcomes).where(message_outcomes.c.message_id.in_(sent))).rowcount
    for summary in ROLLUP_TABLES:  # their sums go with them (not counted in what went)
        conn.execute(delete(summary).where(summary.c.customer_ref == reference))
    return deleted + conn.execute(delete(journey_actions).where(journey_actions.c.customer_ref == reference)).rowcount


def _action_values(row: JourneyActionRow, secret: SecretStr | None) -> dict[str, Any]:
    values = row.model_dump(exclude={"customer_id"})
    values["customer_ref"] = customer_ref(row.customer_id, secret)
    return values


def _insert_new(engine: Engine, table: Table, key: str, values: Sequence[dict[str, Any]]) -> int:
    """One transaction; a row whose key is already there is skipped (also when another process races)."""
    if not values:
        return 0
    with engine.begin() as conn:
        # RETURNING, not rowcount: a driver's executemany need not count (psycopg answers -1).
        statement = insert_ignoring_existing(conn, table, key).returning(table.c[key])
        return len(conn.execute(statement, list(values)).all())
