"""WooCommerce webhooks → omnicart events: ``POST /webhooks/woocommerce`` (one address for every topic).

WooCommerce signs a delivery with ``X-WC-Webhook-Signature`` (base64 HMAC-SHA256 of the body with the
webhook's secret, ``OMNICART_WOOCOMMERCE_WEBHOOK_SECRET``), names its topic in
``X-WC-Webhook-Topic`` and the delivery in ``X-WC-Webhook-Delivery-ID`` (our event ids derive from
it). When a webhook is saved it first sends an unsigned *ping* whose body is ``webhook_id=<n>``, and
keeps the webhook only if that is answered ``2xx``: the ping is answered ``200`` and takes nothing in.

=====================  =======================================================================
topic                  omnicart events
=====================  =======================================================================
``order.created``      ``order_placed``
``customer.updated``   ``customer_updated`` (email, billing phone, first name; WooCommerce keeps
                       no marketing consent, so consent comes from elsewhere)
``product.updated``    ``product_updated`` + ``inventory_changed`` at ``online`` (a variation
                       arrives as its own product with ``parent_id``)
=====================  =======================================================================

Stock: ``stock_quantity`` when the product manages stock; otherwise only ``stock_status`` is known,
and ``outofstock`` counts as 0 units and ``instock`` / ``onbackorder`` as 1, so a restock is still
seen. WooCommerce has no checkout webhook: see ``omnicart.connectors.woocommerce_checkout``.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from typing import Any

from fastapi import Request

from omnicart.connectors.core import TopicMapping, Unmappable, as_object, as_objects, envelope, money, text_id
from omnicart.connectors.quarantine import Delivery
from omnicart.connectors.woocommerce_checkout import TOPIC as CHECKOUT_TOPIC
from omnicart.connectors.woocommerce_checkout import checkout_events

CONNECTOR = "woocommerce"
PATH = "/webhooks/woocommerce"
PREFIX = "woocommerce:"
SIGNATURE_HEADER = "X-WC-Webhook-Signature"
TOPIC_HEADER = "X-WC-Webhook-Topic"
DELIVERY_HEADER = "X-WC-Webhook-Delivery-ID"
SOURCE_HEADER = "X-WC-Webhook-Source"
TOPICS = ("order.created", "customer.updated", "product.updated")
ONLINE = "online"
PING = re.compile(rb"^webhook_id=\d{1,20}$")
UNMANAGED_UNITS = {"outofstock": 0, "instock": 1, "onbackorder": 1}


def is_ping(request: Request, body: bytes) -> bool:
    """WooCommerce's test delivery on saving a webhook: unsigned, ``webhook_id=<n>`` and nothing else."""
    return SIGNATURE_HEADER.lower() not in request.headers and PING.match(body) is not None


def delivery_of(request: Request, body: bytes) -> Delivery:
    headers = request.headers
    delivery_id = headers.get(DELIVERY_HEADER) or "body-" + hashlib.sha256(body).hexdigest()[:32]
    return Delivery(
        connector=CONNECTOR,
        delivery_id=delivery_id[:200],
        topic=headers.get(TOPIC_HEADER, "")[:100],
        payload=body,
        occurred_at=datetime.now(UTC),  # the mapping prefers the resource's own modification time
        context={"source": headers.get(SOURCE_HEADER, "")[:255]},
    )


