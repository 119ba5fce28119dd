"""``omnicart report``: a journey's report as a table for people, JSON for programs, CSV for sheets.

JSON is the report model as ``GET /v1/journeys/{name}/stats`` answers it. CSV has one row per group
(step, variant, channel or version); reasons for skips and currencies of revenue become columns of
their own (``skipped_<reason>``, ``revenue_<currency>``), so a spreadsheet can sum them.
"""

from __future__ import annotations

import csv
import io
import sys
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, TextIO

from rich.console import Console
from rich.table import Table

from omnicart.analytics.experiments import render
from omnicart.analytics.report import GroupBy, JourneyReport, journey_report, stored_journey_report

Format = Literal["table", "json", "csv"]
FORMATS: tuple[Format, ...] = ("table", "json", "csv")

COUNTS = ("sent", "delivered", "opened", "machine_opened", "clicked", "bounced", "failed", "unsubscribed",
          "held", "waiting", "conversions")


class ReportInputError(ValueError):
    """The report cannot be made: an unknown journey, a bad timeline or journeys folder."""


def stored_report(
    database_url: str, journey: str, by: GroupBy, since: datetime | None, until: datetime | None
) -> JourneyReport:
    """The report from the product database (which must be migrated)."""
    from omnicart.storage import get_engine, require_current

    engine = get_engine(database_url)
    require_current(engine)
    report = stored_journey_report(engine, journey, by=by, since=since, until=until)
    if report is None:
        raise ReportInputError(f"no run of journey {journey!r} was recorded in this database")
    return report


def simulated_report(
    journey: str, events_file: Path, journeys_dir: Path, by: GroupBy, since: datetime | None, until: datetime | None
) -> JourneyReport:
    """The report a timeline would produce with that folder's journey (``omnicart simulate``).

    Every journey of the folder runs, as in production: caps and priorities across journeys shape
    what this one could send."""
    from omnicart.analytics.preview import preview_rows
    from omnicart.journey.loader import load_directory
    from omnicart.simulate import SimulationInputError, read_events

    loaded = load_directory(journeys_dir)
    bundle = loaded.bundles.get(journey)
    if bundle is None:
        problems = "".join(f"\n{problem}" for problem in loaded.problems)
        raise ReportInputError(f"no valid journey {journey!r} in {journeys_dir}{problems}")
    try:
        events = read_events(events_file)
    except (SimulationInputError, OSError) as exc:
        raise ReportInputError(str(exc)) from None
    actions, outcomes = preview_rows(list(loaded.bundles.values()), events)
    actions = [row for row in actions if row.journey == journey]
    return journey_report(journey, actions, outcomes, by=by, since=since, until=until, bundle=bundle)


def write_report(report: JourneyReport, fmt: Format, out: TextIO = sys.stdout) -> None:
    if fmt == "json":
        out.write(report.model_dump_json(indent=2) + "\n")
    elif fmt == "csv":
        out.write(as_csv(report))
    else:
        print_table(report, out)


def as_csv(report: JourneyReport) -> str:
    """One row per group; a column per skip reason and per currency present in any group."""
    reasons = sorted({reason for group in report.groups for reason in group.skipped})
    currencies = sorted({currency for group in report.groups for currency in group.revenue})
    header = [report.by, *COUNTS, *(f"skipped_{reason}" for reason in reasons),
              *(f"revenue_{currency}" for currency in currencies)]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for group in report.groups:
        values: list[Any] = [group.key or "", *(getattr(group, name) for name in COUNTS)]
        values += [group.skipped.get(reason, 0) for reason in reasons]
        values += [f"{group.revenue.get(currency, 0.0):.2f}" for currency in currencies]
        writer.writerow(values)
    return buffer.getvalue()


def print_table(report: JourneyReport, out: TextIO = sys.stdout) -> None:
    """The summary lines, then one table row per group."""
    console = Console(file=out, width=200)
    window = f"{_time(report.since) or 'the beginning'} to {_time(report.until) or 'now'}"
    console.print(f"[bold]{report.journey}[/bold] ({report.category or 'no category'}), runs entered {window}")
    console.print(
        f"entered: {report.entered_runs} runs, {report.entered_customers} customers; "
        f"still in the journey: {report.active_runs}; sent to: {report.recipients} customers"
    )
    console.print(
        f"converted: {report.converted_runs} runs, {report.converted_customers} customers "
        f"({_percent(report.conversion_rate)}); no message credited: {report.uncredited_conversions}"
    )
    console.print(f"revenue: {_money(report.revenue)}; per recipient: {_money(report.revenue_per_recipient)}")
    if report.holdout.entered_customers:
        for name, audience in (("journey", report.treated), ("holdout", report.holdout)):
            console.print(
                f"{name}: {audience.entered_customers} customers, {audience.converted_customers} converted "
                f"({_percent(audience.conversion_rate)}), revenue {_money(audience.revenue)}"
            )
    console.print(f"exits: {_pairs(report.exits)}")
    table = Table(report.by, *(name.replace("_", " ") for name in COUNTS), "revenue", "skipped")
    for group in report.groups:
        table.add_row(group.key or "-", *(str(getattr(group, name)) for name in COUNTS),
                      _money(group.revenue), _pairs(group.skipped))
    console.print(table)
    for readout in report.experiments:
        console.print()
        console.print(render(readout))


def _time(value: datetime | None) -> str:
    return value.isoformat(timespec="seconds") if value is not None else ""


def _percent(rate: float | None) -> str:
    return f"{rate:.1%}" if rate is not None else "-"


def _money(amounts: dict[str, float]) -> str:
    return ", ".join(f"{amount:.2f} {currency}" for currency, amount in amounts.items()) or "-"


def _pairs(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} {count}" for name, count in sorted(counts.items())) or "-"
