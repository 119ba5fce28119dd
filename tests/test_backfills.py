"""Importing old events or catching up after an outage must not fire months of messages at once.

Pure interpreter calls: ``now`` (when an event or a timer is handled) is an argument, so "a
70-day-old order imported today" and "a worker that was down for a day" are exact.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from omnicart.engine import interpreter
from tests.test_interpreter import bundle, checkout, customer, event, said

HAPPENED = datetime(2026, 9, 1, 10, 0, tzinfo=UTC)
REMINDERS: list[dict[str, Any]] = [
    {"wait": "1h"},
    {"id": "first", "send": {"template": "mail", "late_after": "6h"}},
    {"wait": {"after_trigger": "24h"}},
    {"id": "second", "send": {"template": "mail", "late_after": "6h"}},
]


def test_an_imported_old_checkout_skips_its_overdue_reminders_as_too_late() -> None:
    journey = bundle(REMINDERS)
    state = customer(HAPPENED)
    imported = HAPPENED + timedelta(days=70)
    out = checkout(state, journey, HAPPENED, now=imported)
    out.extend(interpreter.handle_timers(state, imported))
    assert said(out) == ["enter", "skip email mail too_late", "skip email mail too_late", "exit completed"]


def test_waits_still_count_from_the_event_so_a_recent_import_sends_what_is_not_late_yet() -> None:
    journey = bundle(REMINDERS)
    state = customer(HAPPENED)
    imported = HAPPENED + timedelta(hours=20)  # the first reminder is 19 h overdue, the second due in 4 h
    out = checkout(state, journey, HAPPENED, now=imported)
    out.extend(interpreter.handle_timers(state, imported))
    assert said(out) == ["enter", "skip email mail too_late"]
    assert interpreter.next_wakeup(state) == HAPPENED + timedelta(hours=24)
    assert said(interpreter.handle_timers(state, HAPPENED + timedelta(hours=24))) == ["send email mail",
                                                                                    "exit completed"]


def test_a_timer_handled_after_an_outage_longer_than_late_after_is_skipped() -> None:
    journey = bundle(REMINDERS)
    state = customer(HAPPENED)
    checkout(state, journey, HAPPENED)
    # The worker was down from before the first reminder until two days later.
    out = interpreter.handle_timers(state, HAPPENED + timedelta(days=2))
    assert said(out) == ["skip email mail too_late", "skip email mail too_late", "exit completed"]


def test_a_short_delay_within_late_after_still_sends() -> None:
    journey = bundle(REMINDERS)
    state = customer(HAPPENED)
    out = checkout(state, journey, HAPPENED, now=HAPPENED + timedelta(hours=3))
    out.extend(interpreter.handle_timers(state, HAPPENED + timedelta(hours=3)))
    assert said(out) == ["enter", "send email mail"]


def test_without_late_after_an_overdue_message_goes_out_at_once() -> None:
    journey = bundle([{"wait": "1h"}, {"send": {"template": "mail"}}])
    state = customer(HAPPENED)
    out = checkout(state, journey, HAPPENED, now=HAPPENED + timedelta(days=70))
    out.extend(interpreter.handle_timers(state, HAPPENED + timedelta(days=70)))
    assert said(out) == ["enter", "send email mail", "exit completed"]


def test_max_age_starts_no_run_from_an_old_event_but_the_profile_still_learns() -> None:
    journey = bundle(REMINDERS, trigger={"event": "checkout_started", "key": "cart_id", "max_age": "1d"})
    state = customer(HAPPENED)
    out = checkout(state, journey, HAPPENED, now=HAPPENED + timedelta(days=3))
    assert said(out) == ["skip too_old"]
    assert not state.runs
    assert state.carts["k1"]["items"] == [{"sku": "a"}]  # the cart was still learned
    fresh = checkout(state, journey, HAPPENED + timedelta(days=3), number=2)
    assert said(fresh) == ["enter"]


def test_a_goal_still_counts_an_imported_order() -> None:
    journey = bundle(REMINDERS, goal={"event": "order_placed", "within": "7d", "value": "event.properties.total"})
    state = customer(HAPPENED)
    checkout(state, journey, HAPPENED)
    order = event("order_placed", HAPPENED + timedelta(hours=2), 5, order_id="o1", total=30.0)
    out = interpreter.handle_event(state, order, [journey], HAPPENED + timedelta(days=1))
    assert [a.action for a in out.actions if a.action == "convert"] == ["convert"]
