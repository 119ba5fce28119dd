"""The interpreter on its own: the journey semantics that are easy to get subtly wrong.

Pure function calls, no Temporal: time zones and daylight saving, late events, permanent
failures after a run has finished, runaway loops, and retriggers.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from omnicart.engine import interpreter
from omnicart.engine.state import PROFILE_ATTRIBUTES, CustomerState
from omnicart.events import Event
from omnicart.journey.model import EmailTemplate, Journey, JourneyBundle, PushTemplate, SmsTemplate
from omnicart.messages import SendResult

TEMPLATES = {
    "mail": EmailTemplate(channel="email", subject="Hi", html="<a href='{{ unsubscribe_url }}'>x</a>"),
    "text": SmsTemplate(channel="sms", body="Hi"),
    "ping": PushTemplate(channel="push", title="Hi", body="there"),
}


def bundle(steps: list[dict[str, Any]], **journey: Any) -> JourneyBundle:
    definition = {"name": "test_journey", "trigger": {"event": "checkout_started", "key": "cart_id"},
                  "steps": steps, **journey}
    return JourneyBundle(journey=Journey.model_validate(definition), templates=TEMPLATES)


def event(event_type: str, at: datetime, number: int = 0, **properties: Any) -> Event:
    return Event.parse({"id": f"e{number}-{event_type}", "type": event_type, "customer_id": "c1",
                        "timestamp": at.isoformat(), "source": "web", "properties": properties})


def customer(at: datetime, tz: str = "UTC", **extra: Any) -> CustomerState:
    state = interpreter.new_state("c1")
    profile = {"email": "a@example.com", "phone": "+14155550100", "timezone": tz, "push_tokens": ["tok"],
               "consent": {"email": True, "sms": True, "push": True}, **extra}
    interpreter.handle_event(state, event("customer_updated", at - timedelta(days=1), **profile), [], at)
    return state


def checkout(state: CustomerState, journey: JourneyBundle, at: datetime, now: datetime | None = None,
             number: int = 1) -> interpreter.Output:
    trigger = event("checkout_started", at, number, cart_id="k1", items=[{"sku": "a"}])
    return interpreter.handle_event(state, trigger, [journey], now or at)


def said(out: interpreter.Output) -> list[str]:
    return [" ".join(str(v) for v in (a.action, a.channel, a.template, a.reason) if v) for a in out.actions]


def test_a_time_of_day_wait_follows_the_wall_clock_across_spring_forward() -> None:
    # Saturday 7 March 2026, noon in New York; clocks go forward that night.
    start = datetime(2026, 3, 7, 17, 0, tzinfo=UTC)
    journey = bundle([{"wait": {"until": "09:00"}}, {"send": {"template": "mail"}}])
    state = customer(start, tz="America/New_York")
    checkout(state, journey, start)
    # 09:00 EDT on Sunday is 13:00 UTC: 20 hours later, not the 21 of a naive "same time tomorrow".
    assert interpreter.next_wakeup(state) == datetime(2026, 3, 8, 13, 0, tzinfo=UTC)


def test_quiet_hours_end_at_nine_local_even_on_the_night_clocks_go_back() -> None:
    # Saturday 31 October 2026, 23:00 in London (22:00 UTC); clocks go back at 02:00.
    start = datetime(2026, 10, 31, 22, 0, tzinfo=UTC)
    journey = bundle([{"send": {"template": "text"}}], quiet_hours={"sms": {"start": "21:00", "end": "09:00"}})
    state = customer(start, tz="Europe/London")
    out = checkout(state, journey, start)
    assert said(out) == ["enter", "hold sms text quiet_hours"]
    # 09:00 GMT on Sunday is 09:00 UTC: eleven hours, one more than the wall clock suggests.
    held_until = interpreter.next_wakeup(state)
    assert held_until == datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
    assert out.actions[-1].until == held_until  # the journal says when the held message goes out
    assert said(interpreter.handle_timers(state, held_until)) == ["send sms text", "exit completed"]


def test_a_checkout_reported_late_still_reminds_one_hour_after_it_happened() -> None:
    happened = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
    journey = bundle([{"wait": "1h"}, {"send": {"template": "mail"}}, {"wait": {"after_trigger": "3h"}},
                      {"send": {"template": "mail"}}])
    state = customer(happened)
    arrived = happened + timedelta(minutes=90)  # the app was offline
    out = checkout(state, journey, happened, now=arrived)
    assert said(out) == ["enter"]
    assert interpreter.next_wakeup(state) == happened + timedelta(hours=1)  # already due
    due = interpreter.handle_timers(state, arrived)
    assert said(due) == ["send email mail"] and due.actions[0].at == arrived
    assert interpreter.next_wakeup(state) == happened + timedelta(hours=3)


def test_a_permanent_failure_of_the_last_message_still_falls_back_after_the_run_ended() -> None:
    start = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
    journey = bundle([{"send": {"template": "ping", "fallback": [{"template": "text"}]}}])  # no goal
    state = customer(start)
    out = checkout(state, journey, start)
    assert said(out) == ["enter", "send push ping", "exit completed"]
    failed = SendResult(message_id=out.sends[0].message_id, channel="push", outcome="failed", provider="fcm",
                        invalid_address=True, dead_push_tokens=["tok"])
    fallback = interpreter.handle_send_result(state, failed, start + timedelta(seconds=2))
    assert said(fallback) == ["skip push ping push_failed", "send sms text"]
    assert state.profile.push_tokens == []
    interpreter.handle_sent(state, fallback.sends[0].message_id)
    assert state.is_idle() and state.bundles == {}


def test_a_goto_loop_without_a_wait_ends_instead_of_spinning() -> None:
    start = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
    journey = bundle([{"id": "again", "branch": [{"if": "true", "goto": "again"}]}])
    out = checkout(customer(start), journey, start)
    assert said(out) == ["enter", "exit loop_without_wait"]


def test_a_second_checkout_restarts_the_run_when_the_journey_says_so() -> None:
    start = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
    journey = bundle([{"wait": "1h"}, {"send": {"template": "mail"}}],
                     trigger={"event": "checkout_started", "key": "cart_id", "on_retrigger": "restart"})
    state = customer(start)
    checkout(state, journey, start)
    again = checkout(state, journey, start + timedelta(minutes=30), number=2)
    assert said(again) == ["exit restarted", "enter"]
    assert interpreter.next_wakeup(state) == start + timedelta(minutes=90)


def test_a_branch_can_look_at_what_the_customer_did_since_the_trigger() -> None:
    start = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
    journey = bundle([
        {"wait": "1h"},
        {"branch": [{"if": "events.exists(e, e.type == 'product_viewed' && e.properties.sku == 'SKU-9')",
                     "goto": "nudge"}, {"else": "done"}]},
        {"id": "done", "exit": "not_browsing"},
        {"id": "nudge", "send": {"template": "mail"}},
    ])
    browsing, idle = customer(start), customer(start)
    checkout(browsing, journey, start)
    checkout(idle, journey, start)
    viewed = event("product_viewed", start + timedelta(minutes=20), 5, sku="SKU-9", url="https://shop.example/p/9")
    interpreter.handle_event(browsing, viewed, [], viewed.timestamp)
    assert said(interpreter.handle_timers(browsing, start + timedelta(hours=1))) == [
        "send email mail", "exit completed"
    ]
    assert said(interpreter.handle_timers(idle, start + timedelta(hours=1))) == ["exit not_browsing"]


def test_a_send_that_falls_due_and_is_cancelled_in_one_call_is_never_handed_out() -> None:
    """A wedge found by the history recorder: the timer's send and the exit's cancellation came out of
    one ``handle_event``, and the workflow then built a request for a journey the run had forgotten."""
    start = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)
    state = customer(start)
    journey = bundle([{"wait": "1h"}, {"send": {"template": "mail"}}, {"wait": "1d"}],
                     exit_when=[{"event": "order_placed"}])
    interpreter.handle_event(state, event("checkout_started", start, 1, cart_id="c1", items=[]), [journey], start)

    late = start + timedelta(hours=2)  # the reminder fell due before the order arrived
    out = interpreter.handle_event(state, event("order_placed", late, 2, order_id="o1"), [journey], late)

    assert [action.action for action in out.actions] == ["send", "exit"]
    assert out.sends == [] and state.bundles == {}


def test_custom_profile_attributes_are_bounded_but_known_ones_keep_updating() -> None:
    """Many events each naming new attributes must not grow a customer's state without bound."""
    start = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)
    state = customer(start, tier="gold")
    for number in range(5):
        names = {f"attr_{number}_{index}": index for index in range(100)}
        interpreter.handle_event(state, event("customer_updated", start + timedelta(minutes=number), 10 + number,
                                              **names), [], start + timedelta(minutes=number))
    interpreter.handle_event(state, event("customer_updated", start + timedelta(hours=1), 99, tier="platinum"), [],
                             start + timedelta(hours=1))

    assert len(state.profile.attributes) == PROFILE_ATTRIBUTES
    assert state.profile.attributes["tier"] == "platinum"