class WooCommerceMapping(TopicMapping):
    """WooCommerce payloads (REST API v3 resources) as omnicart envelopes."""

    def __init__(self) -> None:
        self.topics = {
            "order.created": self._order,
            "customer.updated": self._customer,
            "product.updated": self._product,
            CHECKOUT_TOPIC: checkout_events,
        }

    def _order(self, delivery: Delivery, order: dict[str, Any]) -> list[dict[str, Any]]:
        customer_id = _customer_id(order.get("customer_id"))
        order_id = text_id(order.get("id"))
        if order_id is None:
            raise Unmappable("the order has no id", customer_id)
        items = []
        for line in as_objects(order.get("line_items")):
            product = text_id(line.get("variation_id")) if line.get("variation_id") else text_id(line.get("product_id"))
            sku = line.get("sku") if isinstance(line.get("sku"), str) and line["sku"] else None
            if sku is None and product is None:
                raise Unmappable("a line item has neither sku nor product_id", customer_id)
            item = {"sku": sku or f"{PREFIX}product:{product}", "name": line.get("name") or None,
                    "quantity": line.get("quantity", 1), "price": money(line.get("price"), "line_items[].price")}
            items.append({key: value for key, value in item.items() if value is not None})
        properties = {"order_id": PREFIX + order_id, "items": items,
                      "total": money(order.get("total"), "total"), "currency": order.get("currency") or None}
        return [_envelope(delivery, order, "order_placed", customer_id, "web", properties)]

    def _customer(self, delivery: Delivery, customer: dict[str, Any]) -> list[dict[str, Any]]:
        customer_id = _customer_id(customer.get("id"))
        billing = as_object(customer.get("billing"))
        properties = {
            "email": customer.get("email") or billing.get("email") or None,
            "phone": billing.get("phone") or None,
            "first_name": customer.get("first_name") or billing.get("first_name") or None,
        }
        return [_envelope(delivery, customer, "customer_updated", customer_id, "api", properties)]

    def _product(self, delivery: Delivery, product: dict[str, Any]) -> list[dict[str, Any]]:
        sku = product.get("sku")
        if not isinstance(sku, str) or not sku:
            raise Unmappable("the product has no sku (a variable product's variations carry them)")
        image = as_object(product.get("image")) or next(iter(as_objects(product.get("images"))), {})
        categories = as_objects(product.get("categories"))
        details = {
            "sku": sku,
            "name": product.get("name") or None,
            "url": product.get("permalink") or None,
            "image_url": image.get("src") or None,
            "price": money(product.get("price"), "price"),
            "category": categories[0].get("name") if categories else None,
        }
        envelopes = [_envelope(delivery, product, "product_updated", "", "api", details)]
        units = _units(product)
        if units is not None:
            stock = {"sku": sku, "location": ONLINE, "quantity": units}
            envelopes.append(_envelope(delivery, product, "inventory_changed", "", "api", stock, part=1))
        return envelopes


def _units(product: dict[str, Any]) -> int | None:
    quantity = product.get("stock_quantity")
    if product.get("manage_stock") is True and isinstance(quantity, int) and not isinstance(quantity, bool):
        return quantity
    status = product.get("stock_status")
    return UNMANAGED_UNITS.get(status) if isinstance(status, str) else None


def _customer_id(value: Any) -> str:
    woo_id = text_id(value)
    if woo_id is None or woo_id == "0":
        raise Unmappable("anonymous: a guest (customer id 0); identity merging comes later")
    return PREFIX + woo_id


def _envelope(delivery: Delivery, resource: dict[str, Any], event_type: str, customer_id: str, source: str,
              properties: dict[str, Any], part: int = 0) -> dict[str, Any]:
    event_id = f"{PREFIX}{delivery.delivery_id}" + (f":{part}" if part else "")
    timestamp = _modified_at(resource, delivery.occurred_at)
    return envelope(event_id, event_type, customer_id, timestamp, source, properties)


def _modified_at(resource: dict[str, Any], fallback: datetime) -> datetime:
    """The resource's own time (``date_modified_gmt``, else ``date_created_gmt``: UTC without an offset)."""
    for field in ("date_modified_gmt", "date_created_gmt"):
        value = resource.get(field)
        if isinstance(value, str) and value:
            try:
                moment = datetime.fromisoformat(value)
            except ValueError:
                raise Unmappable(f"{field} is not an ISO 8601 time") from None
            return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
    return fallback
