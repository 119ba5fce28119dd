"""A seeded demo for the console: customers, a month of their events, and everything the product
would have stored about them, made by the product's own code (the journeys as published, the
interpreter through ``simulate``, the analytics rows it records, the projection, the event log).

The screenshots (``scripts/screenshots``), the page-load benchmark and the browser tests all start
from it, so the pictures in the README are of the same numbers the tests check.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine

from omnicart.analytics.preview import preview_rows
from omnicart.analytics.rows import JourneyActionRow
from omnicart.analytics.store import record_actions, record_outcomes
from omnicart.api.event_log import EventLog
from omnicart.consent.history import ConsentHistory
from omnicart.customers.projection import ProfileProjection
from omnicart.events import Event
from omnicart.journey.loader import load_directory
from omnicart.journey.registry import JourneyRegistry
from omnicart.ledger import LedgerStatus, message_ledger
from omnicart.settings import Settings
from omnicart.simulate import timeline_event
from omnicart.storage import get_engine, upgrade

DEMO_AUTHOR = "demo"
PRODUCTS = [("SHIRT-L", "Linen shirt", 49.5), ("TOTE", "Canvas tote", 18.0), ("MUG", "Stoneware mug", 12.0),
            ("SCARF", "Wool scarf", 35.0)]
ZONES = ["Europe/London", "America/New_York", "Asia/Tokyo", "Europe/Paris"]


@dataclass(frozen=True)
class Demo:
    """What was seeded: the events, and the window their journeys entered in."""

    events: list[Event]
    since: datetime
    until: datetime


def demo_events(customers: int, start: datetime, days: int = 30, seed: int = 12) -> list[Event]:
    """A month of a shop: each customer signs up, most browse, many start a checkout, some buy
    (some after opening or clicking the first reminder, which the timeline names by its step); some
    last ordered two months ago, so the win-back journey starts for them during the month."""
    pick = random.Random(seed)
    events: list[Event] = []
    for number in range(customers):
        events.extend(_customer_events(pick, f"cus_{number:05d}", start, days))
    return sorted(events, key=lambda event: event.timestamp)


def _customer_events(pick: random.Random, customer: str, start: datetime, days: int) -> Iterator[Event]:
    serial = iter(range(1, 100))

    def event(kind: str, at: datetime, source: str = "web", **properties: Any) -> Event:
        return timeline_event({"id": f"{customer}_{next(serial)}", "type": kind, "customer_id": customer,
                            "timestamp": at.isoformat(), "source": source, "properties": properties})

    joined = start + timedelta(minutes=pick.randrange(days * 24 * 60 // 2))
    if pick.random() < 0.3:  # an earlier customer whose last order was two months ago: win_back's audience
        before = start - timedelta(days=60) + timedelta(minutes=pick.randrange(days * 24 * 60))
        sku, name, price = pick.choice(PRODUCTS)
        yield event("order_placed", before, "web", order_id=f"old_{customer}", total=price, currency="GBP",
                    items=[{"sku": sku, "name": name, "quantity": 1, "price": price}])
    yield event("customer_updated", joined, "api", email=f"{customer}@example.com", first_name=customer.title(),
                timezone=pick.choice(ZONES), consent={"email": True, "sms": pick.random() < 0.5, "push": False},
                consent_source="form",
                consent_evidence={"url": "https://shop.example/join", "double_opt_in": "confirmed"})
    seen = joined + timedelta(hours=pick.randrange(1, 72))
    sku, name, price = pick.choice(PRODUCTS)
    if pick.random() < 0.5:
        yield event("product_viewed", seen, sku=sku)
    if pick.random() < 0.7:
        checkout = seen + timedelta(minutes=pick.randrange(5, 600))
        quantity = pick.randrange(1, 4)
        yield event("checkout_started", checkout, cart_id=f"cart_{customer}", currency="GBP",
                    total=round(price * quantity, 2),
                    items=[{"sku": sku, "name": name, "quantity": quantity, "price": price}])
        engaged = pick.random()
        if engaged < 0.4:
            yield event("message_opened", checkout + timedelta(hours=2), "email", channel="email",
                        step="first_reminder")
        if engaged < 0.15:
            yield event("message_clicked", checkout + timedelta(hours=2, minutes=5), "email", channel="email",
                        step="first_reminder")
        if engaged < 0.25:
            ordered = checkout + timedelta(hours=pick.randrange(3, 100))
            yield event("order_placed", ordered, pick.choice(["web", "store"]),
                        order_id=f"ord_{customer}", total=round(price * quantity, 2), currency="GBP",
                        items=[{"sku": sku, "name": name, "quantity": quantity, "price": price}])


def seed_demo(settings: Settings, customers: int = 200, days: int = 30, now: datetime | None = None) -> Demo:
    """Migrate the database and fill it with a demo of ``customers`` over the ``days`` before ``now``."""
    url = settings.database()
    upgrade(url)
    engine = get_engine(url)
    loaded = load_directory(settings.journeys_dir)
    JourneyRegistry(engine).publish(loaded.bundles.values(), DEMO_AUTHOR)
    until = (now or datetime.now(UTC)).replace(microsecond=0)
    since = until - timedelta(days=days)
    events = demo_events(customers, since, days)
    actions, outcomes = preview_rows(list(loaded.bundles.values()), events)
    record_actions(engine, actions, settings.signing_secret)
    record_outcomes(engine, outcomes)
    log = EventLog(engine)
    projection = ProfileProjection(engine, settings.signing_secret)
    consent = ConsentHistory(engine, settings.signing_secret)  # the customer page shows where consent came from
    for batch in _batches(events, 1000):
        log.record(batch)
        log.mark_forwarded([event.id for event in batch])
        projection.record(batch)
        consent.record(batch)
    _ledger(engine, actions)
    return Demo(events, since, until)


def _ledger(engine: Engine, actions: list[JourneyActionRow]) -> None:
    """The ledger rows the sends would have left once the outbox sent them, at the time of the send
    (written in one statement: claiming each one by one would make a 10,000-customer demo take minutes)."""
    rows = [
        {"message_id": row.message_id, "customer_id": row.customer_id, "journey": row.journey,
         "run_id": row.run_id or "", "step_id": row.step or "", "channel": row.channel or "email",
         "template": row.template or "", "provider": "outbox", "status": LedgerStatus.SENT, "attempts": 1,
         "created_at": row.at, "updated_at": row.at, "claimed_at": row.at, "sent_at": row.at}
        for row in actions
        if row.action == "send" and row.message_id is not None
    ]
    if rows:
        with engine.begin() as connection:
            connection.execute(message_ledger.insert(), rows)


def _batches(events: list[Event], size: int) -> Iterator[list[Event]]:
    for start in range(0, len(events), size):
        yield events[start : start + size]


def main() -> None:  # pragma: no cover - a convenience for people, the tests call seed_demo
    """``python -m omnicart.console.demo [customers]``: seed the configured database."""
    import sys

    from omnicart.settings import get_settings

    demo = seed_demo(get_settings(), int(sys.argv[1]) if len(sys.argv) > 1 else 200)
    print(f"seeded {len(demo.events)} events from {demo.since:%Y-%m-%d} to {demo.until:%Y-%m-%d}")


if __name__ == "__main__":
    main()

