"""The tracking plan as a producer meets it: which events the product accepts, and why not.

``problems`` is what the API's 422 and ``omnicart simulate`` report (the API's own tests post the
same cases over HTTP); ``omnicart schema --plan`` publishes the plan for producers' tools.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from omnicart.plan import load_plan, problems
from omnicart.plan.catalog import PlanError

ROOT = Path(__file__).resolve().parent.parent
PLAN = load_plan(ROOT / "plan")
CART = {"cart_id": "c1", "items": [{"sku": "A", "price": 12.5}], "currency": "EUR"}


@pytest.mark.parametrize(
    ("event_type", "customer_id", "properties", "expected"),
    [
        ("gift_card_redeemed", "cus_1", {}, [("type", "'gift_card_redeemed' is not in the tracking plan: "
                                                       "declare it in the tracking plan (plan/)")]),
        ("checkout_startd", "cus_1", CART, [("type", "'checkout_startd' is not in the tracking plan — did you "
                                                    "mean 'checkout_started'?")]),
        ("checkout_started", "*", CART, [("customer_id", "must start with a letter or digit and hold only "
                                                         "letters, digits and _ . : @ + -")]),
        ("order_placed", "", {"order_id": "o1"}, [("customer_id", "is required: order_placed events concern a "
                                                                   "customer")]),
        ("checkout_started", "cus_1", {"cart_id": "c1"}, [("properties.items", "is required")]),
        ("checkout_started", "cus_1", {**CART, "items": [{"sku": "A", "price": -1}]},
         [("properties.items[0].price", "must be greater than or equal to 0")]),
        ("customer_updated", "cus_1", {"phone": "0612345678", "timezone": "Mars/Base"},
         [("properties.phone", "must be an E.164 phone number such as +14155550100"),
          ("properties.timezone", "must be an IANA time zone such as Europe/Paris")]),
        ("consent_changed", "cus_1", {"channel": "fax", "granted": True},
         [("properties.channel", "must be one of 'email', 'sms', 'push', 'whatsapp'")]),
    ],
    ids=["undeclared type", "typo of a type", "customer id '*'", "customer event without customer",
         "cart without items", "negative price", "bad phone and zone", "unknown channel"],
)
def test_an_event_that_breaks_the_plan_names_the_field(
    event_type: str, customer_id: str, properties: dict[str, object], expected: list[tuple[str, str]]
) -> None:
    assert problems(PLAN, event_type, customer_id, properties) == expected


def test_catalog_and_store_events_need_no_customer_and_extra_properties_are_kept() -> None:
    assert problems(PLAN, "price_changed", "", {"sku": "A", "price": 10.0, "previous_price": 12.0}) == []
    assert problems(PLAN, "store_updated", "", {"store_id": "london_soho"}) == []
    assert problems(PLAN, "order_placed", "cus_1", {"order_id": "o1", "gift_wrap": True}) == []
    assert problems(PLAN, "wishlist_added", "cus_1", {"sku": "A"}) == []  # the shop's own, from plan/


def test_a_shop_cannot_redeclare_a_built_in_event(tmp_path: Path) -> None:
    (tmp_path / "order.yaml").write_text("event: order_placed\nproperties: {}\n")
    with pytest.raises(PlanError, match="event 'order_placed' is already declared in"):
        load_plan(tmp_path)


def test_the_published_plan_accepts_the_sample_events_and_refuses_an_undeclared_type() -> None:
    done = subprocess.run([sys.executable, "-m", "omnicart.cli", "schema", "--plan"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=True)
    validator = Draft202012Validator(json.loads(done.stdout))
    for line in (ROOT / "examples" / "events.jsonl").read_text().splitlines():
        assert validator.is_valid(json.loads(line)), line
    sample = json.loads((ROOT / "examples" / "events.jsonl").read_text().splitlines()[0])
    assert not validator.is_valid({**sample, "type": "zzz_qqq"})


def _variants(value: object) -> list[object]:
    """Values a producer gets wrong near ``value``: other types, edge numbers, odd strings."""
    return [None, True, False, 0, -1, 1.0, 1.5, 10**12, "", "x", "x" * 600, "not an email", "+1", "Mars/Olympus",
            [], [{}], [{"sku": 1}], {}, {"a": 1}, value]


@pytest.mark.parametrize("event_type", sorted(load_plan().types()))
def test_the_compiled_check_never_accepts_what_the_full_validator_refuses(event_type: str) -> None:
    """The compiled check answers "keeps the plan" for nearly every event; it may say no too often
    (then jsonschema decides), never yes when jsonschema finds a problem."""
    from omnicart.plan.validate import _fast_validator, _keeps_schema, _validator

    plan = load_plan()
    assert _fast_validator(plan, event_type) is not None  # the built-in plan gets the fast path
    schema = plan.events[event_type].schema
    names = [*schema.get("properties", {}), "extra"]
    base: dict[str, object] = {}
    for name in schema.get("required", []):
        base[name] = "x"
    for name in names:
        for value in _variants(base.get(name)):
            properties = {**base, name: value}
            if _keeps_schema(plan, event_type, properties):
                assert not list(_validator(plan, event_type).iter_errors(properties)), (name, value)


def test_a_valid_event_takes_the_compiled_path_and_a_shops_newer_keyword_does_not(tmp_path: Path) -> None:
    from omnicart.plan.validate import _fast_validator, _keeps_schema

    plan = load_plan()
    order = {"order_id": "o-1", "total": 79.5, "currency": "USD"}
    assert _keeps_schema(plan, "order_placed", order) and problems(plan, "order_placed", "cus_1", order) == []
    (tmp_path / "loyalty_tier_changed.yaml").write_text(
        "event: loyalty_tier_changed\nconcerns: customer\nproperties:\n"
        "  tiers: {type: array, prefixItems: [{enum: [gold, silver]}]}\n")
    shop = load_plan(tmp_path)
    assert _fast_validator(shop, "loyalty_tier_changed") is None  # draft 2020-12 only: jsonschema judges
    assert problems(shop, "loyalty_tier_changed", "cus_1", {"tiers": ["bronze"]}) == [
        ("properties.tiers[0]", "must be one of 'gold', 'silver'")]
    assert problems(shop, "loyalty_tier_changed", "cus_1", {"tiers": ["gold"]}) == []


def test_checking_an_event_leaves_its_properties_as_sent() -> None:
    """The plan's defaults (an item's quantity) document what a journey assumes; they are never
    written into the producer's event."""
    cart = {"cart_id": "k1", "items": [{"sku": "a"}]}
    assert problems(load_plan(), "checkout_started", "cus_1", cart) == []
    assert cart == {"cart_id": "k1", "items": [{"sku": "a"}]}
