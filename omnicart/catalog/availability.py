"""Is what a message advertises still there? One pure decision, shared by the send activity and simulate.

The workflow decides *that* a reminder goes out, hours before it does; it cannot read the catalog.
So the send activity re-reads the stock of the skus a message advertises (its cart's items, the
trigger's ``sku``) just before sending, and :func:`decide` says what a send step's
``if_out_of_stock`` makes of it: keep the message, drop the sold-out items, or skip it.
``omnicart simulate`` asks the same function with the stock of its catalog timeline at that moment.

The same :class:`CatalogSnapshot` gives templates their ``catalog`` variable (:func:`catalog_context`):
stock per location, price, the 30-day lowest price, and the stores that have each sku, preferred
store first when it has stock, else nearest. A sku the catalog has never heard of counts as in
stock, so a shop that sends no catalog events sees no change at all.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from omnicart.catalog.products import Product
from omnicart.catalog.stock import ONLINE, haversine_km
from omnicart.journey.model import OutOfStockPolicy

OUT_OF_STOCK = "out_of_stock"
"""The skip reason a message gets when what it advertises sold out while the journey waited."""

MAX_STORES = 3
"""Stores a template sees per sku: enough for "also at ..." lines, few enough to stay readable."""


@dataclass(frozen=True)
class Store:
    """A store as ``store_updated`` describes it."""

    store_id: str
    name: str | None = None
    address: str | None = None
    latitude: float | None = None
    longitude: float | None = None


@dataclass(frozen=True)
class CatalogSnapshot:
    """What the catalog says of some skus at one moment: products, stock per location, the lowest
    price of the 30 days before, and the stores those skus are stocked in."""

    products: dict[str, Product] = field(default_factory=dict)
    levels: dict[str, dict[str, int]] = field(default_factory=dict)
    lowest: dict[str, float] = field(default_factory=dict)
    stores: dict[str, Store] = field(default_factory=dict)

    def total(self, sku: str) -> int | None:
        """Units in stock across every location; None when the catalog has no stock of it at all."""
        levels = self.levels.get(sku)
        if not levels:
            return None
        return sum(max(quantity, 0) for quantity in levels.values())

    def in_stock(self, sku: str) -> bool:
        """At least one unit somewhere, or a sku whose stock the catalog has never heard of."""
        total = self.total(sku)
        return total is None or total > 0


@dataclass(frozen=True)
class Decision:
    """What goes out: ``skip`` the message, or send it with ``items`` (None: the cart unchanged)."""

    skip: bool
    sold_out: list[str]
    items: list[dict[str, Any]] | None = None


def advertised_skus(context: Mapping[str, Any]) -> list[str]:
    """The skus a message's context advertises: its cart's items, then the trigger's ``sku``."""
    skus: list[str] = []
    for item in _cart_items(context):
        sku = item.get("sku")
        if isinstance(sku, str) and sku not in skus:
            skus.append(sku)
    sku = _trigger_sku(context)
    if sku is not None and sku not in skus:
        skus.append(sku)
    return skus


def decide(policy: OutOfStockPolicy, context: Mapping[str, Any], snapshot: CatalogSnapshot) -> Decision:
    """Keep, trim or skip a message by the stock of what it advertises.

    ``skip``: any advertised sku sold out skips it. ``drop_items``: sold-out cart items leave the
    message; it is skipped when none is left, or when its trigger's own product sold out (a
    browse reminder about one shoe). ``send``: it goes out as it is.
    """
    sold_out = [sku for sku in advertised_skus(context) if not snapshot.in_stock(sku)]
    if not sold_out or policy == "send":
        return Decision(skip=False, sold_out=sold_out)
    if policy == "skip":
        return Decision(skip=True, sold_out=sold_out)
    items = _cart_items(context)
    kept = [item for item in items if item.get("sku") not in sold_out]
    if (items and not kept) or _trigger_sku(context) in sold_out:
        return Decision(skip=True, sold_out=sold_out)
    return Decision(skip=False, sold_out=sold_out, items=kept if len(kept) < len(items) else None)


def trimmed(context: dict[str, Any], decision: Decision) -> dict[str, Any]:
    """The context with the sold-out items gone from its cart, and the total made theirs again
    (None when an item has no price to add up)."""
    if decision.items is None:
        return context
    cart = dict(context.get("cart") or {})
    cart["items"] = decision.items
    amounts = [_amount(item.get("price"), item.get("quantity", 1)) for item in decision.items]
    cart["total"] = None if None in amounts else round(sum(amount or 0.0 for amount in amounts), 2)
    return {**context, "cart": cart}


def at_send(
    policy: OutOfStockPolicy, context: dict[str, Any], snapshot: CatalogSnapshot, *, pickup_url: str | None = None
) -> dict[str, Any] | None:
    """A message's context as it goes out: None to skip it, else sold-out items dropped (per
    ``policy``) and ``catalog`` added for the skus it still advertises. The send activity and
    ``omnicart simulate`` both call this, with the database's or the timeline's snapshot."""
    if not snapshot.levels and not snapshot.products:  # the catalog knows none of them: all in stock
        return {**context, "catalog": {sku: _unknown(sku) for sku in advertised_skus(context)}}
    decision = decide(policy, context, snapshot)
    if decision.skip:
        return None
    sent = dict(trimmed(context, decision))
    sent["catalog"] = catalog_context(snapshot, advertised_skus(sent), customer=sent.get("customer"),
                                      pickup_url=pickup_url)
    return sent


