"""The pure decisions behind a send-time stock check, the ``catalog`` templates and conditions read,
and how the interpreter takes a skip (no fallback, no cap used) and asks for the catalog."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from omnicart.catalog import apply_catalog_events
from omnicart.catalog.availability import (
    CatalogSnapshot,
    Store,
    advertised_skus,
    at_send,
    catalog_context,
    decide,
)
from omnicart.catalog.prices import lowest_price
from omnicart.catalog.products import Product
from omnicart.catalog.snapshot import CatalogTimeline, load_snapshot
from omnicart.engine import interpreter
from omnicart.engine.state import CustomerState
from omnicart.events import Event
from omnicart.journey.loader import load_files, named_files
from omnicart.journey.model import JourneyBundle
from omnicart.messages import SendResult
from omnicart.storage import get_engine, upgrade
from tests.support.bundles import JOURNEYS, flagship

T0 = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)


def _context(*skus: str, trigger_sku: str | None = None) -> dict[str, Any]:
    items = [{"sku": sku, "name": sku.title(), "quantity": 1, "price": 10.0} for sku in skus]
    trigger = {"properties": {"sku": trigger_sku}} if trigger_sku else {"properties": {}}
    return {"cart": {"items": items, "total": 10.0 * len(items)}, "trigger": trigger, "customer": {}}


def _stock(**levels: int) -> CatalogSnapshot:
    return CatalogSnapshot(levels={sku: {"online": quantity} for sku, quantity in levels.items()})


def test_the_skus_a_message_advertises_are_its_cart_items_then_the_trigger_sku() -> None:
    assert advertised_skus(_context("a", "b", "a", trigger_sku="c")) == ["a", "b", "c"]
    assert advertised_skus({"customer": {}}) == []


@pytest.mark.parametrize(
    ("policy", "levels", "skip", "kept"),
    [
        ("drop_items", {"a": 3, "b": 0}, False, ["a"]),
        ("drop_items", {"a": 0, "b": 0}, True, None),
        ("drop_items", {"a": 3, "b": 3}, False, ["a", "b"]),
        ("skip", {"a": 3, "b": 0}, True, None),
        ("skip", {"a": 3, "b": 3}, False, ["a", "b"]),
        ("send", {"a": 0, "b": 0}, False, ["a", "b"]),
        ("drop_items", {"a": -2}, False, ["b"]),  # oversold counts as none; b is unknown: in stock
        ("skip", {}, False, ["a", "b"]),  # a shop without catalog events sees no change
    ],
)
def test_a_message_is_kept_trimmed_or_skipped_by_its_policy(
    policy: Any, levels: dict[str, int], skip: bool, kept: list[str] | None
) -> None:
    context = at_send(policy, _context("a", "b"), _stock(**levels))
    assert (context is None) == skip
    if context is not None:
        assert [item["sku"] for item in context["cart"]["items"]] == kept
        assert context["cart"]["total"] == 10.0 * len(kept or [])


def test_stock_in_a_store_counts_as_in_stock() -> None:
    snapshot = CatalogSnapshot(levels={"a": {"online": 0, "kadikoy": 1}})
    assert not decide("skip", _context("a"), snapshot).skip


def test_a_product_message_whose_product_sold_out_is_skipped_even_with_items_dropped() -> None:
    decision = decide("drop_items", _context(trigger_sku="shoe"), _stock(shoe=0))
    assert decision.skip and decision.sold_out == ["shoe"]


def test_the_catalog_a_template_reads_names_the_preferred_store_else_the_nearest() -> None:
    snapshot = CatalogSnapshot(
        products={"a": Product("a", "Shirt", "https://shop.example/a", None, None, 49.5, "EUR", None)},
        levels={"a": {"online": 2, "near": 1, "far": 9, "empty": 0}},
        lowest={"a": 45.0},
        stores={"near": Store("near", "Moda", "Moda Cd. 12", 40.987, 29.026),
                "far": Store("far", "Beşiktaş", "Barbaros Blv. 5", 41.043, 29.007)},
    )
    here = {"latitude": 40.9869, "longitude": 29.0254}
    nearest = catalog_context(snapshot, ["a"], customer=here)["a"]
    assert nearest["stock"] == {"total": 12, "online": 2, "stores": {"empty": 0, "far": 9, "near": 1}}
    assert [store["store_id"] for store in nearest["stores"]] == ["near", "far"]
    assert nearest["pickup"]["pickup_url"] == "https://shop.example/a"  # no pick-up pattern: the product page
    assert nearest["lowest_price_30d"] == 45.0 and nearest["price"] == 49.5

    preferred = catalog_context(snapshot, ["a"], customer={**here, "preferred_store_id": "far"},
                                pickup_url="https://shop.example/pickup?sku={sku}&store={store_id}")["a"]
    assert preferred["pickup"]["store_id"] == "far"
    assert preferred["pickup"]["pickup_url"] == "https://shop.example/pickup?sku=a&store=far"

    sold_out_there = catalog_context(snapshot, ["a"], customer={**here, "preferred_store_id": "empty"})["a"]
    assert sold_out_there["pickup"]["store_id"] == "near"
    nowhere = catalog_context(snapshot, ["a"])["a"]  # no location: most units first
    assert nowhere["pickup"]["store_id"] == "far" and nowhere["pickup"]["distance_km"] is None


def _events(*rows: tuple[str, timedelta, dict[str, Any]]) -> list[Event]:
    return [Event.parse({"id": f"e{n}", "type": kind, "timestamp": (T0 + offset).isoformat(), "source": "web",
                         "properties": properties}) for n, (kind, offset, properties) in enumerate(rows)]


def test_the_preview_timeline_answers_as_the_database_does_at_each_moment(tmp_path: Any) -> None:
    """``CatalogTimeline`` (simulate) and ``load_snapshot`` (the send activity) agree on the same events."""
    day = timedelta(days=1)
    events = _events(
        ("store_updated", -40 * day, {"store_id": "s1", "name": "Moda", "latitude": 40.9, "longitude": 29.0}),
        ("product_updated", -40 * day, {"sku": "a", "name": "Shirt", "price": 40.0, "currency": "EUR"}),
        ("price_changed", -10 * day, {"sku": "a", "price": 60.0, "currency": "EUR"}),
        ("price_changed", -day, {"sku": "a", "price": 50.0, "currency": "EUR"}),
        ("inventory_changed", -day, {"sku": "a", "location": "online", "quantity": 4}),
        ("inventory_changed", -day, {"sku": "a", "location": "s1", "quantity": 2}),
    )
    url = f"sqlite:///{tmp_path / 'catalog.db'}"
    upgrade(url)
    engine = get_engine(url)
    apply_catalog_events(engine, events)
    from_database = load_snapshot(engine, ["a", "unknown"], now=T0)
    from_timeline = CatalogTimeline(events).snapshot(["a", "unknown"], T0)
    assert from_timeline.levels == from_database.levels == {"a": {"online": 4, "s1": 2}}
    assert from_timeline.lowest == from_database.lowest == {"a": 40.0}  # standing at the window's start
    assert lowest_price(engine, "a", before=T0, currency="EUR") == 40.0  # the rule the catalog applies
    assert from_timeline.products["a"].price == from_database.products["a"].price == 50.0
    assert from_timeline.stores == from_database.stores
    earlier = CatalogTimeline(events).snapshot(["a"], T0 - 2 * timedelta(days=1))
    assert earlier.levels == {} and earlier.products["a"].price == 60.0


def _flagship_run() -> tuple[CustomerState, JourneyBundle]:
    """A flagship run for a one-item cart, waiting for its first reminder (an hour after T0)."""
    bundle = flagship()
    state = interpreter.new_state("cus_1")
    profile = Event.parse({"id": "p", "type": "customer_updated", "customer_id": "cus_1", "source": "web",
                           "timestamp": (T0 - timedelta(hours=1)).isoformat(),
                           "properties": {"email": "a@example.com", "consent": {"email": True}}})
    interpreter.handle_event(state, profile, [], T0)
    checkout = Event.parse({"id": "c", "type": "checkout_started", "customer_id": "cus_1", "source": "web",
                            "timestamp": T0.isoformat(), "properties": {
                                "cart_id": "k", "items": [{"sku": "a", "quantity": 1, "price": 10.0}]}})
    assert interpreter.catalog_wanted(state, T0, checkout, [bundle]) == []  # the branch is an hour away
    interpreter.handle_event(state, checkout, [bundle], T0)
    return state, bundle


def test_the_interpreter_asks_for_the_cart_stock_only_when_a_run_is_about_to_branch_on_it() -> None:
    state, _ = _flagship_run()
    assert interpreter.catalog_wanted(state, T0 + timedelta(minutes=59)) == []
    assert interpreter.catalog_wanted(state, T0 + timedelta(hours=1)) == ["a"]
    interpreter.learn_catalog(state, {"a": {"stock": {"total": 2}}})
    out = interpreter.handle_timers(state, T0 + timedelta(hours=1))
    assert [send.step_id for send in out.sends] == ["first_reminder_low_stock"]


def test_a_send_skipped_out_of_stock_is_journalled_and_frees_its_cap_without_a_fallback() -> None:
    state, _ = _flagship_run()
    interpreter.learn_catalog(state, {"a": {"stock": {"total": 50}}})
    [send] = interpreter.handle_timers(state, T0 + timedelta(hours=1)).sends
    assert [mark.message_id for mark in state.sent] == [send.message_id]
    result = SendResult(message_id=send.message_id, channel="email", outcome="skipped", provider="sendgrid",
                        skip_reason="out_of_stock")
    out = interpreter.handle_send_result(state, result, T0 + timedelta(hours=1))
    assert out.sends == []  # no other channel advertises a sold-out item instead
    assert [(a.action, a.step, a.reason, a.message_id) for a in out.actions] == [
        ("skip", "first_reminder", "out_of_stock", send.message_id)]
    assert state.sent == [] and state.pending == []
    assert state.runs[0].engagement.get("sent") == 0


def test_a_sku_the_catalog_never_heard_of_reads_the_same_whichever_way_it_is_built() -> None:
    """The fast path for a catalog that knows none of a message's skus says what the full one says."""
    context = _context("a")
    fast = at_send("drop_items", context, CatalogSnapshot())
    full = at_send("drop_items", context, CatalogSnapshot(levels={"other": {"online": 1}}))
    assert fast is not None and full is not None
    assert fast["catalog"] == full["catalog"] == catalog_context(CatalogSnapshot(), ["a"])


def test_a_mistyped_if_out_of_stock_is_reported_at_its_file_line_and_column(tmp_path: Path) -> None:
    shutil.copytree(JOURNEYS / "templates", tmp_path / "templates")
    text = (JOURNEYS / "abandoned_cart.yaml").read_text()
    text = text.replace("      template: cart_reminder_1\n", "      template: cart_reminder_1\n"
                        "      if_out_of_stock: drop_item\n", 1)
    path = tmp_path / "abandoned_cart.yaml"
    path.write_text(text)
    line = text.splitlines().index("      if_out_of_stock: drop_item") + 1
    problems = [str(problem) for problem in load_files(named_files([path])).problems]
    assert problems == [f"{path}:{line}:24: 'if_out_of_stock' cannot be 'drop_item' — did you mean 'drop_items'?"]
