"""The operators' list of quarantined inputs, across every customer.

A customer's workflow keeps what its interpreter failed on in its own state (the ``quarantine``
query); that is enough to replay it, but not to find it. So the workflow also records each entry
here (through the ``record_quarantine`` activity): ``omnicart quarantine list`` reads this table,
and ``omnicart quarantine replay`` asks each workflow to try again and notes the outcome.

Rows hold ids, types and the error text, never the event's properties.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Column, DateTime, Engine, Integer, String, Table, Text, select, update
from sqlalchemy.exc import IntegrityError
from temporalio.client import Client

from omnicart.signals import QUARANTINE_QUERY, REPLAY_QUARANTINE_UPDATE, QuarantineReport
from omnicart.storage import metadata

quarantined_inputs = Table(
    "quarantined_inputs",
    metadata,
    Column("workflow_id", String(300), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("kind", String(20), nullable=False),
    Column("event_id", String(200)),
    Column("event_type", String(100)),
    Column("run_id", String(200)),
    Column("journey", String(200)),
    Column("error", Text, nullable=False),
    Column("quarantined_at", DateTime(timezone=True), nullable=False),
    Column("replayed_at", DateTime(timezone=True)),
)


@dataclass(frozen=True)
class QuarantinedInput:
    workflow_id: str
    seq: int
    kind: str
    event_id: str | None
    event_type: str | None
    run_id: str | None
    journey: str | None
    error: str
    quarantined_at: datetime
    replayed_at: datetime | None


class QuarantineLog:
    """The table above, for the activity (writes) and the CLI (reads, marks replayed)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def record(self, report: QuarantineReport) -> int:
        """Insert the entries not recorded yet (a retried activity repeats itself); returns how many."""
        inserted = 0
        for entry in report.entries:
            row = {
                "workflow_id": report.workflow_id,
                "seq": int(entry["seq"]),
                "kind": str(entry["kind"]),
                "event_id": entry.get("event_id"),
                "event_type": entry.get("event_type"),
                "run_id": entry.get("run_id"),
                "journey": entry.get("journey"),
                "error": str(entry["error"]),
                "quarantined_at": datetime.fromisoformat(str(entry["at"]).replace("Z", "+00:00")),
            }
            try:
                with self.engine.begin() as connection:
                    connection.execute(quarantined_inputs.insert().values(**row))
                inserted += 1
            except IntegrityError:
                continue
        return inserted

    def open_entries(self, limit: int = 100) -> list[QuarantinedInput]:
        """Entries not replayed yet, oldest first."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(quarantined_inputs)
                .where(quarantined_inputs.c.replayed_at.is_(None))
                .order_by(quarantined_inputs.c.quarantined_at, quarantined_inputs.c.seq)
                .limit(limit)
            ).all()
        return [QuarantinedInput(**row._asdict()) for row in rows]

    def mark_replayed(self, workflow_id: str, seqs: Sequence[int], at: datetime | None = None) -> None:
        """Note that these entries were tried again (one that failed again comes back under a new seq)."""
        if not seqs:
            return
        with self.engine.begin() as connection:
            connection.execute(
                update(quarantined_inputs)
                .where(quarantined_inputs.c.workflow_id == workflow_id, quarantined_inputs.c.seq.in_(list(seqs)))
                .values(replayed_at=at or datetime.now(UTC))
            )


async def replay(client: Client, log: QuarantineLog, workflow_ids: Iterable[str]) -> dict[str, list[dict[str, Any]]]:
    """Ask each customer's workflow to try its quarantined events again (after a fix is deployed).

    Answers what is still quarantined per workflow; the entries tried are marked replayed (one that
    failed again is a new entry, recorded by the workflow under a new number).
    """
    remaining: dict[str, list[dict[str, Any]]] = {}
    for workflow_id in dict.fromkeys(workflow_ids):
        handle = client.get_workflow_handle(workflow_id)
        before: list[dict[str, Any]] = await handle.query(QUARANTINE_QUERY)
        after: list[dict[str, Any]] = await handle.execute_update(
            REPLAY_QUARANTINE_UPDATE, result_type=list[dict[str, Any]]
        )
        tried = [int(entry["seq"]) for entry in before if entry["kind"] == "event"]
        await asyncio.to_thread(log.mark_replayed, workflow_id, tried)
        remaining[workflow_id] = after
    return remaining
