"""Experiments, holdouts, frequency caps, priorities and attribution, in the interpreter itself.

These are the rules a marketer leans on when reading a report: the same customer always lands in
the same variant, a holdout is counted but never messaged, a cap holds across journeys, and a
conversion is credited to the message the customer actually received. The workflow and
``omnicart simulate`` drive the same functions (see the agreement and time-skipping tests).
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from omnicart.engine import interpreter
from omnicart.engine.state import CustomerState
from omnicart.events import Event
from omnicart.journey.model import EmailTemplate, Journey, JourneyBundle, Policies, SmsTemplate
from omnicart.messages import SendResult

START = datetime(2026, 11, 2, 15, 0, tzinfo=UTC)
TEMPLATES = {
    "mail": EmailTemplate(channel="email", subject="Hi", html="<p>hi</p>"),
    "ten": EmailTemplate(channel="email", subject="10%", html="<p>10</p>"),
    "twenty": EmailTemplate(channel="email", subject="20%", html="<p>20</p>"),
    "text": SmsTemplate(channel="sms", body="Hi"),
}
SPLIT: list[dict[str, Any]] = [
    {"wait": "1h"},
    {"id": "offer", "split": {"variants": {"ten": {"weight": 50, "goto": "ten_off"},
                                          "twenty": {"weight": 50, "goto": "twenty_off"}}}},
    {"id": "ten_off", "send": {"template": "ten"}, "goto": "done"},
    {"id": "twenty_off", "send": {"template": "twenty"}},
    {"id": "done", "exit": "completed"},
]


def bundle(steps: list[dict[str, Any]], name: str = "cart", policies: Policies | None = None,
           **journey: Any) -> JourneyBundle:
    definition = {"name": name, "trigger": {"event": "checkout_started", "key": "cart_id"}, "steps": steps,
                  "goal": {"event": "order_placed", "within": "7d", "value": "event.properties.total"}, **journey}
    return JourneyBundle(journey=Journey.model_validate(definition), templates=TEMPLATES,
                         policies=policies or Policies())


def event(customer_id: str, event_type: str, at: datetime, number: int, **properties: Any) -> Event:
    return Event.parse({"id": f"{customer_id}-{number}-{event_type}", "type": event_type,
                        "customer_id": customer_id, "timestamp": at.isoformat(), "source": "web",
                        "properties": properties})


def customer(customer_id: str = "c1") -> CustomerState:
    state = interpreter.new_state(customer_id)
    profile = {"email": "a@example.com", "phone": "+14155550100", "consent": {"email": True, "sms": True}}
    interpreter.handle_event(state, event(customer_id, "customer_updated", START - timedelta(days=1), 0, **profile),
                             [], START)
    return state


def checkout(state: CustomerState, journeys: list[JourneyBundle], at: datetime, number: int,
             cart: str = "k1") -> interpreter.Output:
    trigger = event(state.customer_id, "checkout_started", at, number, cart_id=cart, items=[{"sku": "a"}])
    return interpreter.handle_event(state, trigger, journeys, at)


def run_until(state: CustomerState, until: datetime, settle: bool = True) -> interpreter.Output:
    """Fire every timer up to ``until``; each send is accepted at once (as simulate assumes)."""
    out = interpreter.Output()
    while (due := interpreter.next_wakeup(state)) is not None and due <= until:
        fired = interpreter.handle_timers(state, due)
        if settle:
            for send in fired.sends:
                interpreter.handle_sent(state, send.message_id)
        out.extend(fired)
    return out


def said(out: interpreter.Output) -> list[str]:
    return [" ".join(str(v) for v in (a.action, a.journey, a.template, a.reason, a.variant) if v) for a in out.actions]


# --- splits ----------------------------------------------------------------------------------------


def test_a_customer_lands_in_the_same_variant_in_every_run_and_the_split_is_even() -> None:
    journey = bundle(SPLIT)
    variants: Counter[str] = Counter()
    for number in range(2000):
        state = customer(f"cus_{number}")
        checkout(state, [journey], START, 1)
        first = [a.variant for a in run_until(state, START + timedelta(days=1)).actions if a.action == "send"]
        checkout(state, [journey], START + timedelta(days=2), 2, cart="k2")
        second = [a.variant for a in run_until(state, START + timedelta(days=3)).actions if a.action == "send"]
        assert first == second and len(first) == 1  # sticky across runs (a customer re-enters per cart)
        variants[str(first[0])] += 1
    # 50/50 by hash: 2,000 customers split within a few percent of even (3 sigma is ±67).
    assert abs(variants["ten"] - variants["twenty"]) < 134, variants
    # Reproducible: a fresh state for the same customer (simulate, another worker) draws the same arm.
    assert interpreter.assign_variant("cart_offer", "cus_7", {"ten": 50, "twenty": 50}) == \
        interpreter.assign_variant("cart_offer", "cus_7", {"ten": 50, "twenty": 50})


def test_changing_the_weights_later_does_not_reshuffle_customers_already_assigned() -> None:
    assigned: dict[str, str] = {}
    states: dict[str, CustomerState] = {}
    for number in range(200):
        state = customer(f"cus_{number}")
        checkout(state, [bundle(SPLIT)], START, 1)
        run_until(state, START + timedelta(days=1))
        assigned[state.customer_id] = state.assignments["cart_offer"]
        states[state.customer_id] = state
    lopsided = [dict(step) for step in SPLIT]
    lopsided[1] = {"id": "offer", "split": {"variants": {"ten": {"weight": 1, "goto": "ten_off"},
                                                         "twenty": {"weight": 99, "goto": "twenty_off"}}}}
    edited = bundle(lopsided)
    for customer_id, state in states.items():
        checkout(state, [edited], START + timedelta(days=2), 2, cart="k2")
        sent = [a for a in run_until(state, START + timedelta(days=3)).actions if a.action == "send"]
        assert sent[0].variant == assigned[customer_id]
    # A newcomer under the new weights almost always gets twenty.
    newcomers: Counter[str] = Counter()
    for number in range(200):
        state = customer(f"new_{number}")
        checkout(state, [edited], START, 1)
        run_until(state, START + timedelta(days=1))
        newcomers[state.assignments["cart_offer"]] += 1
    assert newcomers["twenty"] >= 190


def test_every_row_after_the_split_carries_the_variant_and_the_split_marks_exposure() -> None:
    state = customer()
    out = checkout(state, [bundle(SPLIT)], START, 1)
    out.extend(run_until(state, START + timedelta(days=1)))
    variant = state.assignments["cart_offer"]
    exposure = [a for a in out.reached if a.step == "offer"]
    assert [(a.experiment, a.variant) for a in exposure] == [("cart_offer", variant)]
    sent = next(a for a in out.actions if a.action == "send")
    assert (sent.variant, sent.template) == (variant, {"ten": "ten", "twenty": "twenty"}[variant])
    exit_ = out.actions[-1]
    assert (exit_.action, exit_.variant) == ("exit", variant)
    # Reaching steps is counted (for "waiting now at step X"), outside the journal.
    assert [a.step for a in out.reached] == ["step_1", "offer", f"{variant}_off", "done"]
    assert all(line.action != "step" for line in state.journal)


# --- holdouts --------------------------------------------------------------------------------------


def test_a_holdout_customer_enters_is_counted_receives_nothing_and_still_converts() -> None:
    journey = bundle([{"wait": "1h"}, {"id": "remind", "send": {"template": "mail"}}], holdout="20%")
    held = treated = 0
    for number in range(500):
        state = customer(f"cus_{number}")
        out = checkout(state, [journey], START, 1)
        out.extend(run_until(state, START + timedelta(hours=2)))
        order = event(state.customer_id, "order_placed", START + timedelta(hours=3), 2, order_id="o1", total=40.0,
                      currency="EUR")
        out.extend(interpreter.handle_event(state, order, [journey], START + timedelta(hours=3)))
        convert = next(a for a in out.actions if a.action == "convert")
        if out.actions[0].holdout == "journey":
            held += 1
            assert said(out)[1:] == ["skip cart mail holdout", "exit cart completed", "convert cart"]
            assert out.sends == [] and convert.message_id is None  # a conversion with no message
        else:
            treated += 1
            assert out.actions[1].action == "send"
            assert convert.message_id == out.actions[1].message_id  # credited to the reminder
            assert convert.step == "remind"
        assert (convert.value, convert.currency) == (40.0, "EUR")
    assert 70 <= held <= 130 and held + treated == 500  # 20 % of 500 is 100


def test_the_global_holdout_silences_marketing_journeys_but_not_transactional_ones() -> None:
    policies = Policies(global_holdout="50%")
    marketing = bundle([{"send": {"template": "mail"}}], name="promo", policies=policies)
    receipt = bundle([{"send": {"template": "mail"}}], name="receipt", category="transactional", policies=policies)
    held = 0
    for number in range(200):
        state = customer(f"cus_{number}")
        out = checkout(state, [marketing, receipt], START, 1)
        lines = said(out)
        assert "send receipt mail" in lines  # a message the customer asked for always goes
        if "skip promo mail holdout" in lines:
            held += 1
            assert out.actions[0].holdout == "global"
    assert 70 <= held <= 130


def test_the_holdout_is_hashed_apart_from_splits() -> None:
    """Were both hashed the same way, the holdout would be exactly the customers of one variant."""
    journey = bundle(SPLIT, holdout="50%")
    pairs: Counter[tuple[bool, str]] = Counter()
    for number in range(400):
        state = customer(f"cus_{number}")
        checkout(state, [journey], START, 1)
        run_until(state, START + timedelta(days=1))
        pairs[(state.assignments["holdout:cart"] == "holdout", state.assignments["cart_offer"])] += 1
    assert all(count >= 60 for count in pairs.values()) and len(pairs) == 4, pairs


# --- frequency caps and priority -------------------------------------------------------------------


def test_a_cap_holds_across_journeys_and_the_higher_priority_journey_speaks_first() -> None:
    policies = Policies.model_validate({"frequency_caps": [{"channel": "any", "at_most": 1, "per": "16h"}]})
    cart = bundle([{"wait": "1h"}, {"send": {"template": "mail"}}], name="cart", priority=10, policies=policies)
    browse = bundle([{"wait": "1h"}, {"send": {"template": "mail"}}], name="browse", policies=policies)
    state = customer()
    checkout(state, [browse, cart], START, 1)  # both due at the same moment
    out = run_until(state, START + timedelta(hours=2))
    assert [line for line in said(out) if "mail" in line] == ["send cart mail", "skip browse mail frequency_capped"]


def test_a_send_in_flight_is_reserved_and_a_failed_one_gives_its_place_back() -> None:
    policies = Policies.model_validate({"frequency_caps": [{"channel": "sms", "at_most": 1, "per": "7d"}]})
    first = bundle([{"send": {"template": "text"}}], name="first", policies=policies)
    second = bundle([{"wait": "1h"}, {"send": {"template": "text"}}], name="second", policies=policies)
    state = customer()
    out = checkout(state, [first, second], START, 1)
    [in_flight] = out.sends  # no outcome yet: it still counts
    assert said(run_until(state, START + timedelta(hours=2), settle=False))[0] == "skip second text frequency_capped"
    # Had it failed for good, the place would be free again.
    state = customer("c2")
    out = checkout(state, [first, second], START, 1)
    interpreter.handle_send_result(state, SendResult(message_id=out.sends[0].message_id, channel="sms",
                                                     outcome="failed", provider="twilio", error="21610"), START)
    assert said(run_until(state, START + timedelta(hours=2)))[0] == "send second text"
    assert in_flight.channel == "sms"


def test_a_capped_message_can_hold_until_the_cap_allows_but_never_beyond_max_hold() -> None:
    caps = {"frequency_caps": [{"channel": "any", "at_most": 1, "per": "16h", "when_capped": "hold",
                                "max_hold": "1d"}]}
    policies = Policies.model_validate(caps)
    early = bundle([{"send": {"template": "mail"}}], name="early", policies=policies)
    late = bundle([{"wait": "2h"}, {"send": {"template": "text"}}], name="late", policies=policies)
    state = customer()
    checkout(state, [early, late], START, 1)
    out = run_until(state, START + timedelta(hours=3))
    hold = next(a for a in out.actions if a.action == "hold")
    assert (hold.reason, hold.until) == ("frequency_capped", START + timedelta(hours=16))
    assert said(run_until(state, START + timedelta(hours=17)))[0] == "send late text"
    # With max_hold shorter than the wait the cap needs, the message is skipped instead.
    short = Policies.model_validate({"frequency_caps": [{**caps["frequency_caps"][0], "max_hold": "6h"}]})
    state = customer("c2")
    checkout(state, [bundle([{"send": {"template": "mail"}}], name="early", policies=short),
                     bundle([{"wait": "2h"}, {"send": {"template": "text"}}], name="late", policies=short)], START, 1)
    assert "skip late text frequency_capped" in said(run_until(state, START + timedelta(hours=3)))


def test_transactional_messages_are_not_capped_and_do_not_use_up_the_cap() -> None:
    policies = Policies.model_validate({"frequency_caps": [{"channel": "any", "at_most": 1, "per": "1d"}]})
    receipt = bundle([{"send": {"template": "mail"}}], name="receipt", category="transactional", policies=policies)
    promo = bundle([{"wait": "1h"}, {"send": {"template": "mail"}}], name="promo", policies=policies)
    state = customer()
    out = checkout(state, [receipt, promo], START, 1)
    out.extend(checkout(state, [receipt], START + timedelta(minutes=5), 2, cart="k2"))
    out.extend(run_until(state, START + timedelta(hours=2)))
    assert [line for line in said(out) if "mail" in line] == ["send receipt mail", "send receipt mail",
                                                             "send promo mail"]
    assert [a.category for a in out.actions if a.action == "send"] == ["transactional", "transactional",
                                                                      "marketing"]


def test_policy_quiet_hours_apply_to_marketing_journeys_without_their_own() -> None:
    policies = Policies.model_validate({"quiet_hours": {"sms": {"start": "21:00", "end": "09:00"}}})
    night = START.replace(hour=23)
    promo = bundle([{"send": {"template": "text"}}], name="promo", policies=policies)
    receipt = bundle([{"send": {"template": "text"}}], name="receipt", category="transactional", policies=policies)
    out = checkout(customer(), [promo, receipt], night, 1)
    assert [line for line in said(out) if "text" in line] == ["hold promo text quiet_hours", "send receipt text"]


# --- goals and attribution -------------------------------------------------------------------------


@pytest.mark.parametrize(("attribution", "credited"), [("last_touch", "second"), ("trigger", None)])
def test_a_conversion_is_credited_to_the_last_message_received_or_to_the_trigger(
    attribution: str, credited: str | None
) -> None:
    steps: list[dict[str, Any]] = [
        {"id": "first", "send": {"template": "mail"}}, {"wait": "1d"}, {"id": "second", "send": {"template": "text"}},
        {"wait": "1d"}, {"id": "third", "send": {"template": "mail"}},
    ]
    journey = bundle(steps, goal={"event": "order_placed", "within": "7d", "value": "event.properties.total",
                                  "attribution": attribution})
    state = customer()
    out = checkout(state, [journey], START, 1)
    interpreter.handle_sent(state, out.sends[0].message_id)
    out.extend(run_until(state, START + timedelta(days=1, hours=1)))
    # The third message is still in flight when the order comes: the customer has not received it.
    third = run_until(state, START + timedelta(days=2), settle=False)
    order = event("c1", "order_placed", START + timedelta(days=2, minutes=1), 5, order_id="o1", total=10,
                  currency="USD")
    done = interpreter.handle_event(state, order, [], START + timedelta(days=2, minutes=1))
    convert = next(a for a in done.actions if a.action == "convert")
    assert convert.step == credited
    if credited:
        assert convert.message_id == next(a.message_id for a in out.actions if a.step == "second")
        assert convert.message_id != third.sends[0].message_id


def test_a_goal_counted_after_a_step_ignores_orders_before_it() -> None:
    """A win-back's goal counts from its offer, not from the order that started the 60-day wait."""
    steps: list[dict[str, Any]] = [{"wait": "60d"}, {"id": "offer", "send": {"template": "mail"}}, {"wait": "14d"}]
    journey = bundle(steps, trigger={"event": "order_placed"},
                     goal={"event": "product_viewed", "within": "14d", "after": "offer"})
    state = customer()
    first_order = event("c1", "order_placed", START, 1, order_id="o1", total=1, currency="USD")
    interpreter.handle_event(state, first_order, [journey], START)
    early = event("c1", "product_viewed", START + timedelta(days=10), 2, sku="p1")
    assert "convert" not in said(interpreter.handle_event(state, early, [journey], START + timedelta(days=10)))
    run_until(state, START + timedelta(days=60, hours=1))
    later = event("c1", "product_viewed", START + timedelta(days=65), 3, sku="p1")
    assert said(interpreter.handle_event(state, later, [journey], START + timedelta(days=65)))[0] == "convert cart"


def test_a_cap_holds_across_continue_as_new() -> None:
    """The count travels in the state a new run starts from, as the data converter carries it."""
    from temporalio.contrib.pydantic import pydantic_data_converter

    from omnicart.signals import CustomerWorkflowInput

    policies = Policies.model_validate({"frequency_caps": [{"channel": "any", "at_most": 1, "per": "16h"}]})
    first = bundle([{"send": {"template": "mail"}}], name="first", policies=policies)
    second = bundle([{"wait": "1h"}, {"send": {"template": "mail"}}], name="second", policies=policies)
    state = customer()
    out = checkout(state, [first, second], START, 1)
    interpreter.handle_sent(state, out.sends[0].message_id)
    converter = pydantic_data_converter.payload_converter
    [payload] = converter.to_payloads([CustomerWorkflowInput(customer_id="c1", state=state)])
    carried = converter.from_payloads([payload], [CustomerWorkflowInput])[0].state
    assert carried is not None and carried.sent == state.sent
    assert said(run_until(carried, START + timedelta(hours=2)))[0] == "skip second mail frequency_capped"
