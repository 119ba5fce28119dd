"""The report tables: folded from the raw rows, they give the console the same numbers as
``stored_journey_report`` (the raw path ``omnicart report`` keeps), field by field, on SQLite and
PostgreSQL: after late opens, clicks and conversions, after folding twice or two folds at once,
whatever order the rows arrive in, and on a database upgraded with rows already in it.

The timelines are the analytics report's hand-written one (every case the report must get right)
and the console's seeded demo (the shipped journeys, win_back's holdout and split included).
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from sqlalchemy import Engine

from omnicart.analytics.report import JourneyReport, published_bundle, stored_journey_report
from omnicart.analytics.rollup_report import rollup_journey_report
from omnicart.analytics.rollups import fold, folded_at
from omnicart.analytics.store import delete_customer_rows, record_actions, record_outcomes
from omnicart.console.demo import seed_demo
from omnicart.security.pseudonym import customer_ref
from omnicart.settings import Settings
from omnicart.storage import get_engine, upgrade
from tests.test_analytics_report import ADA, JOURNEY, NOVEMBER, SECRET, T0, Timeline, hours, timeline

DECEMBER = NOVEMBER + timedelta(days=30)
OCTOBER = NOVEMBER - timedelta(days=31)
PERIODS = [(NOVEMBER, DECEMBER), (OCTOBER, NOVEMBER), (OCTOBER, DECEMBER)]


def numbers(report: JourneyReport | None) -> dict[str, Any] | None:
    """Everything the report says; its groups by key (the raw report lists them as the rows came)."""
    if report is None:
        return None
    values = report.model_dump(exclude={"groups"})
    values["groups"] = {group.key: group.model_dump() for group in report.groups}
    return values


def assert_same_numbers(database: str, journeys: list[str], periods: list[tuple[datetime, datetime]]) -> None:
    engine = get_engine(database)
    for journey in journeys:
        for since, until in periods:
            raw = stored_journey_report(engine, journey, since=since, until=until)
            folded = rollup_journey_report(engine, journey, since=since, until=until,
                                           bundle=published_bundle(engine, journey))
            assert numbers(folded) == numbers(raw), (journey, since, until)


def recorded_timeline(engine: Engine) -> Timeline:
    """The analytics report's timeline, stored as the worker and the webhooks store it."""
    t = timeline()
    record_actions(engine, t.actions, SECRET)
    record_outcomes(engine, t.outcomes)
    return t


def test_the_folded_numbers_are_the_raw_reports(database: str) -> None:
    engine = get_engine(database)
    t = recorded_timeline(engine)

    assert fold(engine) == len(t.actions) + len(t.outcomes)

    november = rollup_journey_report(engine, JOURNEY, since=NOVEMBER, until=DECEMBER)
    assert november is not None  # the known numbers, as tests/test_analytics_report.py states them
    counted = november.entered_runs, november.entered_customers, november.active_runs, november.recipients
    assert counted == (5, 5, 1, 3)
    assert november.revenue == {"EUR": 160.0, "USD": 120.0}
    assert november.revenue_per_recipient == {"EUR": 36.67, "USD": 40.0}
    assert_same_numbers(database, [JOURNEY, "browse_abandonment"], PERIODS)
    assert rollup_journey_report(engine, "win_back", since=NOVEMBER, until=DECEMBER) is None


def test_late_rows_update_old_runs_and_a_second_fold_counts_nothing_again(database: str) -> None:
    engine = get_engine(database)
    t = timeline()
    cut = hours(3)  # what the store had three hours in: later sends, opens, conversions come after
    record_actions(engine, [row for row in t.actions if row.at < cut], SECRET)
    record_outcomes(engine, [row for row in t.outcomes if row.at < cut])
    fold(engine)
    assert_same_numbers(database, [JOURNEY], PERIODS[:1])
    before = rollup_journey_report(engine, JOURNEY, since=NOVEMBER, until=DECEMBER)

    record_actions(engine, t.actions, SECRET)
    record_outcomes(engine, t.outcomes)
    fold(engine)
    after = rollup_journey_report(engine, JOURNEY, since=NOVEMBER, until=DECEMBER)

    assert before is not None and after is not None
    assert (before.converted_customers, after.converted_customers) == (2, 4)  # eve and cem, then ada and bob
    assert after.revenue == {"EUR": 160.0, "USD": 120.0}
    assert_same_numbers(database, [JOURNEY], PERIODS)
    assert fold(engine) == 0
    assert numbers(rollup_journey_report(engine, JOURNEY, since=NOVEMBER, until=DECEMBER)) == numbers(after)


def test_rows_folded_before_their_runs_enter_or_their_messages_are_sent_still_count(database: str) -> None:
    engine = get_engine(database)
    t = timeline()
    record_outcomes(engine, t.outcomes)  # opens and clicks heard before their sends were folded
    record_actions(engine, [row for row in t.actions if row.action != "enter"], SECRET)
    fold(engine)
    assert rollup_journey_report(engine, JOURNEY, since=NOVEMBER, until=DECEMBER) is not None

    record_actions(engine, [row for row in t.actions if row.action == "enter"], SECRET)
    fold(engine)

    assert_same_numbers(database, [JOURNEY], PERIODS)


def test_two_folds_at_once_take_turns_and_count_each_row_once(database: str) -> None:
    engine = get_engine(database)
    t = recorded_timeline(engine)
    folded: list[int] = []
    folds = [threading.Thread(target=lambda: folded.append(fold(engine, batch=7))) for _ in range(2)]
    for thread in folds:
        thread.start()
    for thread in folds:
        thread.join()

    assert sum(folded) == len(t.actions) + len(t.outcomes)
    assert_same_numbers(database, [JOURNEY], PERIODS)
    stamp = folded_at(engine)
    assert stamp is not None and stamp > T0


def test_an_upgraded_database_folds_its_old_rows_from_the_start(empty_database: str) -> None:
    upgrade(empty_database, "0016_identity")
    engine = get_engine(empty_database)
    recorded_timeline(engine)

    upgrade(empty_database)
    fold(engine)

    assert_same_numbers(empty_database, [JOURNEY], PERIODS)


def test_forgetting_a_customer_takes_their_sums_too(database: str) -> None:
    engine = get_engine(database)
    recorded_timeline(engine)
    fold(engine)

    with engine.begin() as conn:
        delete_customer_rows(conn, customer_ref(ADA, SECRET))

    november = rollup_journey_report(engine, JOURNEY, since=NOVEMBER, until=DECEMBER)
    assert november is not None and november.entered_customers == 4
    assert_same_numbers(database, [JOURNEY], PERIODS)


def test_the_demo_shop_reads_the_same_with_its_experiments(database: str, tmp_path: Path) -> None:
    """Every shipped journey, with the readouts of win_back's holdout and split, over the console's
    default period and a week of it."""
    settings = Settings(_env_file=None, data_dir=tmp_path, journeys_dir=Path("journeys"),
                        signing_secret=SecretStr("rollup-test"), database_url=database)
    demo = seed_demo(settings, customers=60)
    engine = get_engine(database)
    fold(engine)

    start = demo.since.replace(hour=0, minute=0, second=0)
    periods = [(start, start + timedelta(days=31)), (start + timedelta(days=7), start + timedelta(days=14))]
    journeys = ["abandoned_cart", "browse_abandonment", "win_back"]
    assert_same_numbers(database, journeys, periods)
    win_back = rollup_journey_report(engine, "win_back", since=periods[0][0], until=periods[0][1],
                                     bundle=published_bundle(engine, "win_back"))
    assert win_back is not None and win_back.entered_customers > 0 and win_back.experiments
