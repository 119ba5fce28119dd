"""Abandoned checkouts from WooCommerce, which has no checkout webhook: the smallest way in.

omnicart serves a small script (``GET /woocommerce/checkout.js``) that the shop's checkout page
includes for a signed-in customer. It reads the cart from the shop's own Store API
(``/wp-json/wc/store/v1/cart``, same origin, the shopper's session) and posts it unchanged to
``POST /v1/woocommerce/checkout``, which is public, so it is guarded three ways:

* the ``Origin`` must be one of ``OMNICART_WOOCOMMERCE_SHOP_ORIGINS`` (else ``403``);
* each client address may post ``OMNICART_WOOCOMMERCE_CHECKOUT_RATE`` times (else ``429``);
* the customer id must come with its token, hex HMAC-SHA256 of the id with the webhook secret, which
  only the shop's server can print into the page (else ``401``): nobody can start reminders for
  somebody else's account.

The cart is reduced to what a checkout needs (items and totals; the Store API's addresses are
dropped before anything is stored) and mapped to ``checkout_started`` through the same inbox as the
webhooks. One cart per customer (``woocommerce:cart:<id>``); the same cart posted again is a
duplicate. Guests have no id to send: they wait for identity merging.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import HTTPException, Request
from limits import RateLimitItem, parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from pydantic import SecretStr

from omnicart.connectors.core import Unmappable, as_object, as_objects, envelope, text_id
from omnicart.connectors.quarantine import Delivery

PATH = "/v1/woocommerce/checkout"
SCRIPT_PATH = "/woocommerce/checkout.js"
SCRIPT = Path(__file__).with_name("static") / "woocommerce-checkout.js"
MAX_BODY_BYTES = 64 * 1024  # a keepalive fetch carries at most 64 KiB
TOPIC = "checkout"
PREFIX = "woocommerce:"


class CheckoutGuard:
    """The endpoint's origin check and per-address rate limit (in this process's memory)."""

    def __init__(self, origins: list[str], rate: str) -> None:
        self.origins = frozenset(origin.rstrip("/") for origin in origins)
        self.rate: RateLimitItem = parse(rate)
        self.limiter = MovingWindowRateLimiter(MemoryStorage())

    def allowed_origin(self, request: Request) -> str:
        origin = (request.headers.get("origin") or "").rstrip("/")
        if origin not in self.origins:
            raise HTTPException(status_code=403, detail="this origin may not post checkouts")
        return origin

    def within_rate(self, request: Request) -> None:
        client = request.client.host if request.client else "unknown"
        if not self.limiter.hit(self.rate, "woocommerce-checkout", client):
            raise HTTPException(status_code=429, detail="too many checkouts from this address",
                                headers={"Retry-After": str(self.rate.get_expiry())})


def customer_token(secret: SecretStr, customer_id: str) -> str:
    """What the shop prints for a customer: ``hash_hmac('sha256', $id, $secret)`` in PHP."""
    return hmac.new(secret.get_secret_value().encode(), customer_id.encode(), hashlib.sha256).hexdigest()


def checkout_delivery(body: bytes, origin: str, secret: SecretStr | None) -> Delivery:
    """The delivery a posted checkout makes, once its token proves the customer; 400 / 401 / 503 else."""
    if secret is None:
        raise HTTPException(status_code=503, detail="the WooCommerce secret is not configured")
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise HTTPException(status_code=400, detail="the body is not JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("cart"), dict):
        raise HTTPException(status_code=400, detail='expected {"customer_id", "token", "cart"}')
    customer, token = text_id(data.get("customer_id")), data.get("token")
    if customer is None or not isinstance(token, str) or not hmac.compare_digest(
        token.encode(), customer_token(secret, customer).encode()
    ):
        raise HTTPException(status_code=401, detail="the customer token does not match")
    cart = _reduced(data["cart"])
    payload = json.dumps({"customer_id": customer, "shop": origin, "cart": cart}, sort_keys=True).encode()
    return Delivery(
        connector="woocommerce",
        delivery_id=f"checkout:{customer}:{hashlib.sha256(payload).hexdigest()[:24]}",
        topic=TOPIC,
        payload=payload,
        occurred_at=datetime.now(UTC),
        context={"source": origin},
    )


def checkout_events(delivery: Delivery, posted: dict[str, Any]) -> list[dict[str, Any]]:
    """A posted (and reduced) Store API cart as ``checkout_started``."""
    customer = text_id(posted.get("customer_id"))
    if customer is None:
        raise Unmappable("the checkout names no customer")
    cart = as_object(posted.get("cart"))
    totals = as_object(cart.get("totals"))
    items = [_item(item) for item in as_objects(cart.get("items"))]
    properties = {
        "cart_id": f"{PREFIX}cart:{customer}",
        "checkout_id": delivery.delivery_id,
        "items": items,
        "total": _minor(totals.get("total_price"), totals.get("currency_minor_unit")),
        "currency": totals.get("currency_code") or None,
        "restore_url": f"{posted['shop']}/cart/" if isinstance(posted.get("shop"), str) else None,
    }
    return [envelope(PREFIX + delivery.delivery_id, "checkout_started", PREFIX + customer, delivery.occurred_at,
                     "web", properties)]


def _reduced(cart: dict[str, Any]) -> dict[str, Any]:
    """Only items and totals: the Store API cart also holds the shopper's addresses."""
    item_keys = ("id", "sku", "name", "quantity", "permalink", "prices", "images")
    items = [{key: item[key] for key in item_keys if key in item} for item in as_objects(cart.get("items"))]
    totals = as_object(cart.get("totals"))
    return {"items": items, "totals": {key: totals.get(key) for key in
                                        ("total_price", "currency_code", "currency_minor_unit") if key in totals}}


def _item(item: dict[str, Any]) -> dict[str, Any]:
    prices = as_object(item.get("prices"))
    images = as_objects(item.get("images"))
    sku = item.get("sku") or (f"{PREFIX}product:{item['id']}" if text_id(item.get("id")) else None)
    if not sku:
        raise Unmappable("a cart item has neither sku nor id")
    mapped = {
        "sku": str(sku),
        "name": item.get("name") or None,
        "quantity": item.get("quantity", 1),
        "price": _minor(prices.get("price"), prices.get("currency_minor_unit")),
        "url": item.get("permalink") or None,
        "image_url": images[0].get("src") if images else None,
    }
    return {key: value for key, value in mapped.items() if value is not None}


def _minor(amount: Any, unit: Any) -> float | None:
    """The Store API's money: an integer string in minor units ("1800" with unit 2 is 18.00)."""
    if amount is None:
        return None
    if not isinstance(unit, int) or isinstance(unit, bool) or not 0 <= unit <= 4:
        raise Unmappable("currency_minor_unit is not 0 to 4")
    try:
        return float(int(str(amount)) / 10**unit)
    except ValueError:
        raise Unmappable("a price is not an integer in minor units") from None
