"""The restock and price-drop fan-out: its contract between the outbox, the workflow and the activities.

A restock (a sku back from none) or an honest price drop (``omnicart.catalog.changes``) must reach
every customer interested in that sku, each as an event on their own workflow (``back_in_stock``,
``price_dropped``), so their journeys, caps and consent apply as for any other event. Workflow code
cannot read the interest table nor signal-with-start, so ``CatalogFanoutWorkflow`` works through the
table a page at a time with activities, paced by stock for a restock (at most K customers per unit
in stock per wave), continuing as new to keep its history small.

The models here are what the outbox, the workflow and the activities exchange: pure, so the workflow
sandbox lets them through.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel

FANOUT_WORKFLOW = "CatalogFanoutWorkflow"
STOCK_ACTIVITY = "fanout_stock_units"
DELIVER_ACTIVITY = "deliver_fanout_page"

Kind = Literal["restock", "price_drop"]
BACK_IN_STOCK = "back_in_stock"
PRICE_DROPPED = "price_dropped"
EVENT_TYPE: dict[str, str] = {"restock": BACK_IN_STOCK, "price_drop": PRICE_DROPPED}


class FanoutChange(BaseModel):
    """One catalog change worth telling interested customers about; ``change_id`` is the id of the
    event that caused it, so the same change always has the same fan-out (and workflow id)."""

    kind: Kind
    change_id: str
    sku: str
    at: datetime
    location: str | None = None
    """restock: the location that came back from none (``online`` or a store id)."""
    price: float | None = None
    """price_drop: the new price."""
    reference_price: float | None = None
    """price_drop: the lowest price of the 30 days before, what a message quotes as "was"."""
    currency: str | None = None

    @property
    def event_type(self) -> str:
        """The customer event this change becomes: ``back_in_stock`` or ``price_dropped``."""
        return EVENT_TYPE[self.kind]


def fanout_workflow_id(change: FanoutChange) -> str:
    """``fanout/<kind>/<change id>``: one workflow per change, whoever starts it and how often."""
    return f"fanout/{change.kind}/{change.change_id}"


class FanoutInput(BaseModel):
    """What a run works on; the cursor and counters are carried across continue-as-new."""

    change: FanoutChange
    customers_per_unit: int = 3
    page_size: int = 500
    wave_interval_seconds: float = 900.0
    max_history_events: int = 1000
    """Continue as new past this many history events (or when Temporal suggests it)."""
    cursor: str | None = None
    wave_left: int | None = None
    """Customers the current wave may still tell; None: the next page starts a new wave (restocks)."""
    told: int = 0
    delivered: int = 0
    waves: int = 0
    continued: int = 0


class FanoutPage(BaseModel):
    """One page for the delivery activity: at most ``limit`` customers from ``cursor`` on."""

    change: FanoutChange
    cursor: str | None = None
    limit: int
    at: datetime
    """The workflow's time when it asked: the events' timestamp and the moment interest must outlive."""


class FanoutPageResult(BaseModel):
    told: int
    """Interested customers on this page (each now has the event, from this attempt or an earlier one)."""
    delivered: int
    """Of those, the events forwarded by this attempt (a retried page forwards none twice)."""
    next_cursor: str | None = None


class FanoutResult(BaseModel):
    told: int
    delivered: int
    waves: int
    continued: int
    stopped: Literal["everyone_told", "out_of_stock"]