def test_a_pause_with_runs_exiting_ends_runs_triggered_by_then_and_cancels_their_send_in_flight() -> None:
    start = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
    journey = bundle([{"send": {"template": "mail"}}, {"wait": "1d"}, {"send": {"template": "text"}}])
    state = customer(start)
    first = checkout(state, journey, start)
    assert said(first) == ["enter", "send email mail"]  # the email is in flight when the pause comes

    paused = interpreter.exit_journey(state, "test_journey", "journey_paused", start, start + timedelta(minutes=5))

    assert said(paused) == ["exit journey_paused"]
    assert paused.cancel == [first.sends[0].message_id]
    assert state.runs == [] and interpreter.next_wakeup(state) is None
    assert said(interpreter.exit_journey(state, "test_journey", "journey_paused", start, start)) == []  # a repeat


def test_a_pause_with_runs_exiting_spares_a_run_triggered_after_it_and_other_journeys() -> None:
    start = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
    journey = bundle([{"wait": "1h"}, {"send": {"template": "mail"}}])
    other = bundle([{"wait": "1d"}, {"send": {"template": "text"}}], name="other_journey")
    state = customer(start)
    checkout(state, other, start)
    later = start + timedelta(hours=2)
    checkout(state, journey, later, number=2)  # a checkout after the pause (a resume in between)

    out = interpreter.exit_journey(state, "test_journey", "journey_paused", start + timedelta(minutes=1), later)

    assert said(out) == [] and {run.journey for run in state.runs} == {"test_journey", "other_journey"}


def test_a_pause_with_runs_exiting_ends_a_run_entered_late_from_a_checkout_before_the_pause() -> None:
    """A backlog: the checkout happened before the pause, the workflow handles it only after."""
    start = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
    journey = bundle([{"wait": "1h"}, {"send": {"template": "mail"}}])
    state = customer(start)
    checkout(state, journey, start, now=start + timedelta(minutes=10))

    out = interpreter.exit_journey(state, "test_journey", "journey_paused", start + timedelta(minutes=5),
                                   start + timedelta(minutes=10))

    assert said(out) == ["exit journey_paused"] and state.runs == []
