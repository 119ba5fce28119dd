"""How a journey did: entries, what each step sent and what became of it, conversions and revenue.

``journey_report`` is a pure function of rows already loaded, so the stored rows
(``load_rows``), ``omnicart report --simulate`` and tests all compute the same report the same way.
What each number means is in docs/ANALYTICS.md; in short:

* a *run* is one pass of one customer through the journey; rows are counted for the runs that
  *entered* in the window (a run started on the last day counts with everything it did later);
* message numbers count distinct messages, each joined to its outcomes by ``message_id``; a
  machine open (a mail client's privacy proxy) is kept apart from people's opens;
* money is summed per currency, never across currencies.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from operator import attrgetter
from typing import Any, Literal, Protocol

from pydantic import BaseModel, Field
from sqlalchemy import Engine, exists, select
from sqlalchemy.engine import CursorResult

from omnicart.analytics.experiments import ExperimentResult
from omnicart.analytics.readouts import journey_readouts
from omnicart.analytics.rows import JourneyActionRow, MessageOutcomeRow
from omnicart.analytics.store import journey_actions, message_outcomes
from omnicart.journey.model import JourneyBundle
from omnicart.storage import in_chunks, utc

GroupBy = Literal["step", "variant", "channel", "version"]
GROUP_BY: tuple[GroupBy, ...] = ("step", "variant", "channel", "version")

RunKey = tuple[str, str | None]
"""(customer, run id): one run of the journey."""

_GROUPED_ACTIONS = frozenset({"step", "send", "skip", "hold"})


class GroupStats(BaseModel):
    """One step (or variant, channel, version) of the journey."""

    key: str | None = Field(description="The step, variant, channel or version; null for rows without one.")
    sent: int = 0
    delivered: int = 0
    opened: int = Field(default=0, description="Messages opened by a person.")
    machine_opened: int = Field(default=0, description="Messages opened only by a privacy proxy (Apple Mail).")
    clicked: int = 0
    bounced: int = 0
    failed: int = 0
    unsubscribed: int = 0
    skipped: dict[str, int] = Field(default_factory=dict, description="Sends not made, by reason.")
    held: int = Field(default=0, description="Sends held for later (quiet hours, frequency caps).")
    waiting: int = Field(default=0, description="Runs waiting at this step now.")
    conversions: int = Field(default=0, description="Conversions credited to this group's messages.")
    revenue: dict[str, float] = Field(default_factory=dict, description="Their revenue, per currency.")


class Audience(BaseModel):
    """The customers who got the journey (treated) or were held out of it on purpose."""

    entered_customers: int = 0
    converted_customers: int = 0
    conversion_rate: float | None = None
    revenue: dict[str, float] = Field(default_factory=dict)

    @classmethod
    def of(cls, entered: int, converted: int, converts: Iterable[Priced]) -> Audience:
        """The audience from its counts and conversions, however they were read (raw rows or report tables)."""
        return cls(entered_customers=entered, converted_customers=converted,
                   conversion_rate=rate(converted, entered), revenue=revenue_by_currency(converts))


class JourneyReport(BaseModel):
    """A journey's numbers for the runs that entered in [since, until)."""

    journey: str
    category: Literal["marketing", "transactional"] | None = None
    by: GroupBy = "step"
    since: datetime | None = None
    until: datetime | None = None
    entered_runs: int = 0
    entered_customers: int = 0
    active_runs: int = Field(default=0, description="Runs that entered and have not exited yet.")
    recipients: int = Field(default=0, description="Customers sent at least one message.")
    groups: list[GroupStats] = Field(default_factory=list)
    exits: dict[str, int] = Field(default_factory=dict, description="Runs that exited, by reason.")
    converted_runs: int = 0
    converted_customers: int = 0
    conversion_rate: float | None = Field(default=None, description="Converted customers / entered customers.")
    revenue: dict[str, float] = Field(default_factory=dict, description="All conversions' revenue, per currency.")
    revenue_per_recipient: dict[str, float] = Field(
        default_factory=dict, description="Revenue of the runs outside any holdout / recipients, per currency."
    )
    uncredited_conversions: int = Field(default=0, description="Conversions no message is credited with.")
    treated: Audience = Field(default_factory=Audience)
    holdout: Audience = Field(default_factory=Audience)
    experiments: list[ExperimentResult] = Field(
        default_factory=list,
        description="The flow against its holdout, and each split's variants (docs/ANALYTICS.md, Experiments).",
    )


