"""The pre-summed report tables: what the console's pages add up instead of every raw row.

The raw tables (``omnicart.analytics.store``) keep one row per fact, as the worker and the
webhooks write them. These tables keep what the report needs of them, summed per run, so a
month of a journey is a handful of indexed aggregates over (journey, entered_at):

* ``report_runs``: one row per run, with what the report asks of a run (when it entered, whether
  it is held out, where it waits, how it exited);
* ``report_step_counts``: per run and step, how often the run reached it, was held at it and
  skipped it (by reason);
* ``report_messages``: one row per message sent, with what became of it (delivered, opened...);
* ``report_conversions``: one row per conversion, with the message it credits;
* ``report_exposures``: per run and experiment, its first exposure (the experiments' readouts);
* ``report_fold_state``: one row, locked by each fold so two console processes take turns.

Every row carries its run's ``entered_at`` (the report's window is the runs that entered in it)
and ``customer_ref`` (``omnicart forget`` deletes a customer's rows by it).
``omnicart.analytics.rollups`` keeps them up to date; ``omnicart.analytics.rollup_report`` reads them.
"""

from __future__ import annotations

from sqlalchemy import Boolean, Column, DateTime, Float, Index, Integer, String, Table

from omnicart.storage import metadata

NO_RUN = ""
"""``run_id`` of rows recorded without one (a primary key column cannot be null)."""
NO_STEP = ""
"""``step`` of rows recorded without one."""


def _run_columns() -> list[Column[object]]:
    """The run a row belongs to, and when that run entered (null until its ``enter`` is folded)."""
    return [
        Column("journey", String(200), primary_key=True),
        Column("customer_ref", String(200), primary_key=True, comment="customer_ref(): no raw email or phone."),
        Column("run_id", String(200), primary_key=True),
        Column("entered_at", DateTime(timezone=True), nullable=True),
    ]


report_runs = Table(
    "report_runs",
    metadata,
    *_run_columns(),
    Column("version", String(200), nullable=True),
    Column("category", String(20), nullable=False),
    Column("last_at", DateTime(timezone=True), nullable=False, comment="The run's latest row: the report's category."),
    Column("holdout", Boolean, nullable=False, default=False, comment="Any row of the run held out."),
    Column("last_step", String(200), nullable=True, comment="Its latest step row: where it waits if not exited."),
    Column("last_step_at", DateTime(timezone=True), nullable=True),
    Column("exits", Integer, nullable=False, default=0),
    Column("exit_reason", String(200), nullable=True),
    # Covering: a period's counts are read from the index alone, never from rows scattered in the table.
    Index("ix_report_runs_journey_entered_at", "journey", "entered_at", "customer_ref", "holdout", "exits",
          "exit_reason", "last_step"),
)

report_step_counts = Table(
    "report_step_counts",
    metadata,
    *_run_columns(),
    Column("step", String(200), primary_key=True),
    Column("reached", Integer, nullable=False, default=0, comment="Its step, send, skip and hold rows."),
    Column("held", Integer, nullable=False, default=0),
    Column("skipped", Integer, nullable=False, default=0),
    Column("skip_reason", String(200), primary_key=True, comment="'' on the row of reached and held."),
    Index("ix_report_step_counts_journey_entered_at", "journey", "entered_at", "step", "skip_reason", "held",
          "skipped"),
)

report_messages = Table(
    "report_messages",
    metadata,
    Column("message_key", String(200), primary_key=True, comment="The message id (a send without one: its row's)."),
    Column("journey", String(200), nullable=False),
    Column("customer_ref", String(200), nullable=False),
    Column("run_id", String(200), nullable=False),
    Column("entered_at", DateTime(timezone=True), nullable=True),
    Column("step", String(200), nullable=False),
    Column("unsent", Boolean, nullable=False, default=False, comment="Skipped when it went out (out_of_stock)."),
    Column("delivered", Boolean, nullable=False, default=False),
    Column("person_opened", Boolean, nullable=False, default=False),
    Column("machine_opened", Boolean, nullable=False, default=False),
    Column("clicked", Boolean, nullable=False, default=False),
    Column("bounced", Boolean, nullable=False, default=False),
    Column("failed", Boolean, nullable=False, default=False),
    Column("unsubscribed", Boolean, nullable=False, default=False),
    Index("ix_report_messages_journey_entered_at", "journey", "entered_at", "unsent", "step", "customer_ref",
          "delivered", "person_opened", "machine_opened", "clicked", "bounced", "failed", "unsubscribed"),
    Index("ix_report_messages_run", "journey", "customer_ref", "run_id"),
)

report_conversions = Table(
    "report_conversions",
    metadata,
    Column("action_id", String(64), primary_key=True),
    Column("journey", String(200), nullable=False),
    Column("customer_ref", String(200), nullable=False),
    Column("run_id", String(200), nullable=False),
    Column("entered_at", DateTime(timezone=True), nullable=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("step", String(200), nullable=False),
    Column("value", Float, nullable=True),
    Column("currency", String(3), nullable=True),
    Column("message_id", String(200), nullable=True, comment="The credited message; null: none."),
    Index("ix_report_conversions_journey_entered_at", "journey", "entered_at"),
    Index("ix_report_conversions_run", "journey", "customer_ref", "run_id"),
)

report_exposures = Table(
    "report_exposures",
    metadata,
    *_run_columns(),
    Column("experiment", String(200), primary_key=True),
    Column("at", DateTime(timezone=True), nullable=False, comment="The run's first step row naming it."),
    Column("variant", String(200), nullable=True),
    Index("ix_report_exposures_journey_entered_at", "journey", "entered_at"),
)

report_fold_state = Table(
    "report_fold_state",
    metadata,
    Column("name", String(40), primary_key=True),
    Column("folded_at", DateTime(timezone=True), nullable=True, comment="When the last fold started."),
)

ROLLUP_TABLES = (report_runs, report_step_counts, report_messages, report_conversions, report_exposures)
"""The tables with a row per customer's run or message (what ``omnicart forget`` deletes by customer)."""
