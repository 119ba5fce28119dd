"""The journey report from the pre-summed tables: what the console's pages show.

The same ``JourneyReport``, number for number, as ``stored_journey_report`` computes from the raw
rows (``tests/test_rollups.py`` holds them equal), but from ``omnicart.analytics.rollup_tables``:
each count is an aggregate over the runs that entered in [since, until), found by the (journey,
entered_at) index. Only the conversions (a fraction of runs) come back as rows, because money is
summed per currency as the raw report does, and the experiments' readouts need one observation
per customer. The numbers are as fresh as the last fold (``omnicart.analytics.rollups``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, and_, case, exists, func, select

from omnicart.analytics.experiments import HOLDOUT_ARM, JOURNEY_ARM, NO_CURRENCY, Observation
from omnicart.analytics.readouts import readouts
from omnicart.analytics.report import Audience, GroupStats, JourneyReport, rate, revenue_by_currency
from omnicart.analytics.rollup_tables import (
    NO_STEP,
    report_conversions,
    report_exposures,
    report_messages,
    report_runs,
    report_step_counts,
)
from omnicart.journey.model import JourneyBundle
from omnicart.storage import utc

runs, messages, steps = report_runs.c, report_messages.c, report_step_counts.c
conversions, exposures = report_conversions.c, report_exposures.c


@dataclass(frozen=True)
class _Conversion:
    customer: str
    run_id: str
    at: datetime
    value: float | None
    currency: str | None
    credited: str | None
    """The step whose message it credits (None: no message)."""
    holdout: bool


def rollup_journey_report(
    engine: Engine, journey: str, *, since: datetime, until: datetime, bundle: JourneyBundle | None = None,
    steps: bool = True,
) -> JourneyReport | None:
    """The report of the runs of ``journey`` that entered in [since, until); with the journey's
    definition (``bundle``, e.g. as published now), also the readouts of its experiments and its
    steps in the order they are written; ``steps=False`` leaves the groups out (the journeys list
    shows none). None when no run of the journey was ever folded."""
    with engine.connect() as conn:
        if not conn.execute(select(exists().where(runs.journey == journey))).scalar():
            return None
        return _report(conn, journey, since, until, bundle, steps)


def _report(conn: Connection, journey: str, since: datetime, until: datetime,
            bundle: JourneyBundle | None, with_groups: bool) -> JourneyReport:
    report = JourneyReport(journey=journey, since=since, until=until)
    window = and_(runs.journey == journey, runs.entered_at >= since, runs.entered_at < until)
    converts = _conversions(conn, journey, since, until)
    if bundle is not None:
        report.experiments = readouts(
            bundle, lambda: _flow_observations(conn, window, converts),
            lambda experiment: _split_observations(conn, window, journey, since, until, experiment, converts))
    totals = conn.execute(select(func.count(), func.count(runs.customer_ref.distinct()),
                                 func.coalesce(func.sum(case((runs.exits == 0, 1), else_=0)), 0)).where(window)).one()
    if not totals[0]:
        return report
    report.entered_runs, report.entered_customers, report.active_runs = totals
    report.category = conn.execute(select(runs.category).where(window).order_by(runs.last_at.desc()).limit(1)).scalar()
    report.exits = {reason: int(count) for reason, count in conn.execute(
        select(runs.exit_reason, func.sum(runs.exits)).where(window, runs.exits > 0).group_by(runs.exit_reason))}
    entered: dict[bool, int] = dict(conn.execute(select(runs.holdout, func.count(runs.customer_ref.distinct()))
                                .where(window).group_by(runs.holdout)).all())

    report.converted_runs = len({(c.customer, c.run_id) for c in converts})
    report.converted_customers = len({c.customer for c in converts})
    report.conversion_rate = rate(report.converted_customers, report.entered_customers)
    report.revenue = revenue_by_currency(converts)
    report.uncredited_conversions = sum(1 for c in converts if c.credited is None)
    report.treated = _audience(entered.get(False, 0), [c for c in converts if not c.holdout])
    report.holdout = _audience(entered.get(True, 0), [c for c in converts if c.holdout])

    sent = and_(messages.journey == journey, messages.entered_at >= since, messages.entered_at < until,
                messages.unsent.is_(False))
    report.recipients = conn.execute(select(func.count(messages.customer_ref.distinct())).where(sent)).scalar() or 0
    report.revenue_per_recipient = {
        currency: round(amount / report.recipients, 2)
        for currency, amount in report.treated.revenue.items()
        if report.recipients
    }
    if with_groups:
        report.groups = _groups(conn, window, sent, journey, since, until, converts, bundle)
    return report


def _groups(conn: Connection, window: Any, sent: Any, journey: str, since: datetime, until: datetime,
            converts: list[_Conversion], bundle: JourneyBundle | None) -> list[GroupStats]:
    groups: dict[str | None, GroupStats] = {}

    def group(step: str | None) -> GroupStats:
        key = None if step in (None, NO_STEP) else step
        if key not in groups:
            groups[key] = GroupStats(key=key)
        return groups[key]

    in_steps = and_(steps.journey == journey, steps.entered_at >= since, steps.entered_at < until)
    for step, reason, held, skipped in conn.execute(
        select(steps.step, steps.skip_reason, func.sum(steps.held), func.sum(steps.skipped))
        .where(in_steps).group_by(steps.step, steps.skip_reason)
    ):
        stats = group(step)
        if reason:
            stats.skipped[reason] = int(skipped)
        stats.held += int(held)

    def count(flag: Any) -> Any:
        return func.sum(case((flag, 1), else_=0))

    for step, *numbers in conn.execute(
        select(messages.step, func.count(), count(messages.delivered), count(messages.person_opened),
               count(and_(messages.machine_opened, ~messages.person_opened)), count(messages.clicked),
               count(messages.bounced), count(messages.failed), count(messages.unsubscribed))
        .where(sent).group_by(messages.step)
    ):
        stats = group(step)
        (stats.sent, stats.delivered, stats.opened, stats.machine_opened, stats.clicked, stats.bounced,
         stats.failed, stats.unsubscribed) = (int(number) for number in numbers)

    credited: dict[str | None, list[_Conversion]] = defaultdict(list)
    for convert in converts:
        if convert.credited is not None:
            credited[convert.credited].append(convert)
    for step, rows in credited.items():
        stats = group(step)
        stats.conversions = len(rows)
        stats.revenue = revenue_by_currency(rows)

    for step, waiting in conn.execute(select(runs.last_step, func.count())
                                      .where(window, runs.exits == 0, runs.last_step.is_not(None))
                                      .group_by(runs.last_step)):
        group(step).waiting = int(waiting)
    for stats in groups.values():
        stats.skipped = dict(sorted(stats.skipped.items()))
    order = {step_id: index for index, step_id in enumerate(bundle.journey.step_ids())} if bundle else {}
    return sorted(groups.values(), key=lambda g: (order.get(g.key or "", len(order)), g.key or ""))


def _conversions(conn: Connection, journey: str, since: datetime, until: datetime) -> list[_Conversion]:
    """The conversions of the runs that entered in the window, each with the step whose message it
    credits: that message's step if it was sent in a run of the window, else the conversion's own."""
    credited_message = and_(messages.message_key == conversions.message_id, messages.unsent.is_(False),
                            messages.journey == journey, messages.entered_at >= since, messages.entered_at < until)
    query = (
        select(conversions.customer_ref, conversions.run_id, conversions.at, conversions.value, conversions.currency,
               conversions.message_id, conversions.step, messages.step.label("sent_step"), runs.holdout)
        .join(report_runs, and_(runs.journey == conversions.journey, runs.customer_ref == conversions.customer_ref,
                                runs.run_id == conversions.run_id))
        .outerjoin(report_messages, credited_message)
        .where(conversions.journey == journey, conversions.entered_at >= since, conversions.entered_at < until)
        .order_by(conversions.at)
    )
    return [
        _Conversion(row.customer_ref, row.run_id, utc(row.at), row.value, row.currency,
                    None if row.message_id is None else (row.sent_step if row.sent_step is not None else row.step),
                    bool(row.holdout))
        for row in conn.execute(query)
    ]


def _flow_observations(conn: Connection, window: Any, converts: list[_Conversion]) -> list[Observation]:
    """Everyone who entered: exposed at their first entry in the window, held out if any run was."""
    first = {customer: (utc(at), JOURNEY_ARM, bool(held)) for customer, at, held in conn.execute(
        select(runs.customer_ref, func.min(runs.entered_at), func.max(case((runs.holdout, 1), else_=0)))
        .where(window).group_by(runs.customer_ref))}
    return _observations(first, converts)


def _split_observations(conn: Connection, window: Any, journey: str, since: datetime, until: datetime,
                        experiment: str, converts: list[_Conversion]) -> list[Observation]:
    """Everyone a split assigned: exposed at their first step naming it, in that step's variant."""
    held = set(conn.execute(select(runs.customer_ref).where(window, runs.holdout.is_(True))).scalars())
    first: dict[str, tuple[datetime, str, bool]] = {}
    for customer, at, variant in conn.execute(
        select(exposures.customer_ref, exposures.at, exposures.variant)
        .where(exposures.journey == journey, exposures.experiment == experiment, exposures.entered_at >= since,
               exposures.entered_at < until)
        .order_by(exposures.at)
    ):
        if customer not in first:
            first[customer] = (utc(at), variant or "unassigned", customer in held)
    return _observations(first, converts)


def _observations(first: dict[str, tuple[datetime, str, bool]], converts: Sequence[_Conversion]) -> list[Observation]:
    """One observation per exposed customer, with the conversions they made from their exposure on."""
    after: dict[str, list[_Conversion]] = defaultdict(list)
    for convert in converts:  # in time order
        if convert.customer in first and convert.at >= first[convert.customer][0]:
            after[convert.customer].append(convert)
    observations = []
    for customer, (at, arm, held) in first.items():
        revenue: dict[str, float] = {}
        for convert in after[customer]:
            if convert.value is not None:
                currency = convert.currency or NO_CURRENCY
                revenue[currency] = revenue.get(currency, 0.0) + convert.value
        observations.append(Observation.model_construct(
            customer_id=customer, arm=HOLDOUT_ARM if held else arm, exposed_at=at,
            converted=bool(after[customer]), revenue=revenue))
    return observations


def _audience(entered: int, converts: list[_Conversion]) -> Audience:
    return Audience.of(entered, len({c.customer for c in converts}), converts)
