"""What conditions and templates see: the customer, the cart, the trigger, and the run so far.

Conditions and templates are written by marketers against these names, so they are built in one
place and always carry every key (unknown values are null), never a half-filled dict that would make
a condition fail on one customer and not another.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from omnicart.engine.state import CustomerState, Profile
from omnicart.events import CHANNELS
from omnicart.journey.conditions import ENGAGEMENT_KINDS, LazyScope

if TYPE_CHECKING:
    from omnicart.engine.state import RunState

CART_EVENT_TYPES = ("cart_updated", "checkout_started")


def address(profile: Profile, channel: str) -> list[str]:
    """Where a channel can reach the customer; empty when unknown or known to be undeliverable."""
    if channel == "push":
        return list(profile.push_tokens)
    value = profile.email if channel == "email" else profile.phone if channel in ("sms", "whatsapp") else None
    if not value or profile.undeliverable.get(channel) == value:
        return []
    return [value]


def customer(state: CustomerState) -> dict[str, Any]:
    profile = state.profile
    return {
        **profile.attributes,
        "id": state.customer_id,
        "email": profile.email,
        "phone": profile.phone,
        "first_name": profile.first_name,
        "locale": profile.locale,
        "timezone": profile.timezone,
        "consent": {channel: profile.consent.get(channel) is True for channel in CHANNELS},
        "push_tokens": list(profile.push_tokens),
    }


def cart(state: CustomerState, trigger: dict[str, Any]) -> dict[str, Any]:
    """The run's cart as it is now (the latest cart event for its id), else as the trigger saw it."""
    props = trigger.get("properties", {})
    cart_id = props.get("cart_id")
    latest = state.carts.get(str(cart_id)) if cart_id is not None else None
    source = latest if latest is not None else props
    shaped = {key: value for key, value in source.items() if not key.startswith("_")}
    shaped.setdefault("items", [])
    for name in ("cart_id", "total", "currency", "restore_url"):
        shaped.setdefault(name, None)
    return shaped


def engagement(run: RunState | None) -> dict[str, int]:
    counts = run.engagement if run is not None else {}
    return {kind: counts.get(kind, 0) for kind in ENGAGEMENT_KINDS}


def conditions(
    state: CustomerState,
    trigger: dict[str, Any],
    event: dict[str, Any] | None,
    run: RunState | None,
) -> LazyScope:
    """The variables a CEL condition may use (see ``omnicart.journey.conditions.VARIABLES``)."""
    return LazyScope(
        {
            "customer": lambda: customer(state),
            "trigger": lambda: trigger,
            "event": lambda: event if event is not None else {},
            "events": lambda: list(run.events) if run is not None else [],
            "engagement": lambda: engagement(run),
            "cart": lambda: cart(state, trigger),
            "catalog": lambda: state.catalog,
        }
    )


def message(
    state: CustomerState, trigger: dict[str, Any], journey: str, run_id: str, step_id: str
) -> dict[str, Any]:
    """What a template renders with (the send activity adds message, discount, unsubscribe_url)."""
    return {
        "customer": customer(state),
        "cart": cart(state, trigger),
        "trigger": trigger,
        "journey": {"name": journey, "run_id": run_id, "step_id": step_id},
    }
