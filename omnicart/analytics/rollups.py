"""Folding the raw analytics rows into the report tables (``omnicart.analytics.rollup_tables``).

The worker and the webhooks keep writing only the raw rows they always wrote; the console folds
them in, a few seconds later, off their path. Each raw row has a ``folded`` flag (false when
written) and a fold is one transaction that

1. locks the one ``report_fold_state`` row, so two console processes folding at once take turns
   (on SQLite the lock is the database's write lock; on PostgreSQL the row's);
2. reads rows not folded yet (an index on the flag: the rows written since the last fold);
3. adds them to the report tables and marks them folded, in the same transaction.

A row is therefore summed exactly once: a fold that fails changes nothing, a second fold finds
nothing new. A flag rather than a position in the table: on PostgreSQL, rows whose transactions
commit out of order would slip behind a high-water mark. A database upgraded with rows already in
it has every row unfolded, so the first fold sums everything from the start.

Late rows update the run they belong to, however old: an open, a click or a bounce sets the flag
on its message's row; a conversion is a row of its run (its window is when the run entered).
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, RowMapping, Table, false, select, true, tuple_, update

from omnicart.analytics.rollup_tables import (
    NO_RUN,
    NO_STEP,
    report_conversions,
    report_exposures,
    report_fold_state,
    report_messages,
    report_runs,
    report_step_counts,
)
from omnicart.analytics.store import journey_actions, message_outcomes
from omnicart.storage import in_chunks, insert_ignoring_existing, update_rows, utc

log = logging.getLogger(__name__)

BATCH = 20_000
"""Raw rows per transaction: a fold of a large backlog commits as it goes and never holds the
database's write lock for long."""
FOLD_STATE = "analytics"
FLAGS = ("delivered", "clicked", "bounced", "failed", "unsubscribed")
"""Outcomes that set the flag of the same name on their message's row (opens are told apart)."""

RunKey = tuple[str, str, str]
"""(journey, customer_ref, run_id)."""


def fold(engine: Engine, batch: int = BATCH) -> int:
    """Fold every raw row written since the last fold into the report tables; how many were folded."""
    total = 0
    while True:
        with engine.begin() as conn:
            _lock(conn)
            actions, outcomes = _fold_batch(conn, batch)
        total += actions + outcomes
        if actions < batch and outcomes < batch:
            return total


def folded_at(engine: Engine) -> datetime | None:
    """When the last fold started: the report tables hold every row committed before then."""
    with engine.connect() as conn:
        value = conn.execute(select(report_fold_state.c.folded_at).where(report_fold_state.c.name == FOLD_STATE))
        at = value.scalar()
    return utc(at) if at is not None else None


async def fold_every(engine: Engine, seconds: float, first: asyncio.Event | None = None) -> None:
    """Fold now and then every ``seconds``, until cancelled (the console runs it in the background);
    ``first`` is set once the first fold has ended, well or not."""
    while True:
        try:
            folded = await asyncio.to_thread(fold, engine)
            if folded:
                log.debug("folded %d analytics rows into the report tables", folded)
        except Exception:  # a database hiccup must not stop the console's folding for good
            log.exception("folding analytics rows failed; trying again in %s s", seconds)
        if first is not None:
            first.set()
        await asyncio.sleep(seconds)


def _lock(conn: Connection) -> None:
    """Take the fold's lock (the first write of the transaction) and note when this fold started."""
    now = datetime.now(UTC)
    state = update(report_fold_state).where(report_fold_state.c.name == FOLD_STATE).values(folded_at=now)
    if conn.execute(state).rowcount == 0:
        conn.execute(insert_ignoring_existing(conn, report_fold_state, "name").values(name=FOLD_STATE, folded_at=now))
        conn.execute(state)


def _fold_batch(conn: Connection, limit: int) -> tuple[int, int]:
    actions = conn.execute(
        select(journey_actions).where(journey_actions.c.folded == false()).order_by(journey_actions.c.at).limit(limit)
    ).mappings().all()
    outcomes = conn.execute(
        select(message_outcomes).where(message_outcomes.c.folded == false()).limit(limit)
    ).mappings().all()
    batch = _Batch(conn)
    batch.add_actions(actions)
    batch.write()
    batch.add_outcomes(outcomes)
    _mark_folded(conn, journey_actions, "action_id", [row["action_id"] for row in actions])
    _mark_folded(conn, message_outcomes, "outcome_id", [row["outcome_id"] for row in outcomes])
    return len(actions), len(outcomes)


def _mark_folded(conn: Connection, table: Table, key: str, ids: list[str]) -> None:
    for part in in_chunks(ids):
        conn.execute(update(table).where(table.c[key].in_(part)).values(folded=True))


