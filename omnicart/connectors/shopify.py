"""Shopify webhooks → omnicart events: ``POST /webhooks/shopify`` (one address for every topic).

Shopify signs each delivery with ``X-Shopify-Hmac-Sha256`` (base64 HMAC-SHA256 of the raw body with
the app's client secret, ``OMNICART_SHOPIFY_API_SECRET``), names it with ``X-Shopify-Event-Id``
(the same on every redelivery: our event ids derive from it, so a redelivery is a duplicate) and
says when it happened in ``X-Shopify-Triggered-At`` (the events' time). Ids are prefixed with
``shopify:`` so they never collide with another producer's.

==========================================  ====================================================
topic                                       omnicart events
==========================================  ====================================================
``checkouts/create``                        ``customer_updated`` (contact) + ``checkout_started``
``checkouts/update``                        ``customer_updated`` (contact) + ``cart_updated``
``orders/create``                           ``order_placed`` (POS: ``source: store``, store id)
``customers/create``, ``customers/update``  ``customer_updated`` (only ``subscribed`` is consent)
``products/create``, ``products/update``    ``product_updated`` per variant with a sku
``inventory_levels/update``                 ``inventory_changed`` (sku via the product webhooks)
privacy topics                              export / forget (``omnicart.connectors.shopify_privacy``)
==========================================  ====================================================
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from fastapi import Request
from sqlalchemy import Engine

from omnicart.connectors.core import TopicMapping, Unmappable, as_object, as_objects, envelope, money, text_id
from omnicart.connectors.quarantine import Delivery
from omnicart.connectors.shopify_inventory import link_inventory_items, sku_of_inventory_item

CONNECTOR = "shopify"
PATH = "/webhooks/shopify"
PREFIX = "shopify:"
HMAC_HEADER = "X-Shopify-Hmac-Sha256"
TOPIC_HEADER = "X-Shopify-Topic"
EVENT_ID_HEADER = "X-Shopify-Event-Id"
WEBHOOK_ID_HEADER = "X-Shopify-Webhook-Id"
TRIGGERED_AT_HEADER = "X-Shopify-Triggered-At"
SHOP_DOMAIN_HEADER = "X-Shopify-Shop-Domain"

PRIVACY_TOPICS = ("customers/data_request", "customers/redact", "shop/redact")
EVENT_TOPICS = (
    "checkouts/create",
    "checkouts/update",
    "orders/create",
    "customers/create",
    "customers/update",
    "products/create",
    "products/update",
    "inventory_levels/update",
)
# Shopify's consent states: only an explicit subscription is consent (pending double opt-in is not).
CONSENTING_STATE = "subscribed"
POS_SOURCE_NAME = "pos"
DEFAULT_VARIANT_TITLE = "Default Title"


def delivery_of(request: Request, body: bytes) -> Delivery:
    """The delivery a (verified) request carries: topic, id and time from Shopify's headers."""
    headers = request.headers
    delivery_id = headers.get(EVENT_ID_HEADER) or headers.get(WEBHOOK_ID_HEADER) or _body_id(body)
    return Delivery(
        connector=CONNECTOR,
        delivery_id=delivery_id[:200],
        topic=headers.get(TOPIC_HEADER, "")[:100],
        payload=body,
        occurred_at=_instant(headers.get(TRIGGERED_AT_HEADER)) or datetime.now(UTC),
        context={"shop_domain": headers.get(SHOP_DOMAIN_HEADER, "")[:255]},
    )


