"""The pure side of identity: the envelope's anonymous id, an anonymous visitor's state, the merge
into the known customer's state, and ``omnicart simulate`` routing a timeline the same way."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from omnicart.engine import interpreter, merge
from omnicart.engine.state import CustomerState
from omnicart.simulate import simulate
from tests.support.bundles import browse, flagship
from tests.support.identity import event, welcome
from tests.support.timelines import cart, profile

T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
VISITOR = "anon:h-visitor"


def _visitor_with_a_checkout() -> CustomerState:
    visitor = interpreter.new_state(VISITOR)
    view = event("v1", "product_viewed", T0, anonymous_id="ck_1", sku="SKU-1", name="Linen shirt")
    checkout = event("v2", "checkout_started", T0 + timedelta(minutes=5), anonymous_id="ck_1", **cart())
    interpreter.handle_event(visitor, view, [], T0)
    interpreter.handle_event(visitor, checkout, [flagship()], checkout.timestamp)
    return visitor


def _known(at: datetime) -> CustomerState:
    known = interpreter.new_state("cus_ada")
    interpreter.handle_event(known, event("k1", "customer_updated", at, customer_id="cus_ada", **profile()), [], at)
    return known


def test_an_event_names_a_customer_an_anonymous_id_or_both_and_neither_is_refused() -> None:
    assert event("e1", "product_viewed", T0, anonymous_id="ck_1", sku="S").anonymous_id == "ck_1"
    both = event("e2", "customer_updated", T0, customer_id="cus_1", anonymous_id="ck_1")
    assert (both.customer_id, both.anonymous_id) == ("cus_1", "ck_1")
    with pytest.raises(ValidationError) as neither:
        event("e3", "product_viewed", T0, sku="S")
    assert neither.value.errors()[0]["loc"] == ("customer_id",)
    with pytest.raises(ValidationError) as bad:
        event("e4", "product_viewed", T0, anonymous_id="*nope", sku="S")
    assert bad.value.errors()[0]["loc"] == ("anonymous_id",)
    with pytest.raises(ValidationError) as reserved:
        event("e6", "product_viewed", T0, customer_id="anon:h-1", sku="S")
    assert reserved.value.errors()[0]["loc"] == ("customer_id",)
    with pytest.raises(ValidationError) as long:
        event("e5", "product_viewed", T0, anonymous_id="a" * 201, sku="S")
    assert long.value.errors()[0]["loc"] == ("anonymous_id",)


def test_an_anonymous_visitor_learns_its_cart_but_its_journeys_wait_for_an_address() -> None:
    visitor = _visitor_with_a_checkout()

    assert list(visitor.carts) == ["cart_1"]
    assert visitor.runs == [] and visitor.journal == []
    assert [held.event.id for held in visitor.held] == ["v2"]


def test_the_merge_starts_the_held_journey_for_the_known_customer_from_when_the_checkout_happened() -> None:
    visitor = _visitor_with_a_checkout()
    login = T0 + timedelta(minutes=20)
    known = _known(login)

    out = merge.merge(known, visitor, login)

    assert [(a.customer_id, a.journey, a.action) for a in out.actions] == [("cus_ada", "abandoned_cart", "enter")]
    (run,) = known.runs
    assert run.key == "cart_1" and run.started_at == T0 + timedelta(minutes=5)
    assert interpreter.next_wakeup(known) == T0 + timedelta(minutes=65)  # 1h after the checkout, not the login
    assert list(known.carts) == ["cart_1"]
    assert {"v1", "v2", "k1"} <= {e["id"] for e in known.recent}
    assert known.profile.email == "ada@example.com"  # the visitor knew no address; the customer's stays
    sends = interpreter.handle_timers(known, T0 + timedelta(minutes=65)).sends
    assert [interpreter.send_request(known, s).to for s in sends] == [["ada@example.com"]]


def test_a_repeated_merge_of_the_same_visitor_changes_nothing() -> None:
    visitor = _visitor_with_a_checkout()
    known = _known(T0 + timedelta(minutes=20))
    merge.merge(known, visitor, T0 + timedelta(minutes=20))
    before = (len(known.runs), dict(known.carts), len(known.journal), list(known.seen), known.actions_total)

    again = merge.merge(known, _visitor_with_a_checkout(), T0 + timedelta(minutes=30))

    assert again.actions == [] and again.sends == []
    assert (len(known.runs), dict(known.carts), len(known.journal), list(known.seen), known.actions_total) == before


def test_the_same_cart_checked_out_by_both_gives_one_run() -> None:
    visitor = _visitor_with_a_checkout()
    at = T0 + timedelta(minutes=10)
    known = _known(at)
    interpreter.handle_event(known, event("k2", "checkout_started", at, customer_id="cus_ada", **cart()),
                             [flagship()], at)

    out = merge.merge(known, visitor, at)

    assert [a.action for a in out.actions] == []
    assert [(run.journey, run.key) for run in known.runs] == [("abandoned_cart", "cart_1")]


def test_a_customer_who_had_the_welcome_gets_no_second_one_from_an_anonymous_sign_up() -> None:
    signed_up = T0 - timedelta(days=30)
    known = interpreter.new_state("cus_ada")
    interpreter.handle_event(known, event("k1", "customer_updated", signed_up, customer_id="cus_ada",
                                          **profile()), [welcome()], signed_up)
    interpreter.handle_timers(known, signed_up)
    assert known.runs == [] and known.entered == ["welcome"]  # it completed
    visitor = interpreter.new_state(VISITOR)
    newsletter = event("v1", "customer_updated", T0, anonymous_id="ck_1", first_name="Ada")
    interpreter.handle_event(visitor, newsletter, [welcome()], T0)

    out = merge.merge(known, visitor, T0 + timedelta(minutes=1))

    assert [a.action for a in out.actions if a.journey == "welcome"] == []
    assert known.profile.first_name == "Ada"


def test_a_once_journey_never_runs_twice_but_others_run_again_from_a_merged_session() -> None:
    known = interpreter.new_state("cus_ada")
    signed_up = T0 - timedelta(days=30)
    interpreter.handle_event(known, event("k1", "customer_updated", signed_up, customer_id="cus_ada",
                                          **profile()), [welcome()], signed_up)
    interpreter.handle_event(known, event("k2", "product_viewed", signed_up, customer_id="cus_ada", sku="S"),
                             [browse()], signed_up)
    interpreter.handle_timers(known, signed_up + timedelta(days=3))
    assert known.runs == []  # both completed
    again = interpreter.handle_event(known, event("k3", "customer_updated", T0, customer_id="cus_ada",
                                                  first_name="Ada"), [welcome()], T0)
    assert again.actions == []  # once: not even for the known customer's own second sign-up
    visitor = interpreter.new_state(VISITOR)
    view = event("v1", "product_viewed", T0, anonymous_id="ck_1", sku="SKU-9")
    interpreter.handle_event(visitor, view, [browse()], T0)

    out = merge.merge(known, visitor, T0 + timedelta(minutes=5))

    assert [(a.journey, a.action) for a in out.actions] == [("browse_abandonment", "enter")]


def test_the_visitors_later_profile_fields_win_and_older_ones_do_not() -> None:
    known = _known(T0)
    visitor = interpreter.new_state(VISITOR)
    interpreter.handle_event(visitor, event("v1", "customer_updated", T0 - timedelta(days=1), anonymous_id="ck",
                                            first_name="Old", timezone="Asia/Tokyo"), [], T0)
    interpreter.handle_event(visitor, event("v2", "customer_updated", T0 + timedelta(hours=1), anonymous_id="ck",
                                            locale="fr-FR"), [], T0)

    merge.merge(known, visitor, T0 + timedelta(hours=2))

    assert (known.profile.first_name, known.profile.timezone, known.profile.locale) == (
        "Ada", "America/New_York", "fr-FR")


def test_simulate_routes_anonymous_ids_by_their_first_link_and_merges_like_the_workflow() -> None:
    view = event("v1", "product_viewed", T0, anonymous_id="ck_1", sku="SKU-1")
    checkout = event("v2", "checkout_started", T0 + timedelta(minutes=5), anonymous_id="ck_1", **cart())
    login = event("k1", "customer_updated", T0 + timedelta(minutes=20), customer_id="cus_ada",
                  anonymous_id="ck_1", **profile())
    later = event("v3", "order_placed", T0 + timedelta(hours=2), anonymous_id="ck_1", order_id="o1", total=79.5)
    other = event("g1", "customer_updated", T0 + timedelta(minutes=90), customer_id="cus_grace",
                  anonymous_id="ck_1", **profile())  # a second link: the first one wins

    actions = simulate([flagship()], [view, checkout, login, other, later])

    lines = [(a.customer_id, a.action, a.step or a.reason) for a in actions if a.action != "hold"]
    assert lines == [
        ("cus_ada", "enter", None),
        ("cus_ada", "send", "first_reminder"),
        ("cus_ada", "convert", "first_reminder"),  # the anonymous order after the link reached Ada
        ("cus_ada", "exit", "order_placed"),
    ]
    assert actions[0].at == login.timestamp