def journey_report(
    journey: str,
    actions: Sequence[JourneyActionRow],
    outcomes: Sequence[MessageOutcomeRow],
    *,
    by: GroupBy = "step",
    since: datetime | None = None,
    until: datetime | None = None,
    bundle: JourneyBundle | None = None,
) -> JourneyReport:
    """The report of ``journey`` from its rows; rows of runs that entered outside the window are left out.

    With the journey's definition (``bundle``), also the readout of each experiment it runs."""
    rows = sorted(
        (row for row in in_window(actions, since, until) if row.journey == journey), key=lambda row: row.at
    )
    key_of: Callable[[JourneyActionRow], str | None] = attrgetter(by)
    report = JourneyReport(journey=journey, by=by, since=since, until=until)
    if bundle is not None:
        report.experiments = journey_readouts(rows, bundle)
    if not rows:
        return report
    report.category = rows[-1].category

    enters = [row for row in rows if row.action == "enter"]
    exits = [row for row in rows if row.action == "exit"]
    # A send skipped when it went out (out_of_stock: its skip names the message) reached nobody.
    unsent = {row.message_id for row in rows if row.action == "skip" and row.message_id is not None}
    sends = [row for row in rows if row.action == "send" and row.message_id not in unsent]
    converts = [row for row in rows if row.action == "convert"]
    entered_runs = {run_of(row) for row in enters}
    exited_runs = {run_of(row) for row in exits}
    report.entered_runs = len(entered_runs)
    report.entered_customers = len({row.customer_id for row in enters})
    report.active_runs = len(entered_runs - exited_runs)
    report.recipients = len({row.customer_id for row in sends})
    report.exits = dict(Counter(row.reason or "unknown" for row in exits))
    report.converted_runs = len({run_of(row) for row in converts})
    report.converted_customers = len({row.customer_id for row in converts})
    report.conversion_rate = rate(report.converted_customers, report.entered_customers)
    report.revenue = revenue_by_currency(converts)
    report.uncredited_conversions = sum(1 for row in converts if row.message_id is None)

    held_out = {run_of(row) for row in rows if row.holdout is not None}
    report.treated = _audience([r for r in rows if run_of(r) not in held_out])
    report.holdout = _audience([r for r in rows if run_of(r) in held_out])
    report.revenue_per_recipient = {
        currency: round(amount / report.recipients, 2)
        for currency, amount in report.treated.revenue.items()
        if report.recipients
    }
    report.groups = _groups(rows, sends, converts, outcomes, key_of, exited_runs)
    if bundle is not None and by == "step":  # in the order the journey is written, as a marketer reads it
        order = {step_id: index for index, step_id in enumerate(bundle.journey.step_ids())}
        report.groups.sort(key=lambda group: order.get(group.key or "", len(order)))
    return report


