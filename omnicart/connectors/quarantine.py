"""Connector deliveries that were genuine but could not be mapped: kept, listed, replayed.

Shopify and WooCommerce disable a webhook subscription after a run of failed deliveries, so a
correctly signed payload that omnicart cannot turn into events (an inventory item no
``products/update`` has linked to a sku yet, a Segment event the mapping does not name, a phone
number that is not E.164) is answered ``2xx`` and kept here with its reason. An operator lists
them (``omnicart connectors quarantine list`` or ``GET /v1/connectors/quarantine``), fixes the
mapping, and replays them: each goes through the same mapping and ingest path again.

Rows keep the raw payload until a replay takes it in, because replay needs it: it may hold personal
data, so the table is read only through the operator's token, the reason text never quotes payload
values, and erasing a customer (``omnicart forget``, Shopify's ``customers/redact``) deletes the
rows that name them.
A row is keyed by its connector and the platform's delivery id, so a redelivery is kept once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Column, Connection, DateTime, Engine, LargeBinary, String, Table, Text, delete, select, update

from omnicart import limits
from omnicart.storage import insert_ignoring_existing, metadata, utc

connector_quarantine = Table(
    "connector_quarantine",
    metadata,
    Column("connector", String(20), primary_key=True, comment="shopify, woocommerce or segment."),
    Column("delivery_id", String(limits.MAX_ID_CHARS), primary_key=True, comment="The platform's id."),
    Column("topic", String(100), nullable=False, comment="Webhook topic or Segment call type and event."),
    Column("customer_id", String(limits.MAX_ID_CHARS), nullable=True, comment="When the payload names one."),
    Column("reason", Text, nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=False, comment="When the platform says it happened."),
    Column("context", Text, nullable=False, comment="JSON: what headers added (shop domain...)."),
    Column("payload", LargeBinary, nullable=False, comment="The body as received (may hold personal data)."),
    Column("quarantined_at", DateTime(timezone=True), nullable=False),
    Column("replayed_at", DateTime(timezone=True), nullable=True, comment="Set once a replay took it in."),
)


@dataclass(frozen=True)
class Delivery:
    """One genuine message from a platform, as mapping needs it (and as the quarantine keeps it)."""

    connector: str
    delivery_id: str
    topic: str
    payload: bytes
    occurred_at: datetime
    context: dict[str, str]

    def json(self) -> Any:
        """The payload as JSON, or None when it is not JSON (the mapping then says why it cannot map it)."""
        try:
            return limits.load_json(self.payload)
        except (limits.InvalidJson, RecursionError, UnicodeDecodeError):
            return None


@dataclass(frozen=True)
class QuarantinedDelivery:
    delivery: Delivery
    customer_id: str | None
    reason: str
    quarantined_at: datetime
    replayed_at: datetime | None


class ConnectorQuarantine:
    """The table above: add (once per delivery), list, mark replayed, delete a customer's rows."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def keep(self, delivery: Delivery, reason: str, customer_id: str | None = None) -> bool:
        """Keep ``delivery`` with its reason; False when it was kept already (a redelivery)."""
        row = {
            "connector": delivery.connector,
            "delivery_id": delivery.delivery_id,
            "topic": delivery.topic[:100],
            "customer_id": (customer_id or None) and customer_id[: limits.MAX_ID_CHARS],
            "reason": reason,
            "occurred_at": delivery.occurred_at,
            "context": json.dumps(delivery.context, sort_keys=True),
            "payload": delivery.payload,
            "quarantined_at": datetime.now(UTC),
        }
        with self.engine.begin() as connection:
            insert = insert_ignoring_existing(connection, connector_quarantine, "connector", "delivery_id")
            return bool(connection.execute(insert.values(**row)).rowcount)

    def open_entries(self, connector: str | None = None, limit: int = 100) -> list[QuarantinedDelivery]:
        """Entries not replayed yet, oldest first."""
        query = select(connector_quarantine).where(connector_quarantine.c.replayed_at.is_(None))
        if connector is not None:
            query = query.where(connector_quarantine.c.connector == connector)
        query = query.order_by(connector_quarantine.c.quarantined_at, connector_quarantine.c.delivery_id).limit(limit)
        with self.engine.connect() as connection:
            rows = connection.execute(query).all()
        return [_entry(row._asdict()) for row in rows]

    def mark_replayed(self, delivery: Delivery) -> None:
        """Taken in by a replay: the row stays as a record, its payload (maybe personal) goes."""
        self._update(delivery, replayed_at=datetime.now(UTC), payload=b"")

    def note_reason(self, delivery: Delivery, reason: str) -> None:
        """A replay failed again: keep the newest reason."""
        self._update(delivery, reason=reason)

    def _update(self, delivery: Delivery, **values: Any) -> None:
        with self.engine.begin() as connection:
            connection.execute(
                update(connector_quarantine)
                .where(
                    connector_quarantine.c.connector == delivery.connector,
                    connector_quarantine.c.delivery_id == delivery.delivery_id,
                )
                .values(**values)
            )

    def forget_connector(self, connector: str) -> int:
        """Delete every row of one connector (a shop that uninstalled: Shopify's ``shop/redact``)."""
        with self.engine.begin() as connection:
            result = connection.execute(
                delete(connector_quarantine).where(connector_quarantine.c.connector == connector)
            )
        return int(result.rowcount)


def delete_quarantined_deliveries(connection: Connection, customer_id: str) -> int:
    """Delete the quarantined deliveries naming ``customer_id`` (``omnicart forget``); returns how many."""
    result = connection.execute(delete(connector_quarantine).where(connector_quarantine.c.customer_id == customer_id))
    return int(result.rowcount)


def _entry(row: dict[str, Any]) -> QuarantinedDelivery:
    delivery = Delivery(
        connector=row["connector"],
        delivery_id=row["delivery_id"],
        topic=row["topic"],
        payload=bytes(row["payload"]),
        occurred_at=utc(row["occurred_at"]),
        context=json.loads(row["context"]),
    )
    return QuarantinedDelivery(
        delivery=delivery,
        customer_id=row["customer_id"],
        reason=row["reason"],
        quarantined_at=utc(row["quarantined_at"]),
        replayed_at=row["replayed_at"] and utc(row["replayed_at"]),
    )
