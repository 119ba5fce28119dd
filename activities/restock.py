"""The fan-out's activities: a sku's units in stock now, and one page of interested customers told.

Workflow code cannot read the database or signal-with-start, so these do both. A page reads at most
``limit`` interested customers from the cursor (strongest interest first,
``omnicart.catalog.interest.interested_strongest_first``: memory bounded by the page size), builds
each one's ``back_in_stock`` or ``price_dropped`` event with an id derived from (change, customer),
records them in ingest's event log first and delivers each with ``omnicart.routing.deliver``, with
the published journeys that type triggers attached, at most ``fanout_concurrency`` signals at once.
So a retried activity or a replayed page forwards each customer's event once: never two messages
for one change.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Engine
from temporalio import activity
from temporalio.client import Client

from omnicart.api.event_log import EventLog
from omnicart.catalog.interest import Interested, interested_strongest_first
from omnicart.catalog.products import Product, product_of
from omnicart.catalog.stock import stock_of
from omnicart.events import Event
from omnicart.fanout import DELIVER_ACTIVITY, STOCK_ACTIVITY, FanoutChange, FanoutPage, FanoutPageResult
from omnicart.journey.catalog import triggered_by
from omnicart.journey.model import JourneyBundle
from omnicart.routing import deliver
from omnicart.settings import Settings


def units_in_stock(levels: Mapping[str, int]) -> int:
    """Units across every location; an oversold location (below zero) counts as none."""
    return sum(max(quantity, 0) for quantity in levels.values())


def change_event_id(change: FanoutChange, customer_ref: str) -> str:
    """The same id for the same (change, customer), however often a page is retried."""
    digest = hashlib.sha256("\x1f".join((change.kind, change.change_id, customer_ref)).encode())
    return f"{change.event_type}_{digest.hexdigest()[:32]}"


def change_event(change: FanoutChange, customer: Interested, product: Product | None, units: int,
                 at: datetime) -> Event:
    """The event that tells ``customer`` about ``change``: what its journey's templates print."""
    properties: dict[str, Any] = {"sku": change.sku}
    if product is not None:
        properties.update(name=product.name, url=product.url, image_url=product.image_url)
    if change.kind == "restock":
        price, currency = (product.price, product.currency) if product is not None else (None, None)
        properties.update(price=price, currency=currency, location=change.location, quantity=units)
    else:
        reference = change.reference_price or 0.0
        price = change.price or 0.0
        drop = round(100 * (reference - price) / reference, 1) if reference > 0 else 0.0
        properties.update(price=price, reference_price=reference, drop_percent=drop, currency=change.currency)
    return Event(
        id=change_event_id(change, customer.customer_ref),
        type=change.event_type,
        customer_id=customer.customer_id,
        timestamp=at,
        source="api",
        properties={name: value for name, value in properties.items() if value is not None},
    )


class FanoutActivities:
    """Bound to the product database, the published journeys and a Temporal client (to signal)."""

    def __init__(
        self,
        engine: Engine,
        client: Client,
        settings: Settings,
        published: Callable[[], Mapping[str, JourneyBundle]],
        *,
        by_reference: bool = True,
    ) -> None:
        self.engine = engine
        self.events = EventLog(engine)
        self.client = client
        self.settings = settings
        self.published = published
        self.by_reference = by_reference

    @activity.defn(name=STOCK_ACTIVITY)
    async def fanout_stock_units(self, sku: str) -> int:
        """Units of ``sku`` in stock now, every location counted: a wave's budget is K per unit."""
        return units_in_stock(await asyncio.to_thread(stock_of, self.engine, sku))

    @activity.defn(name=DELIVER_ACTIVITY)
    async def deliver_fanout_page(self, page: FanoutPage) -> FanoutPageResult:
        """Tell one page of interested customers about the change; say where the next page starts."""
        change = page.change
        found = await asyncio.to_thread(
            interested_strongest_first, self.engine, change.sku, page.cursor, page.limit, page.at)
        if not found.customers:
            return FanoutPageResult(told=0, delivered=0, next_cursor=found.next_cursor)
        product = await asyncio.to_thread(product_of, self.engine, change.sku)
        units = units_in_stock(await asyncio.to_thread(stock_of, self.engine, change.sku)) \
            if change.kind == "restock" else 0
        events = [change_event(change, customer, product, units, page.at) for customer in found.customers]
        recorded = await asyncio.to_thread(self.events.record, events)
        journeys = triggered_by(self.published().values(), change.event_type)
        limit = asyncio.Semaphore(self.settings.fanout_concurrency)
        delivered: list[str] = []

        async def tell(event: Event) -> None:
            async with limit:
                await deliver(
                    self.client,
                    self.settings.task_queue,
                    event.customer_id,
                    [event],
                    lambda _type: journeys,
                    max_history_events=self.settings.max_history_events,
                    send_timeout_seconds=self.settings.send_timeout_seconds,
                    by_reference=self.by_reference,
                    record_analytics=self.settings.record_analytics,
                )
                delivered.append(event.id)
                activity.heartbeat(len(delivered))

        outcomes = await asyncio.gather(*(tell(event) for event in recorded.to_forward), return_exceptions=True)
        # Whatever got there is marked, so the retry Temporal makes after a failure forwards only the rest.
        await asyncio.to_thread(self.events.mark_forwarded, delivered)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        return FanoutPageResult(told=len(events), delivered=len(delivered), next_cursor=found.next_cursor)