def _groups(
    rows: list[JourneyActionRow],
    sends: list[JourneyActionRow],
    converts: list[JourneyActionRow],
    outcomes: Sequence[MessageOutcomeRow],
    key_of: Callable[[JourneyActionRow], str | None],
    exited_runs: set[RunKey],
) -> list[GroupStats]:
    groups: dict[str | None, GroupStats] = {}

    def group(key: str | None) -> GroupStats:
        if key not in groups:
            groups[key] = GroupStats(key=key)
        return groups[key]

    for row in rows:  # in time order: groups come in the order the journey reached them
        if row.action in _GROUPED_ACTIONS:
            stats = group(key_of(row))
            if row.action == "skip":
                stats.skipped[row.reason or "unknown"] = stats.skipped.get(row.reason or "unknown", 0) + 1
            elif row.action == "hold":
                stats.held += 1

    send_of = {row.message_id: row for row in sends if row.message_id is not None}
    sent_by_group: dict[str | None, set[str]] = defaultdict(set)
    for row in sends:
        sent_by_group[key_of(row)].add(row.message_id or row.action_id)
    told = _outcomes_by_message(outcomes)
    for key, messages in sent_by_group.items():
        stats = group(key)
        stats.sent = len(messages)
        for message_id in messages:
            heard = told.get(message_id, _Heard())
            stats.delivered += "delivered" in heard.outcomes
            stats.opened += heard.person_opened
            stats.machine_opened += heard.machine_opened and not heard.person_opened
            stats.clicked += "clicked" in heard.outcomes
            stats.bounced += "bounced" in heard.outcomes
            stats.failed += "failed" in heard.outcomes
            stats.unsubscribed += "unsubscribed" in heard.outcomes

    credited: dict[str | None, list[JourneyActionRow]] = defaultdict(list)
    for row in converts:
        if row.message_id is not None:
            credited[key_of(send_of.get(row.message_id, row))].append(row)
    for key, rows_credited in credited.items():
        stats = group(key)
        stats.conversions = len(rows_credited)
        stats.revenue = revenue_by_currency(rows_credited)

    for step_row in _last_steps(rows, exited_runs):
        group(key_of(step_row)).waiting += 1
    return list(groups.values())


class _Heard:
    """Everything heard about one message."""

    def __init__(self) -> None:
        self.outcomes: set[str] = set()
        self.person_opened = False
        self.machine_opened = False


def _outcomes_by_message(outcomes: Iterable[MessageOutcomeRow]) -> dict[str, _Heard]:
    heard: dict[str, _Heard] = defaultdict(_Heard)
    for row in outcomes:
        about = heard[row.message_id]
        about.outcomes.add(row.outcome)
        if row.outcome == "opened":
            if row.machine:
                about.machine_opened = True
            else:
                about.person_opened = True
    return heard


def _last_steps(rows: list[JourneyActionRow], exited_runs: set[RunKey]) -> list[JourneyActionRow]:
    """For each run that has not exited, its last ``step`` row: where it waits now."""
    last: dict[RunKey, JourneyActionRow] = {}
    for row in rows:
        if row.action == "step" and run_of(row) not in exited_runs:
            last[run_of(row)] = row
    return list(last.values())


def _audience(rows: list[JourneyActionRow]) -> Audience:
    entered = len({row.customer_id for row in rows if row.action == "enter"})
    converts = [row for row in rows if row.action == "convert"]
    return Audience.of(entered, len({row.customer_id for row in converts}), converts)


class Priced(Protocol):
    """A conversion's value, as a row of the raw table or of the report tables has it."""

    @property
    def value(self) -> float | None: ...
    @property
    def currency(self) -> str | None: ...


def revenue_by_currency(converts: Iterable[Priced]) -> dict[str, float]:
    """Sum per currency (never across); a conversion without a currency is under ``unknown``."""
    amounts: dict[str, list[float]] = defaultdict(list)
    for row in converts:
        if row.value is not None:
            amounts[row.currency or "unknown"].append(row.value)
    return {currency: round(math.fsum(values), 2) for currency, values in sorted(amounts.items())}


def rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def run_of(row: JourneyActionRow) -> RunKey:
    return (row.customer_id, row.run_id)