def catalog_context(
    snapshot: CatalogSnapshot,
    skus: list[str],
    *,
    customer: Mapping[str, Any] | None = None,
    pickup_url: str | None = None,
) -> dict[str, dict[str, Any]]:
    """The ``catalog`` variable of a template: for each sku, what the catalog says of it now.

    ``catalog[sku]`` has ``known``, ``name``, ``url``, ``image_url``, ``price``, ``currency``,
    ``lowest_price_30d``, ``in_stock``, ``stock`` (``total``, ``online``, ``stores``: units by
    store id), ``stores`` (those with stock: ``store_id``, ``name``, ``address``, ``distance_km``,
    ``quantity``, ``pickup_url``; the customer's preferred store first when it has stock, then
    nearest to the customer's ``latitude``/``longitude``, else most units) and ``pickup``, the first
    of them (nil when no store has it). ``pickup_url`` is a pattern with ``{sku}`` and
    ``{store_id}``; without it, a store's link is the product's page.
    """
    profile = customer or {}
    preferred = profile.get("preferred_store_id")
    near = _point(profile.get("latitude"), profile.get("longitude"))
    found: dict[str, dict[str, Any]] = {}
    for sku in skus:
        product = snapshot.products.get(sku)
        levels = snapshot.levels.get(sku, {})
        by_store = {location: qty for location, qty in sorted(levels.items()) if location != ONLINE}
        stores = [
            _store_line(sku, snapshot.stores.get(store_id, Store(store_id)), quantity, near, product, pickup_url)
            for store_id, quantity in by_store.items()
            if quantity > 0
        ]
        stores.sort(key=lambda store: _store_rank(store, preferred, near))
        total = snapshot.total(sku)
        found[sku] = {
            "sku": sku,
            "known": product is not None or bool(levels),
            "name": product.name if product else None,
            "url": product.url if product else None,
            "image_url": product.image_url if product else None,
            "price": product.price if product else None,
            "currency": product.currency if product else None,
            "lowest_price_30d": snapshot.lowest.get(sku),
            "in_stock": snapshot.in_stock(sku),
            "stock": {"total": total, "online": levels.get(ONLINE), "stores": by_store},
            "stores": stores[:MAX_STORES],
            "pickup": stores[0] if stores else None,
        }
    return found


def _unknown(sku: str) -> dict[str, Any]:
    """``catalog[sku]`` of a sku no catalog event named (what :func:`catalog_context` says of it)."""
    return {
        "sku": sku, "known": False, "name": None, "url": None, "image_url": None, "price": None,
        "currency": None, "lowest_price_30d": None, "in_stock": True,
        "stock": {"total": None, "online": None, "stores": {}}, "stores": [], "pickup": None,
    }


def _store_line(
    sku: str,
    store: Store,
    quantity: int,
    near: tuple[float, float] | None,
    product: Product | None,
    pickup_url: str | None,
) -> dict[str, Any]:
    distance = None
    if near is not None and store.latitude is not None and store.longitude is not None:
        distance = round(haversine_km(near, (store.latitude, store.longitude)), 1)
    if pickup_url:
        link: str | None = pickup_url.replace("{sku}", sku).replace("{store_id}", store.store_id)
    else:
        link = product.url if product is not None else None
    return {
        "store_id": store.store_id,
        "name": store.name or store.store_id,
        "address": store.address,
        "distance_km": distance,
        "quantity": quantity,
        "pickup_url": link,
    }


def _store_rank(store: dict[str, Any], preferred: Any, near: tuple[float, float] | None) -> tuple[Any, ...]:
    """Preferred store first; then nearest (stores without coordinates after), else most units."""
    first = 0 if preferred is not None and store["store_id"] == preferred else 1
    if near is not None:
        distance = store["distance_km"]
        return (first, distance is None, distance or 0.0, store["store_id"])
    return (first, -store["quantity"], store["store_id"])


def _amount(price: Any, quantity: Any) -> float | None:
    """An item's price times its quantity; None when either is not a number (a price as text)."""
    numbers = (int, float)
    if isinstance(price, numbers) and isinstance(quantity, numbers):
        return float(price) * float(quantity)
    return None


def _point(latitude: Any, longitude: Any) -> tuple[float, float] | None:
    numbers = (int, float)
    if isinstance(latitude, numbers) and isinstance(longitude, numbers) and not isinstance(latitude, bool):
        return float(latitude), float(longitude)
    return None


def _cart_items(context: Mapping[str, Any]) -> list[dict[str, Any]]:
    cart = context.get("cart")
    items = cart.get("items") if isinstance(cart, dict) else None
    return [item for item in items if isinstance(item, dict)] if isinstance(items, list) else []


def _trigger_sku(context: Mapping[str, Any]) -> str | None:
    trigger = context.get("trigger")
    properties = trigger.get("properties") if isinstance(trigger, dict) else None
    sku = properties.get("sku") if isinstance(properties, dict) else None
    return sku if isinstance(sku, str) else None


CONDITION_FIELDS = ("known", "in_stock", "price", "currency", "lowest_price_30d", "stock")
"""What ``catalog[sku]`` holds in a condition: the template's view without the stores (they depend
on where the customer is, and would make every customer's state larger)."""


def condition_view(snapshot: CatalogSnapshot, skus: list[str]) -> dict[str, dict[str, Any]]:
    """The ``catalog`` variable of conditions (e.g. ``catalog[i.sku].stock.total <= 3``)."""
    full = catalog_context(snapshot, skus)
    return {sku: {name: entry[name] for name in CONDITION_FIELDS} for sku, entry in full.items()}
