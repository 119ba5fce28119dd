"""What applying catalog events can start: a restock, an honest price drop.

The apply step (``omnicart.catalog.apply``) returns these and logs them; the fan-out that tells the
interested customers starts from them. Each names the event that caused it, so a fan-out keyed by
that id runs once per change even if the event is applied again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class Restock:
    """A location's stock of a sku went from none to some."""

    sku: str
    location: str
    quantity: int = field(metadata={"doc": "Units at that location now."})
    total: int = field(metadata={"doc": "Units in stock across every location now."})
    back_everywhere: bool = field(metadata={"doc": "The sku had none in stock anywhere before."})
    at: datetime
    event_id: str


@dataclass(frozen=True)
class PriceDrop:
    """A sku's new price is below the lowest of the 30 days before it (an honest reduction)."""

    sku: str
    price: float
    reference_price: float = field(metadata={"doc": "The lowest of the 30 days before: what to quote as 'was'."})
    currency: str | None
    at: datetime
    event_id: str


@dataclass
class CatalogChanges:
    """What one batch of catalog and store events changed that journeys may act on."""

    restocks: list[Restock] = field(default_factory=list)
    price_drops: list[PriceDrop] = field(default_factory=list)
    applied: int = 0