def in_window(
    rows: Iterable[JourneyActionRow], since: datetime | None, until: datetime | None
) -> list[JourneyActionRow]:
    """The rows of the runs that entered in [since, until): every row of such a run, whenever it happened."""
    rows = list(rows)
    if since is None and until is None:
        return rows
    started = {
        run_of(row)
        for row in rows
        if row.action == "enter" and (since is None or row.at >= since) and (until is None or row.at < until)
    }
    return [row for row in rows if run_of(row) in started]


# -- from the store ------------------------------------------------------------------------------


def journey_seen(engine: Engine, journey: str) -> bool:
    """Whether the store has any row of this journey."""
    with engine.connect() as conn:
        return bool(conn.execute(select(exists().where(journey_actions.c.journey == journey))).scalar())


def stored_journey_report(
    engine: Engine,
    journey: str,
    *,
    by: GroupBy = "step",
    since: datetime | None = None,
    until: datetime | None = None,
) -> JourneyReport | None:
    """The report from the analytics store, with the readouts of the journey as published now;
    None when no run of the journey was ever recorded. ``omnicart report`` and the stats endpoint
    both answer with it."""
    if not journey_seen(engine, journey):
        return None
    actions, outcomes = load_rows(engine, journey, since, until)
    return journey_report(journey, actions, outcomes, by=by, since=since, until=until,
                          bundle=published_bundle(engine, journey))


def published_bundle(engine: Engine, journey: str) -> JourneyBundle | None:
    """The journey as published now, whose experiments the report reads out (None: never published)."""
    from omnicart.journey.registry import JourneyRegistry

    published = JourneyRegistry(engine).published().get(journey)
    return published.bundle if published is not None else None


def load_rows(
    engine: Engine, journey: str, since: datetime | None = None, until: datetime | None = None
) -> tuple[list[JourneyActionRow], list[MessageOutcomeRow]]:
    """The journey's rows of the runs that entered in [since, until), and the outcomes of their messages.

    With a window, the runs that entered in it are found first (the (journey, at) index), then their
    rows by customer (the customer_ref index), from ``since`` on: every row of a run comes at or
    after its ``enter``. Customers come back as the pseudonyms the store keeps: distinct counts are
    the same.
    """
    table = journey_actions.c
    query = select(journey_actions).where(table.journey == journey).order_by(table.at)
    with engine.connect() as conn:
        if since is None and until is None:
            actions = [JourneyActionRow.model_validate(values) for values in _records(conn.execute(query))]
        else:
            started = select(table.customer_ref, table.run_id).where(table.journey == journey, table.action == "enter")
            if since is not None:
                started = started.where(table.at >= since)
                query = query.where(table.at >= since)
            if until is not None:
                started = started.where(table.at < until)
            runs = {(row.customer_ref, row.run_id) for row in conn.execute(started)}
            customers = sorted({customer for customer, _ in runs})
            actions = [
                JourneyActionRow.model_validate(values)
                for part in in_chunks(customers)
                for values in _records(conn.execute(query.where(table.customer_ref.in_(part))))
                if (values["customer_id"], values["run_id"]) in runs
            ]
            actions.sort(key=lambda row: row.at)
        sent = sorted({row.message_id for row in actions if row.action == "send" and row.message_id is not None})
        about = select(message_outcomes)
        outcomes = [
            MessageOutcomeRow.model_validate(values)
            for part in in_chunks(sent)
            for values in _records(conn.execute(about.where(message_outcomes.c.message_id.in_(part))))
        ]
    return actions, outcomes


"""Values per ``IN (...)``: well below SQLite's limit on bound parameters in old builds."""



def _records(result: CursorResult[Any]) -> Iterator[dict[str, Any]]:
    """Each row as a dict with the row models' names and aware times (the column names are read
    once: a ``Row``'s own mapping builds them again for every row)."""
    names = ["customer_id" if name == "customer_ref" else name for name in result.keys()]  # noqa: SIM118
    at = names.index("at")
    for values in result:
        record = dict(zip(names, values, strict=True))
        record["at"] = utc(values[at])
        yield record