@dataclass
class _Batch:
    """What one batch of raw rows adds to the report tables, merged with the rows already there."""

    conn: Connection
    runs: dict[RunKey, dict[str, Any]] = field(default_factory=dict)
    existing_runs: set[RunKey] = field(default_factory=set)
    entered_late: set[RunKey] = field(default_factory=set)
    steps: dict[tuple[RunKey, str, str], list[int]] = field(default_factory=dict)
    messages: dict[str, dict[str, Any]] = field(default_factory=dict)
    conversions: list[dict[str, Any]] = field(default_factory=list)
    exposures: dict[tuple[RunKey, str], dict[str, Any]] = field(default_factory=dict)

    def add_actions(self, rows: Sequence[RowMapping]) -> None:
        self._load_runs({_run_key(row) for row in rows})
        for row in rows:  # in time order, as the report reads them
            key, at = _run_key(row), utc(row["at"])
            run = self.runs.setdefault(key, _new_run(key, row, at))
            _apply_to_run(run, row, at)
            action, step = row["action"], row["step"] or NO_STEP
            if action in ("step", "send", "skip", "hold"):
                self._count(key, step, "", reached=1, held=int(action == "hold"))
            if action == "skip":
                self._count(key, step, row["reason"] or "unknown", skipped=1)
            elif action == "send":
                message_key = row["message_id"] or row["action_id"]
                self.messages.setdefault(message_key, {"message_key": message_key, "run": key, "step": step})
            elif action == "convert":
                self.conversions.append({
                    "action_id": row["action_id"], "run": key, "at": at, "step": step, "value": row["value"],
                    "currency": row["currency"], "message_id": row["message_id"]})
            elif action == "step" and row["experiment"] is not None:
                exposure = self.exposures.get((key, row["experiment"]))
                if exposure is None or at < exposure["at"]:
                    self.exposures[(key, row["experiment"])] = {"at": at, "variant": row["variant"]}

    def _count(self, key: RunKey, step: str, reason: str, reached: int = 0, held: int = 0, skipped: int = 0) -> None:
        counts = self.steps.setdefault((key, step, reason), [0, 0, 0])
        counts[0] += reached
        counts[1] += held
        counts[2] += skipped

    def _load_runs(self, keys: set[RunKey]) -> None:
        for row in _existing(self.conn, report_runs, ("journey", "customer_ref", "run_id"), keys):
            key = (row["journey"], row["customer_ref"], row["run_id"])
            self.runs[key] = {**row, "entered_at": _aware(row["entered_at"]), "last_at": utc(row["last_at"]),
                              "last_step_at": _aware(row["last_step_at"])}
            self.existing_runs.add(key)
            if row["entered_at"] is None:
                self.entered_late.add(key)

    def write(self) -> None:
        """Write the runs and what hangs off them, each with its run's ``entered_at``."""
        conn = self.conn
        new = [run for key, run in self.runs.items() if key not in self.existing_runs]
        if new:
            conn.execute(report_runs.insert(), new)
        update_rows(conn, report_runs, [run for key, run in self.runs.items() if key in self.existing_runs])
        self._write_steps()
        self._write_messages()
        if self.conversions:
            conn.execute(insert_ignoring_existing(conn, report_conversions, "action_id"),
                         [self._with_run(row) for row in self.conversions])
        self._write_exposures()
        # Rows of a run folded before its enter (rare: the enter's batch came later) get it now.
        for key in self.entered_late:
            entered_at = self.runs[key]["entered_at"]
            if entered_at is None:
                continue
            for table in (report_step_counts, report_messages, report_conversions, report_exposures):
                conn.execute(update(table).where(*_is_run(table, key), table.c.entered_at.is_(None))
                             .values(entered_at=entered_at))

    def _with_run(self, row: dict[str, Any]) -> dict[str, Any]:
        journey, customer, run_id = key = row.pop("run")
        return {**row, "journey": journey, "customer_ref": customer, "run_id": run_id,
                "entered_at": self.runs[key]["entered_at"]}

    def _write_steps(self) -> None:
        if not self.steps:
            return
        names = ("journey", "customer_ref", "run_id", "step", "skip_reason")
        wanted = {(*key, step, reason) for key, step, reason in self.steps}
        stored = {tuple(row[name] for name in names): row
                  for row in _existing(self.conn, report_step_counts, names, wanted)}
        inserts, updates = [], []
        for (key, step, reason), (reached, held, skipped) in self.steps.items():
            old = stored.get((*key, step, reason))
            values = self._with_run({"run": key, "step": step, "skip_reason": reason,
                                     "reached": reached, "held": held, "skipped": skipped})
            if old is None:
                inserts.append(values)
            else:
                for name in ("reached", "held", "skipped"):
                    values[name] += old[name]
                values["entered_at"] = values["entered_at"] or old["entered_at"]
                updates.append(values)
        if inserts:
            self.conn.execute(report_step_counts.insert(), inserts)
        update_rows(self.conn, report_step_counts, updates)

    def _write_messages(self) -> None:
        """New messages, each with what was already heard of it and whether it went out after all."""
        if not self.messages:
            return
        ids = list(self.messages)
        heard: dict[str, set[str]] = defaultdict(set)
        for part in in_chunks(ids):
            about = select(message_outcomes.c.message_id, message_outcomes.c.outcome, message_outcomes.c.machine)
            for message_id, outcome, machine in self.conn.execute(about.where(message_outcomes.c.message_id.in_(part))):
                heard[message_id].add(_flag(outcome, machine))
        rows = []
        for message_key, message in self.messages.items():
            flags = heard.get(message_key, set())
            rows.append(self._with_run({**message, **{name: name in flags for name in (*FLAGS, *OPENS)},
                                        "unsent": False}))
        self.conn.execute(insert_ignoring_existing(self.conn, report_messages, "message_key"), rows)
        self._mark_unsent(ids)

    def _mark_unsent(self, message_ids: list[str]) -> None:
        """A send skipped when it went out (its skip names the message) reached nobody."""
        table = journey_actions.c
        for part in in_chunks(message_ids):
            skipped = select(table.message_id).where(table.action == "skip", table.message_id.in_(part))
            unsent = sorted(set(self.conn.execute(skipped).scalars()))
            if unsent:
                self.conn.execute(update(report_messages).where(report_messages.c.message_key.in_(unsent))
                                  .values(unsent=True))

    def _write_exposures(self) -> None:
        if not self.exposures:
            return
        names = ("journey", "customer_ref", "run_id", "experiment")
        stored = {tuple(row[name] for name in names): row
                  for row in _existing(self.conn, report_exposures, names,
                                       {(*key, experiment) for key, experiment in self.exposures})}
        inserts, updates = [], []
        for (key, experiment), exposure in self.exposures.items():
            values = self._with_run({"run": key, "experiment": experiment, **exposure})
            old = stored.get((*key, experiment))
            if old is None:
                inserts.append(values)
            elif exposure["at"] < utc(old["at"]):
                updates.append({**values, "entered_at": values["entered_at"] or old["entered_at"]})
        if inserts:
            self.conn.execute(report_exposures.insert(), inserts)
        update_rows(self.conn, report_exposures, updates)

    def add_outcomes(self, rows: Sequence[RowMapping]) -> None:
        """Set the flags of the messages these outcomes are about (a flag set twice is set once)."""
        by_flag: dict[str, set[str]] = defaultdict(set)
        for row in rows:
            by_flag[_flag(row["outcome"], row["machine"])].add(row["message_id"])
        for name, ids in by_flag.items():
            for part in in_chunks(sorted(ids)):
                self.conn.execute(update(report_messages).where(report_messages.c.message_key.in_(part))
                                  .values({name: true()}))