class ShopifyMapping(TopicMapping):
    """Shopify payloads as omnicart envelopes (see the module's table)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.topics = {
            "checkouts/create": lambda d, p: self._checkout(d, p, "checkout_started"),
            "checkouts/update": lambda d, p: self._checkout(d, p, "cart_updated"),
            "orders/create": self._order,
            "customers/create": self._customer,
            "customers/update": self._customer,
            "products/create": self._product,
            "products/update": self._product,
            "inventory_levels/update": self._inventory_level,
        }

    def _checkout(self, delivery: Delivery, checkout: dict[str, Any], event_type: str) -> list[dict[str, Any]]:
        customer = as_object(checkout.get("customer"))
        customer_id = _customer_id(customer)
        token = text_id(checkout.get("cart_token")) or text_id(checkout.get("token"))
        if token is None:
            raise Unmappable("the checkout has neither cart_token nor token", customer_id)
        properties: dict[str, Any] = {
            "cart_id": PREFIX + token,
            "items": _items(checkout.get("line_items")),
            "total": money(checkout.get("total_price"), "total_price"),
            "currency": checkout.get("currency") or checkout.get("presentment_currency"),
            "restore_url": checkout.get("abandoned_checkout_url"),
        }
        if event_type == "checkout_started" and text_id(checkout.get("token")):
            properties["checkout_id"] = PREFIX + str(checkout["token"])
        contact = _contact(customer, fallback_email=checkout.get("email"))
        envelopes = [_envelope(delivery, "customer_updated", customer_id, "api", contact, part=1)] if contact else []
        return [*envelopes, _envelope(delivery, event_type, customer_id, "web", properties)]

    def _order(self, delivery: Delivery, order: dict[str, Any]) -> list[dict[str, Any]]:
        customer_id = _customer_id(as_object(order.get("customer")))
        order_id = text_id(order.get("id"))
        if order_id is None:
            raise Unmappable("the order has no id", customer_id)
        in_store = order.get("source_name") == POS_SOURCE_NAME
        location = text_id(order.get("location_id"))
        cart_token = text_id(order.get("cart_token"))
        properties: dict[str, Any] = {
            "order_id": PREFIX + order_id,
            "cart_id": PREFIX + cart_token if cart_token else None,
            "items": _items(order.get("line_items")),
            "total": money(order.get("total_price"), "total_price"),
            "currency": order.get("currency"),
            "store_id": PREFIX + location if in_store and location else None,
        }
        return [_envelope(delivery, "order_placed", customer_id, "store" if in_store else "web", properties)]

    def _customer(self, delivery: Delivery, customer: dict[str, Any]) -> list[dict[str, Any]]:
        customer_id = _customer_id(customer)
        return [_envelope(delivery, "customer_updated", customer_id, "api", _contact(customer, with_consent=True))]

    def _product(self, delivery: Delivery, product: dict[str, Any]) -> list[dict[str, Any]]:
        variants = as_objects(product.get("variants"))
        with_sku = [variant for variant in variants if isinstance(variant.get("sku"), str) and variant["sku"]]
        if not with_sku:
            raise Unmappable("no variant of the product has a sku")
        title = product.get("title") if isinstance(product.get("title"), str) else None
        domain, handle = delivery.context.get("shop_domain"), product.get("handle")
        url = f"https://{domain}/products/{handle}" if domain and isinstance(handle, str) and handle else None
        image = as_object(product.get("image")) or next(iter(as_objects(product.get("images"))), {})
        envelopes = []
        links: dict[str, str] = {}
        for part, variant in enumerate(with_sku):
            name = title
            if title and variant.get("title") and variant["title"] != DEFAULT_VARIANT_TITLE:
                name = f"{title} - {variant['title']}"
            properties = {
                "sku": variant["sku"],
                "name": name,
                "url": url,
                "image_url": image.get("src"),
                "price": money(variant.get("price"), "variants[].price"),
                "category": product.get("product_type") or None,
            }
            envelopes.append(_envelope(delivery, "product_updated", "", "api", properties, part=part))
            item = text_id(variant.get("inventory_item_id"))
            if item is not None:
                links[item] = variant["sku"]
        link_inventory_items(self.engine, links)  # idempotent: a redelivery writes the same links
        return envelopes

    def _inventory_level(self, delivery: Delivery, level: dict[str, Any]) -> list[dict[str, Any]]:
        item, location = text_id(level.get("inventory_item_id")), text_id(level.get("location_id"))
        if item is None or location is None:
            raise Unmappable("the inventory level has no inventory_item_id or location_id")
        available = level.get("available")
        if not isinstance(available, int) or isinstance(available, bool):
            raise Unmappable("available is not a whole number (is the item's inventory tracked?)")
        sku = sku_of_inventory_item(self.engine, item)
        if sku is None:
            raise Unmappable(f"inventory item {item} is not linked to a sku yet: replay after products/update")
        properties = {"sku": sku, "location": PREFIX + location, "quantity": available}
        return [_envelope(delivery, "inventory_changed", "", "api", properties)]


def _envelope(delivery: Delivery, event_type: str, customer_id: str, source: str,
              properties: dict[str, Any], part: int = 0) -> dict[str, Any]:
    """One envelope of a delivery; ``part`` tells apart the several events one delivery makes."""
    event_id = f"{PREFIX}{delivery.delivery_id}" + (f":{part}" if part else "")
    return envelope(event_id, event_type, customer_id, delivery.occurred_at, source, properties)


def _customer_id(customer: dict[str, Any]) -> str:
    shopify_id = text_id(customer.get("id"))
    if shopify_id is None:
        raise Unmappable("anonymous: no Shopify customer id (a guest; identity merging comes later)")
    return PREFIX + shopify_id


def _contact(customer: dict[str, Any], fallback_email: Any = None, with_consent: bool = False) -> dict[str, Any]:
    """A customer's contact details and consent, as ``customer_updated`` properties."""
    contact: dict[str, Any] = {
        "email": customer.get("email") or fallback_email or None,
        "phone": customer.get("phone") or None,
        "first_name": customer.get("first_name") or None,
        "locale": customer.get("locale") or None,
    }
    consent = {
        channel: _consents(customer.get(field))
        for channel, field in (("email", "email_marketing_consent"), ("sms", "sms_marketing_consent"))
        if with_consent or customer.get(field) is not None
    }
    if any(value is not None for value in consent.values()):
        contact["consent"] = consent
    return {key: value for key, value in contact.items() if value is not None}


def _consents(consent: Any) -> bool | None:
    """``subscribed`` is consent; ``pending``, ``not_subscribed``, ``unsubscribed``, ``redacted`` are not;
    no consent object at all says nothing (None: the profile keeps what it had)."""
    if not isinstance(consent, dict) or "state" not in consent:
        return None
    return bool(consent["state"] == CONSENTING_STATE)


def _items(line_items: Any) -> list[dict[str, Any]]:
    items = []
    for line in as_objects(line_items):
        variant = text_id(line.get("variant_id"))
        sku = line.get("sku") if isinstance(line.get("sku"), str) and line["sku"] else None
        if sku is None and variant is None:
            raise Unmappable("a line item has neither sku nor variant_id")
        item = {
            "sku": sku or f"{PREFIX}variant:{variant}",
            "name": line.get("title") or line.get("name") or None,
            "quantity": line.get("quantity", 1),
            "price": money(line.get("price"), "line_items[].price"),
        }
        items.append({key: value for key, value in item.items() if value is not None})
    return items


def _instant(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _body_id(body: bytes) -> str:
    """An id for a delivery without Shopify's id headers: the same body is the same delivery."""
    return "body-" + hashlib.sha256(body).hexdigest()[:32]
