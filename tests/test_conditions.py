"""CEL conditions see only the fields they name; the answer must be the one the full context gives."""

from __future__ import annotations

from typing import Any

import cel
import pytest

from omnicart.journey.conditions import ConditionError, compile_condition, evaluate

CONTEXT: dict[str, Any] = {
    "customer": {"id": "c1", "email": "a@example.com", "consent": {"email": True, "sms": False, "push": False},
                 "push_tokens": ["t1", "t2"], "vip": True},
    "trigger": {"type": "checkout_started", "source": "app", "timestamp": "2026-11-22T10:00:00+00:00",
                "properties": {"cart_id": "k1", "total": 120.5, "items": [{"sku": "A", "price": 100.5},
                                                                           {"sku": "B", "price": 20.0}]}},
    "event": {"type": "cart_updated", "source": "web", "properties": {"cart_id": "k1", "items": []}},
    "events": [{"type": "product_viewed", "properties": {"sku": "A"}}, {"type": "cart_updated", "properties": {}}],
    "engagement": {"sent": 2, "delivered": 2, "opened": 1, "clicked": 0, "bounced": 0, "failed": 0},
    "cart": {"cart_id": "k1", "items": [{"sku": "A"}], "total": 100.5, "currency": "USD"},
}

EXPRESSIONS = [
    "size(trigger.properties.items) > 1",
    "size(trigger.properties.items) == 2 && trigger.properties.items[0].sku == 'A'",
    "size(event.properties.items) == 0 && event.properties.cart_id == trigger.properties.cart_id",
    "size(customer.push_tokens) > 0 && customer.consent.push",
    "customer.vip && trigger.properties.total > 100",
    "events.exists(e, e.type == 'product_viewed' && e.properties.sku == 'A')",
    "size(events) == 2",
    "size(trigger.properties) == 3",
    "engagement.opened > 0 && engagement.clicked == 0",
    "trigger.source.startsWith('ap') && has(cart.currency)",
    "cart.items.exists(i, i.sku == 'A') && size(cart.items) == 1",
]


@pytest.mark.parametrize("expression", EXPRESSIONS)
def test_a_condition_reading_part_of_the_context_answers_as_the_whole_context_would(expression: str) -> None:
    assert evaluate(expression, CONTEXT) == cel.compile(expression).execute(CONTEXT)


def test_a_list_that_is_only_counted_reaches_cel_as_a_stand_in_of_the_same_size() -> None:
    condition = compile_condition("size(trigger.properties.items) > 1")
    assert condition.plans == {"trigger": {"properties": {"items": "size"}}}
    read = compile_condition("size(trigger.properties.items) > 1 && trigger.properties.items[0].sku == 'A'")
    assert read.plans == {"trigger": {"properties": {"items": "whole"}}}


def test_unknown_names_and_fields_are_errors() -> None:
    with pytest.raises(ConditionError, match="unknown name 'custmer'"):
        compile_condition("custmer.vip")
    with pytest.raises(ConditionError, match="did you mean 'clicked'"):
        compile_condition("engagement.clickd > 0")
