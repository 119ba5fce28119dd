"""Event timelines for the flagship journey, shared by the agreement and branch tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from omnicart.events import Event
from omnicart.simulate import timeline_event

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


@dataclass
class Timeline:
    """A named list of events for one or more customers, relative to a start time."""

    name: str
    steps: list[tuple[timedelta, str, str, dict[str, Any]]] = field(default_factory=list)
    expect: list[tuple[timedelta, str]] = field(default_factory=list)

    def events(self, start: datetime, customer_id: str) -> list[Event]:
        events = []
        for index, (offset, event_type, source, properties) in enumerate(self.steps):
            events.append(
                timeline_event(
                    {
                        "id": f"{customer_id}-{self.name}-{index}",
                        "type": event_type,
                        "customer_id": customer_id,
                        "timestamp": (start + offset).isoformat(),
                        "source": source,
                        "properties": properties,
                    }
                )
            )
        return events


def aligned_start(now: datetime) -> datetime:
    """15:00 UTC (10:00 in New York, midnight in Tokyo) two days after ``now``: quiet hours are exact."""
    midnight = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return midnight + timedelta(days=2, hours=15)


def describe(line: dict[str, Any]) -> str:
    """A journal or simulate line as a reader would say it: 'send email cart_reminder_1'."""
    parts = [line["action"]]
    if line["action"] == "convert":  # "convert 79.5 USD via sms": the value, then the message credited
        return " ".join([*parts, *(str(line[key]) for key in ("value", "currency") if key in line),
                         *([f"via {line['channel']}"] if "channel" in line else [])])
    parts += [str(line[key]) for key in ("channel", "template", "reason", "value") if key in line]
    if "until" in line:  # a hold: how long until the message goes out
        held = datetime.fromisoformat(line["until"].replace("Z", "+00:00")) - datetime.fromisoformat(
            line["at"].replace("Z", "+00:00"))
        parts.append(f"for {held.total_seconds() / 3600:g}h")
    return " ".join(parts)


def profile(sms: bool = True, phone: bool = True, timezone: str = "America/New_York") -> dict[str, Any]:
    props: dict[str, Any] = {
        "email": "ada@example.com",
        "first_name": "Ada",
        "timezone": timezone,
        "consent": {"email": True, "sms": sms, "push": False},
    }
    if phone:
        props["phone"] = "+14155550100"
    return props


def cart(cart_id: str = "cart_1", empty: bool = False) -> dict[str, Any]:
    items = [] if empty else [
        {"sku": "SKU-1", "name": "Linen shirt", "quantity": 1, "price": 49.5,
         "image_url": "https://shop.example/i/1.jpg", "url": "https://shop.example/p/1"},
        {"sku": "SKU-2", "name": "Canvas tote", "quantity": 2, "price": 15.0,
         "image_url": "https://shop.example/i/2.jpg", "url": "https://shop.example/p/2"},
    ]
    return {"cart_id": cart_id, "items": items, "total": 0.0 if empty else 79.5, "currency": "USD",
            "restore_url": f"https://shop.example/cart/{cart_id}/restore"}


def order(total: float = 79.5, store: bool = False) -> dict[str, Any]:
    props: dict[str, Any] = {"order_id": "order_1", "cart_id": None if store else "cart_1", "total": total,
                             "currency": "USD", "items": []}
    if store:
        props["store_id"] = "store_7"
    return {k: v for k, v in props.items() if v is not None}


def flagship_timelines() -> list[Timeline]:
    """Every branch of the flagship: each send path, each exit, conversion inside and outside the run.

    ``expect`` is the journey read aloud: what a marketer would expect the journey to do, and when.
    """
    zero = timedelta(0)
    before = -DAY
    first = (HOUR, "send email cart_reminder_1")
    last = [(72 * HOUR, "send email cart_last_chance"), (72 * HOUR, "exit completed")]
    return [
        Timeline("all_reminders_then_late_order", [
            (before, "customer_updated", "api", profile()),
            (zero, "checkout_started", "web", cart()),
            (5 * DAY, "order_placed", "web", order()),
        ], [(zero, "enter"), first, (24 * HOUR, "send sms cart_reminder_sms"), *last,
            (5 * DAY, "convert 79.5 USD via email")]),
        Timeline("no_sms_consent_email_instead", [
            (before, "customer_updated", "api", profile(sms=False)),
            (zero, "checkout_started", "web", cart()),
        ], [(zero, "enter"), first, (24 * HOUR, "skip sms cart_reminder_sms no_sms_consent"),
            (24 * HOUR, "send email cart_reminder_2"), *last]),
        Timeline("no_phone_email_instead", [
            (before, "customer_updated", "api", profile(phone=False)),
            (zero, "checkout_started", "app", cart()),
        ], [(zero, "enter"), first, (24 * HOUR, "skip sms cart_reminder_sms no_sms_address"),
            (24 * HOUR, "send email cart_reminder_2"), *last]),
        Timeline("clicked_first_reminder_skips_second", [
            (before, "customer_updated", "api", profile()),
            (zero, "checkout_started", "web", cart()),
            (3 * HOUR, "message_clicked", "email", {"channel": "email", "message_id": "from-an-old-email",
                                                    "journey": "abandoned_cart"}),
        ], [(zero, "enter"), first, (24 * HOUR, "skip sms cart_reminder_sms clicked_earlier_reminder"), *last]),
        Timeline("clicked_the_first_reminder_named_by_its_step", [
            (before, "customer_updated", "api", profile()),
            (zero, "checkout_started", "web", cart()),
            (2 * HOUR, "message_clicked", "email", {"step": "first_reminder"}),
        ], [(zero, "enter"), first, (24 * HOUR, "skip sms cart_reminder_sms clicked_earlier_reminder"), *last]),
        Timeline("order_after_first_reminder", [
            (before, "customer_updated", "api", profile()),
            (zero, "checkout_started", "web", cart()),
            (2 * HOUR, "order_placed", "web", order()),
        ], [(zero, "enter"), first, (2 * HOUR, "convert 79.5 USD via email"), (2 * HOUR, "exit order_placed")]),
        Timeline("store_purchase_while_waiting", [
            (before, "customer_updated", "api", profile()),
            (zero, "checkout_started", "app", cart()),
            (30 * HOUR, "order_placed", "store", order(total=120.0, store=True)),
        ], [(zero, "enter"), first, (24 * HOUR, "send sms cart_reminder_sms"), (30 * HOUR, "convert 120.0 USD via sms"),
            (30 * HOUR, "exit order_placed")]),
        Timeline("cart_emptied", [
            (before, "customer_updated", "api", profile()),
            (zero, "checkout_started", "web", cart()),
            (10 * HOUR, "cart_updated", "web", cart(empty=True)),
        ], [(zero, "enter"), first, (10 * HOUR, "exit cart_emptied")]),
        Timeline("sms_stop_before_second_touch", [
            (before, "customer_updated", "api", profile()),
            (zero, "checkout_started", "web", cart()),
            (12 * HOUR, "consent_changed", "sms", {"channel": "sms", "granted": False}),
        ], [(zero, "enter"), first, (24 * HOUR, "skip sms cart_reminder_sms no_sms_consent"),
            (24 * HOUR, "send email cart_reminder_2"), *last]),
        Timeline("no_consent_at_all", [
            (before, "customer_updated", "api", {**profile(), "consent": {"email": False, "sms": False}}),
            (zero, "checkout_started", "web", cart()),
        ], [(zero, "enter"), (HOUR, "skip email cart_reminder_1 no_email_consent"),
            (24 * HOUR, "skip sms cart_reminder_sms no_sms_consent"),
            (24 * HOUR, "skip email cart_reminder_2 no_email_consent"),
            (72 * HOUR, "skip email cart_last_chance no_email_consent"), (72 * HOUR, "exit completed")]),
        Timeline("sms_held_for_quiet_hours_in_tokyo", [
            (before, "customer_updated", "api", profile(timezone="Asia/Tokyo")),
            (zero, "checkout_started", "web", cart()),
        ], [(zero, "enter"), first, (24 * HOUR, "hold sms cart_reminder_sms quiet_hours for 9h"),
            (33 * HOUR, "send sms cart_reminder_sms"), *last]),
    ]


def store_order_without_items() -> Timeline:
    """The issue's trap: a thank-you that loops over the order's items, for a store order with none."""
    return Timeline("store_order_without_items", [
        (-DAY, "customer_updated", "api", profile()),
        (timedelta(0), "order_placed", "store",
         {k: v for k, v in order(total=20.0, store=True).items() if k != "items"}),
    ], [(timedelta(0), "enter"), (timedelta(0), "send email thanks"), (timedelta(0), "exit completed"),
        (timedelta(0), "skip email thanks email_failed"), (timedelta(0), "send sms thanks_sms")])


def viewed() -> dict[str, Any]:
    return {"sku": "SKU-9", "name": "Wool scarf", "price": 35.0, "url": "https://shop.example/p/9",
            "image_url": "https://shop.example/i/9.jpg"}


def browse_timelines() -> list[Timeline]:
    """Every branch of the browse-abandonment journey: its wait_for outcomes and its channel branch."""
    zero = timedelta(0)
    with_push = {**profile(), "consent": {"email": True, "sms": True, "push": True}, "push_tokens": ["tok-1"]}
    return [
        Timeline("push_nudge_when_the_app_can_reach_them", [
            (-DAY, "customer_updated", "api", with_push),
            (zero, "product_viewed", "app", viewed()),
        ], [(zero, "enter"), (2 * HOUR, "send push browse_push"), (2 * HOUR, "exit completed")]),
        Timeline("email_nudge_without_push", [
            (-DAY, "customer_updated", "api", profile()),
            (zero, "product_viewed", "web", viewed()),
            (DAY, "order_placed", "web", order(total=35.0)),
        ], [(zero, "enter"), (2 * HOUR, "send email browse_email"), (2 * HOUR, "exit completed"),
            (DAY, "convert 35.0 USD via email")]),
        Timeline("added_to_cart_in_time", [
            (-DAY, "customer_updated", "api", profile()),
            (zero, "product_viewed", "web", viewed()),
            (30 * timedelta(minutes=1), "cart_updated", "web", cart()),
        ], [(zero, "enter"), (30 * timedelta(minutes=1), "exit added_to_cart")]),
        Timeline("empty_cart_update_does_not_count", [
            (-DAY, "customer_updated", "api", profile()),
            (zero, "product_viewed", "web", viewed()),
            (HOUR, "cart_updated", "web", cart(empty=True)),
        ], [(zero, "enter"), (2 * HOUR, "send email browse_email"), (2 * HOUR, "exit completed")]),
        Timeline("checkout_hands_over_to_the_cart_journey", [
            (-DAY, "customer_updated", "api", profile()),
            (zero, "product_viewed", "web", viewed()),
            (HOUR, "checkout_started", "web", cart()),
        ], [(zero, "enter"), (HOUR, "exit checkout_started")]),
    ]