OPENS = ("person_opened", "machine_opened")


def _flag(outcome: str, machine: bool) -> str:
    if outcome == "opened":
        return "machine_opened" if machine else "person_opened"
    return outcome


def _run_key(row: RowMapping) -> RunKey:
    return (row["journey"], row["customer_ref"], row["run_id"] or NO_RUN)


def _new_run(key: RunKey, row: RowMapping, at: datetime) -> dict[str, Any]:
    journey, customer, run_id = key
    return {"journey": journey, "customer_ref": customer, "run_id": run_id, "entered_at": None,
            "version": row["version"], "category": row["category"], "last_at": at, "holdout": False,
            "last_step": None, "last_step_at": None, "exits": 0, "exit_reason": None}


def _apply_to_run(run: dict[str, Any], row: RowMapping, at: datetime) -> None:
    """What one row tells of its run, in the report's terms (``omnicart.analytics.report``)."""
    if at >= run["last_at"]:
        run["last_at"], run["category"] = at, row["category"]
    if row["holdout"] is not None:
        run["holdout"] = True
    action = row["action"]
    if action == "enter" and (run["entered_at"] is None or at < run["entered_at"]):
        run["entered_at"], run["version"] = at, row["version"]
    elif action == "step" and (run["last_step_at"] is None or at >= run["last_step_at"]):
        run["last_step"], run["last_step_at"] = row["step"] or NO_STEP, at
    elif action == "exit":
        run["exits"] += 1
        run["exit_reason"] = row["reason"] or "unknown"


def _is_run(table: Table, key: RunKey) -> list[Any]:
    return [table.c.journey == key[0], table.c.customer_ref == key[1], table.c.run_id == key[2]]


def _existing(conn: Connection, table: Table, names: Sequence[str], keys: Iterable[tuple[str, ...]]
              ) -> Iterator[RowMapping]:
    """The stored rows of ``table`` with these keys (in ``names`` order)."""
    columns = tuple_(*(table.c[name] for name in names))
    for part in in_chunks(sorted(keys)):
        yield from conn.execute(select(table).where(columns.in_(part))).mappings()


def _aware(value: datetime | None) -> datetime | None:
    return utc(value) if value is not None else None

