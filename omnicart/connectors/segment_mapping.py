"""The Segment mapping file: which ``track`` events and ``page`` calls become which omnicart events.

Read once per process from ``OMNICART_SEGMENT_MAPPING_FILE`` or the built-in
``segment_mapping.yaml`` (the e-commerce spec's ``Checkout Started``, ``Cart Viewed``,
``Order Completed`` and ``Product Viewed``, and ``page`` → ``page_viewed``). The file is checked
with pydantic when read, so a typo fails at start-up, not on the first event.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from ruamel.yaml import YAML

from omnicart.connectors.core import Unmappable, money

BUILT_IN = Path(__file__).with_name("segment_mapping.yaml")
ITEMS = "items"
PRODUCTS = "products"


class TrackMapping(BaseModel):
    model_config = ConfigDict(extra="forbid")

    event: str = Field(pattern=r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")
    properties: dict[str, list[str]] = Field(default_factory=dict)


class SegmentMapping(BaseModel):
    model_config = ConfigDict(extra="forbid")

    track: dict[str, TrackMapping] = Field(default_factory=dict)
    page: str | None = None

    def track_event(self, name: str, properties: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """The omnicart type and properties of a ``track`` call named ``name``, or :class:`Unmappable`."""
        mapping = self.track.get(name)
        if mapping is None:
            raise Unmappable(f"track event {name!r} is not in the Segment mapping")
        mapped: dict[str, Any] = {}
        for target, sources in mapping.properties.items():
            source = next((key for key in sources if properties.get(key) not in (None, "")), None)
            if source is None:
                continue
            value = properties[source]
            mapped[target] = _items(value) if target == ITEMS and source == PRODUCTS else value
        return mapping.event, mapped


@lru_cache(maxsize=4)
def load_mapping(path: Path | None = None) -> SegmentMapping:
    """The mapping in ``path`` (the built-in one when None), validated."""
    data = YAML(typ="safe").load((path or BUILT_IN).read_text(encoding="utf-8"))
    return SegmentMapping.model_validate(data or {})


def _items(products: Any) -> list[dict[str, Any]]:
    """Segment's ``products`` (e-commerce spec) as omnicart cart items."""
    if not isinstance(products, list):
        raise Unmappable("products is not a list")
    items = []
    for product in products:
        if not isinstance(product, dict):
            raise Unmappable("a product is not an object")
        sku = product.get("sku") or product.get("product_id")
        if not isinstance(sku, str | int) or isinstance(sku, bool) or sku == "":
            raise Unmappable("a product has neither sku nor product_id")
        item = {
            "sku": str(sku),
            "name": product.get("name"),
            "quantity": product.get("quantity", 1),
            "price": money(product.get("price"), "products[].price"),
            "url": product.get("url"),
            "image_url": product.get("image_url"),
        }
        items.append({key: value for key, value in item.items() if value is not None})
    return items
