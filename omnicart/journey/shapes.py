"""What each name a condition or template reads holds, as JSON Schemas drawn from the tracking plan.

The customer profile, the cart and engagement counts are the product's own (``omnicart.engine.
context`` builds them, always with every key); ``trigger``, ``event`` and ``events`` are events, whose
properties are what the plan declares for their type. A field the plan marks optional may be absent
from a real event, so reading it needs a guard.
"""

from __future__ import annotations

import difflib
from typing import Any

from omnicart.events import CHANNELS
from omnicart.journey.conditions import ENGAGEMENT_KINDS
from omnicart.plan import TrackingPlan

Shape = dict[str, Any]
"""A JSON Schema; ``{}`` is "anything"."""

ANY: Shape = {}
NO_EVENT: Shape = {"x-absent": "there is no event here: 'event' exists in trigger, exit_when, goal and wait_for"}

_TEXT = {"type": "string"}
_MAYBE_TEXT = {"type": ["string", "null"]}
_CUSTOMER_FIXED = ("id", "email", "phone", "first_name", "locale", "timezone", "consent", "push_tokens")
_CART_FIXED = ("cart_id", "items", "total", "currency", "restore_url")


def kinds(shape: Shape) -> set[str]:
    """The JSON types a value of this shape may have; empty for "anything"."""
    kind = shape.get("type")
    if kind is None:
        return set()
    return {kind} if isinstance(kind, str) else set(kind)


def field(plan: TrackingPlan, shape: Shape, name: str) -> tuple[Shape, bool] | None:
    """The shape of ``shape.name`` and whether it is always there; None when it cannot exist."""
    if "properties" not in shape:
        return ANY, True  # an open value (an event of any type, a list item of unknown shape)
    properties: dict[str, Any] = shape["properties"]
    if name not in properties:
        return None
    return plan.resolve(properties[name]), name in shape.get("required", ())


def items(plan: TrackingPlan, shape: Shape) -> Shape:
    """The shape of a list's items."""
    inner = shape.get("items")
    return plan.resolve(inner) if isinstance(inner, dict) else ANY


def suggest(name: str, shape: Shape) -> str:
    """" — did you mean 'x'?" or the names there are."""
    names = sorted(shape.get("properties", {}))
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
    if close:
        return f" — did you mean '{close[0]}'?"
    return f": it has {', '.join(names)}" if names else ""


def envelope(plan: TrackingPlan, event_type: str | None) -> Shape:
    """An event as conditions and templates see it; properties from the plan (any type: merged)."""
    spec = plan.get(event_type) if event_type is not None else None
    if spec is not None:
        properties: Shape = {**spec.schema, "x-event": event_type}
    else:
        merged: dict[str, Any] = {}
        for other in plan.events.values():
            merged.update(other.properties)
        # Any type's event: a name no type declares is a typo; which are present depends on the type.
        properties = {"type": "object", "properties": merged, "required": sorted(merged)}
    return {
        "type": "object",
        "properties": {
            "id": _TEXT,
            "type": _TEXT,
            "customer_id": _TEXT,
            "timestamp": _TEXT,
            "source": _TEXT,
            "properties": properties,
        },
        "required": ["id", "type", "customer_id", "timestamp", "source", "properties"],
    }


def customer(plan: TrackingPlan) -> Shape:
    """The profile: fixed fields always there (null when unknown); other learned attributes may not be."""
    spec = plan.get("customer_updated")
    learned = {k: v for k, v in (spec.properties if spec else {}).items() if k not in _CUSTOMER_FIXED}
    consent = {
        "type": "object",
        "properties": {channel: {"type": "boolean"} for channel in CHANNELS},
        "required": list(CHANNELS),
    }
    fixed: dict[str, Any] = {name: _MAYBE_TEXT for name in _CUSTOMER_FIXED}
    fixed.update(id=_TEXT, consent=consent, push_tokens={"type": "array", "items": _TEXT})
    return {"type": "object", "properties": {**learned, **fixed}, "required": list(_CUSTOMER_FIXED)}


def cart(plan: TrackingPlan) -> Shape:
    """The run's cart: its usual fields always there (null when unknown), others only if sent."""
    properties: dict[str, Any] = {}
    for event_type in ("cart_updated", "checkout_started"):
        spec = plan.get(event_type)
        if spec is not None:
            properties.update(spec.properties)
    for name in ("total", "currency", "restore_url", "cart_id"):
        if name in properties:
            base = plan.resolve(properties[name])
            properties[name] = {**base, "type": sorted(kinds(base) | {"null"})}
    return {"type": "object", "properties": properties, "required": list(_CART_FIXED)}


def engagement() -> Shape:
    return {
        "type": "object",
        "properties": {kind: {"type": "integer"} for kind in ENGAGEMENT_KINDS},
        "required": list(ENGAGEMENT_KINDS),
    }


def condition_roots(plan: TrackingPlan, trigger: str, event: str | None) -> dict[str, Shape]:
    """The variables of a condition evaluated where ``event`` (a type, or None: no event) is at hand."""
    return {
        "customer": customer(plan),
        "trigger": envelope(plan, trigger),
        "event": envelope(plan, event) if event is not None else NO_EVENT,
        "events": {"type": "array", "items": envelope(plan, None)},
        "engagement": engagement(),
        "cart": cart(plan),
        "catalog": {"type": "object"},  # by sku: open, its keys are the skus of each cart
    }


def template_roots(plan: TrackingPlan, trigger: str) -> dict[str, Shape]:
    """The variables of a message template of a journey started by ``trigger``."""
    return {
        "customer": customer(plan),
        "cart": cart(plan),
        "trigger": envelope(plan, trigger),
        "journey": _object(name=_TEXT, run_id=_TEXT, step_id=_TEXT),
        "message": _object(id=_TEXT, channel=_TEXT, locale=_TEXT),
        "discount": _object(code=_TEXT, percent={"type": "integer"}),
        "unsubscribe_url": _TEXT,
        # By sku, what the catalog says at send time (omnicart.catalog.availability.catalog_context):
        # open, since its keys are the skus of each message.
        "catalog": {"type": "object"},
    }


def _object(**properties: Shape) -> Shape:
    return {"type": "object", "properties": properties, "required": list(properties)}
