"""The product database's rows about customers, and the two ways personal data leaves them.

Shared by erasure (one customer, now) and retention (everyone, after N days), so both know the
same list of tables: recipients (addresses) are deleted; provider error texts (they may quote an
address) are cleared; the customer id in the ledger, event log and discount codes is replaced by a
keyed hash, keeping counts and conversions while no longer naming anyone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, Connection, Table, delete, or_, select, update

from omnicart.api.event_log import ingested_events
from omnicart.discounts import discount_codes
from omnicart.ledger import message_ledger, message_recipients
from omnicart.security.pseudonym import looks_personal

PSEUDONYMISED: dict[Table, str] = {
    message_ledger: "updated_at",
    ingested_events: "received_at",
    discount_codes: "issued_at",
}
"""Tables whose ``customer_id`` is replaced by a keyed hash, with the column that dates a row."""


@dataclass
class Erased:
    """How much personal data one erasure or retention pass removed, by kind."""

    recipients_deleted: int = 0
    errors_cleared: int = 0
    rows_pseudonymised: int = 0
    outbox_lines_deleted: int = 0

    def lines(self) -> list[str]:
        return [
            f"message recipients deleted: {self.recipients_deleted}",
            f"provider error texts cleared: {self.errors_cleared}",
            f"rows whose customer id is now a keyed hash: {self.rows_pseudonymised}",
            f"outbox lines deleted: {self.outbox_lines_deleted}",
        ]

    def anything(self) -> bool:
        return any((self.recipients_deleted, self.errors_cleared, self.rows_pseudonymised, self.outbox_lines_deleted))


def delete_recipients(conn: Connection, where: ColumnElement[bool]) -> int:
    return conn.execute(delete(message_recipients).where(where)).rowcount


def clear_errors(conn: Connection, where: ColumnElement[bool]) -> int:
    query = update(message_ledger).where(where, message_ledger.c.error.is_not(None)).values(error=None)
    return conn.execute(query).rowcount


def pseudonymise(
    conn: Connection,
    customer_ids: Iterable[str],
    pseudonym: Callable[[str], str],
    older_than: datetime | None = None,
) -> int:
    """Replace each customer id by ``pseudonym(id)`` in every table that keeps customer ids.

    With ``older_than``, only in rows dated before it (retention leaves recent rows routable).
    """
    changed = 0
    for customer_id in customer_ids:
        for table, dated_by in PSEUDONYMISED.items():
            query = update(table).where(table.c.customer_id == customer_id)
            if older_than is not None:
                query = query.where(table.c[dated_by] < older_than)
            changed += conn.execute(query.values(customer_id=pseudonym(customer_id))).rowcount
    return changed


def personal_ids_before(conn: Connection, cutoff: datetime) -> set[str]:
    """Customer ids that are emails or phone numbers, in rows older than ``cutoff``."""
    found: set[str] = set()
    for table, dated_by in PSEUDONYMISED.items():
        query = select(table.c.customer_id).where(
            table.c[dated_by] < cutoff, or_(table.c.customer_id.contains("@"), table.c.customer_id.startswith("+"))
        )
        found.update(conn.execute(query.distinct()).scalars())
    return {customer_id for customer_id in found if looks_personal(customer_id)}
