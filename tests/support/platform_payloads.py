"""Payloads shaped like the platforms' documented examples, and signed as each platform signs them.

Shopify: the sample payloads its admin sends with "Send test notification" (shopify.dev webhook
reference), with ids shortened where a test needs its own. WooCommerce: REST API v3 resources
(woocommerce.github.io/woocommerce-rest-api-docs) and the Store API cart. Segment: the HTTP
Tracking API's examples and the e-commerce spec v2 (segment.com/docs).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from datetime import UTC, datetime
from typing import Any

SHOPIFY_SECRET = "hush-shopify-app-secret"
WOO_SECRET = "hush-woocommerce-secret"
SEGMENT_KEY = "segment-write-key-1"


def signature(secret: str, body: bytes) -> str:
    """Base64 HMAC-SHA256 of the raw body: Shopify's and WooCommerce's webhook signature."""
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def shopify_request(topic: str, payload: dict[str, Any], event_id: str | None = None,
                    triggered_at: datetime | None = None, secret: str = SHOPIFY_SECRET) -> tuple[bytes, dict[str, str]]:
    """A delivery as Shopify sends it: the body and its headers."""
    body = json.dumps(payload).encode()
    return body, {
        "Content-Type": "application/json",
        "X-Shopify-Topic": topic,
        "X-Shopify-Hmac-Sha256": signature(secret, body),
        "X-Shopify-Shop-Domain": "omnicart-test.myshopify.com",
        "X-Shopify-API-Version": "2025-10",
        "X-Shopify-Webhook-Id": str(uuid.uuid4()),
        "X-Shopify-Event-Id": event_id or str(uuid.uuid4()),
        "X-Shopify-Triggered-At": (triggered_at or datetime.now(UTC)).isoformat(),
    }


def woo_request(topic: str, payload: dict[str, Any], delivery_id: str | None = None,
                secret: str = WOO_SECRET) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(payload).encode()
    resource, event = topic.split(".")
    return body, {
        "Content-Type": "application/json",
        "User-Agent": "WooCommerce/9.4.0 Hookshot (WordPress/6.7)",
        "X-WC-Webhook-Source": "https://shop.example/",
        "X-WC-Webhook-Topic": topic,
        "X-WC-Webhook-Resource": resource,
        "X-WC-Webhook-Event": event,
        "X-WC-Webhook-Signature": signature(secret, body),
        "X-WC-Webhook-ID": "7",
        "X-WC-Webhook-Delivery-ID": delivery_id or uuid.uuid4().hex,
    }


def segment_auth(key: str = SEGMENT_KEY) -> dict[str, str]:
    """Segment's Basic auth: the write key as the user, an empty password."""
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def shopify_customer(customer_id: int, email_state: str | None = "subscribed",
                     sms_state: str | None = "not_subscribed") -> dict[str, Any]:
    """customers/create's sample, with marketing consent states."""
    def consent(state: str | None) -> dict[str, Any] | None:
        return None if state is None else {"state": state, "opt_in_level": "single_opt_in",
                                           "consent_updated_at": "2021-12-31T19:00:00-05:00"}
    return {
        "id": customer_id, "email": "bob@biller.com", "created_at": "2021-12-31T19:00:00-05:00",
        "updated_at": "2021-12-31T19:00:00-05:00", "first_name": "Bob", "last_name": "Biller",
        "orders_count": 0, "state": "disabled", "total_spent": "0.00", "last_order_id": None,
        "note": "This customer loves ice cream", "verified_email": True, "multipass_identifier": None,
        "tax_exempt": False, "tags": "", "last_order_name": None, "currency": "USD", "phone": "+16135551111",
        "addresses": [], "tax_exemptions": [], "email_marketing_consent": consent(email_state),
        "sms_marketing_consent": consent(sms_state),
        "admin_graphql_api_id": f"gid://shopify/Customer/{customer_id}",
    }


def shopify_line_item() -> dict[str, Any]:
    return {
        "applied_discounts": [], "discount_allocations": [], "key": "a1b2c3", "fulfillment_service": "manual",
        "gift_card": False, "grams": 567, "presentment_title": "IPod Nano - 8GB",
        "presentment_variant_title": "Pink", "product_id": 632910392, "properties": None, "quantity": 2,
        "requires_shipping": True, "sku": "IPOD2008PINK", "tax_lines": [], "taxable": True,
        "title": "IPod Nano - 8GB", "variant_id": 808950810, "variant_title": "Pink", "variant_price": "199.00",
        "vendor": "Apple", "compare_at_price": None, "line_price": "398.00", "price": "199.00",
    }


def shopify_checkout(customer_id: int, token: str = "123123123") -> dict[str, Any]:
    """checkouts/create's sample (a checkout with a known customer)."""
    return {
        "id": 981820079255243537, "token": token, "cart_token": f"cart-{token}", "email": "john@example.com",
        "gateway": None, "buyer_accepts_marketing": False, "created_at": "2021-12-31T19:00:00-05:00",
        "updated_at": "2021-12-31T19:00:00-05:00", "landing_site": None, "note": None, "note_attributes": [],
        "referring_site": None, "shipping_lines": [], "taxes_included": False, "total_weight": 1134,
        "currency": "USD", "completed_at": None, "closed_at": None, "user_id": None, "location_id": None,
        "source_identifier": None, "source_url": None, "device_id": None, "phone": None, "customer_locale": None,
        "line_items": [shopify_line_item()], "name": "#981820079255243537", "source": None,
        "abandoned_checkout_url": f"https://checkout.local/548380009/checkouts/{token}/recover?key=example",
        "discount_codes": [], "tax_lines": [], "source_name": "web", "presentment_currency": "USD",
        "buyer_accepts_sms": False, "sms_marketing_phone": None, "total_discounts": "0.00",
        "total_line_items_price": "398.00", "total_price": "398.00", "total_tax": "0.00", "subtotal_price": "398.00",
        "total_duties": None, "reservation_token": None,
        "billing_address": {"first_name": "Bob", "address1": "123 Billing Street", "city": "Billtown",
                            "country": "United States", "zip": "K2P0B0"},
        "customer": {**shopify_customer(customer_id, email_state="subscribed", sms_state=None),
                     "email": "john@example.com", "first_name": "John"},
    }


def shopify_order(customer_id: int, order_id: int = 820982911946154508, pos_location: int | None = None,
                  cart_token: str | None = None) -> dict[str, Any]:
    """orders/create's sample; from the POS (``source_name: pos``, ``location_id``) when ``pos_location``."""
    return {
        "id": order_id, "admin_graphql_api_id": f"gid://shopify/Order/{order_id}", "app_id": None,
        "browser_ip": None, "buyer_accepts_marketing": True, "cancel_reason": None, "cancelled_at": None,
        "cart_token": cart_token, "checkout_id": None, "checkout_token": None, "confirmed": False,
        "contact_email": "jon@example.com", "created_at": "2021-12-31T19:00:00-05:00", "currency": "USD",
        "current_total_price": "403.00", "email": "jon@example.com", "financial_status": "voided",
        "location_id": pos_location, "name": "#9999", "order_number": 1234,
        "source_name": "pos" if pos_location is not None else "web", "subtotal_price": "393.00",
        "total_price": "403.00", "total_tax": "0.00", "line_items": [shopify_line_item()],
        "customer": {"id": customer_id, "email": "john@example.com", "first_name": "John", "last_name": "Smith",
                     "state": "disabled", "verified_email": True, "currency": "USD",
                     "admin_graphql_api_id": f"gid://shopify/Customer/{customer_id}"},
    }


def shopify_product(inventory_items: tuple[int, int] = (49148385, 49148386)) -> dict[str, Any]:
    """products/update's sample, with the inventory item ids a real shop's variants carry."""
    def variant(variant_id: int, title: str, sku: str, item: int) -> dict[str, Any]:
        return {"admin_graphql_api_id": f"gid://shopify/ProductVariant/{variant_id}", "barcode": None,
                "compare_at_price": "24.99", "created_at": "2021-12-29T19:00:00-05:00", "id": variant_id,
                "inventory_policy": "deny", "position": 0, "price": "19.99", "product_id": 788032119674292922,
                "sku": sku, "taxable": True, "title": title, "updated_at": "2021-12-30T19:00:00-05:00",
                "option1": title, "option2": None, "option3": None, "image_id": None, "inventory_item_id": item,
                "inventory_quantity": 75, "old_inventory_quantity": 75}
    return {
        "admin_graphql_api_id": "gid://shopify/Product/788032119674292922", "body_html": "An example T-Shirt",
        "created_at": None, "handle": "example-t-shirt", "id": 788032119674292922, "product_type": "Shirts",
        "published_at": "2021-12-31T19:00:00-05:00", "template_suffix": None, "title": "Example T-Shirt",
        "updated_at": "2021-12-31T19:00:00-05:00", "vendor": "Acme", "status": "active", "published_scope": "web",
        "tags": "example, mens, t-shirt",
        "variants": [variant(642667041472713922, "Small", "example-shirt-s", inventory_items[0]),
                     variant(757650484644203962, "Medium", "example-shirt-m", inventory_items[1])],
        "options": [], "images": [{"src": "https://cdn.shopify.com/example-t-shirt.jpg"}], "image": None,
        "media": [], "category": None,
    }


def shopify_inventory_level(inventory_item: int = 49148385, location: int = 24826418,
                            available: int = 6) -> dict[str, Any]:
    return {"inventory_item_id": inventory_item, "location_id": location, "available": available,
            "updated_at": "2021-12-31T19:00:00-05:00",
            "admin_graphql_api_id": f"gid://shopify/InventoryLevel/{location}?inventory_item_id={inventory_item}"}


def shopify_privacy(topic: str, customer_id: int = 191167) -> dict[str, Any]:
    base: dict[str, Any] = {"shop_id": 954889, "shop_domain": "omnicart-test.myshopify.com"}
    if topic == "shop/redact":
        return base
    customer = {"id": customer_id, "email": "john@example.com", "phone": "555-625-1199"}
    if topic == "customers/redact":
        return {**base, "customer": customer, "orders_to_redact": [299938, 280263, 220458]}
    return {**base, "orders_requested": [299938, 280263, 220458], "customer": customer, "data_request": {"id": 9999}}


def woo_order(customer_id: int, order_id: int = 727) -> dict[str, Any]:
    """An order as the REST API v3 (and order.created) shows it."""
    return {
        "id": order_id, "parent_id": 0, "number": str(order_id), "order_key": "wc_order_58d2d042d1d",
        "created_via": "checkout", "version": "9.4.0", "status": "processing", "currency": "USD",
        "date_created": "2026-11-22T19:22:10", "date_created_gmt": "2026-11-22T19:22:10",
        "date_modified": "2026-11-22T19:22:10", "date_modified_gmt": "2026-11-22T19:22:10",
        "discount_total": "0.00", "shipping_total": "10.00", "total": "29.35", "total_tax": "1.35",
        "prices_include_tax": False, "customer_id": customer_id, "customer_note": "",
        "billing": {"first_name": "John", "last_name": "Doe", "email": "john.doe@example.com",
                    "phone": "(555) 555-5555", "city": "San Francisco", "country": "US"},
        "payment_method": "bacs", "cart_hash": "",
        "line_items": [{"id": 315, "name": "Woo Single #1", "product_id": 93, "variation_id": 0, "quantity": 2,
                        "tax_class": "", "subtotal": "6.00", "total": "6.00", "sku": "woo-single-1",
                        "price": 3},
                       {"id": 316, "name": "Ship Your Idea - Color: Black, Size: M Test", "product_id": 22,
                        "variation_id": 23, "quantity": 1, "subtotal": "12.00", "total": "12.00", "sku": "",
                        "price": 12}],
    }


def woo_customer(customer_id: int) -> dict[str, Any]:
    return {
        "id": customer_id, "date_created": "2026-11-22T19:12:32", "date_created_gmt": "2026-11-22T19:12:32",
        "date_modified": "2026-11-22T19:12:32", "date_modified_gmt": "2026-11-22T19:12:32",
        "email": "john.doe@example.com", "first_name": "John", "last_name": "Doe", "role": "customer",
        "username": "john.doe",
        "billing": {"first_name": "John", "last_name": "Doe", "email": "john.doe@example.com",
                    "phone": "+14155550100", "country": "US"},
        "shipping": {"first_name": "John", "last_name": "Doe", "country": "US"},
        "is_paying_customer": False, "avatar_url": "https://secure.gravatar.com/avatar/8eb1b522f6?s=96",
    }


def woo_product(sku: str = "woo-premium-quality", manage_stock: bool = True, stock_quantity: int | None = 7,
                stock_status: str = "instock", parent_id: int = 0) -> dict[str, Any]:
    return {
        "id": 794, "name": "Premium Quality", "slug": "premium-quality-19", "type": "simple", "status": "publish",
        "permalink": "https://shop.example/product/premium-quality-19/", "parent_id": parent_id,
        "date_modified_gmt": "2026-11-22T19:21:48", "sku": sku, "price": "21.99", "regular_price": "21.99",
        "sale_price": "", "manage_stock": manage_stock, "stock_quantity": stock_quantity,
        "stock_status": stock_status, "categories": [{"id": 9, "name": "Clothing", "slug": "clothing"}],
        "images": [{"id": 792, "src": "https://shop.example/wp-content/uploads/T_2_front-4.jpg", "name": ""}],
        "variations": [],
    }


def store_api_cart() -> dict[str, Any]:
    """``GET /wp-json/wc/store/v1/cart`` as the checkout script reads it (addresses included)."""
    prices = {"price": "1800", "regular_price": "2000", "sale_price": "1800", "currency_code": "USD",
              "currency_symbol": "$", "currency_minor_unit": 2, "currency_decimal_separator": ".",
              "currency_thousand_separator": ",", "currency_prefix": "$", "currency_suffix": ""}
    return {
        "items": [{"key": "c74d97b01eae257e44aa9d5bade97baf", "id": 16, "quantity": 2, "name": "Beanie",
                   "sku": "woo-beanie", "permalink": "https://shop.example/product/beanie/",
                   "images": [{"id": 45, "src": "https://shop.example/wp-content/uploads/beanie.jpg"}],
                   "prices": prices}],
        "items_count": 2, "needs_payment": True,
        "billing_address": {"first_name": "John", "email": "john.doe@example.com", "phone": "+14155550100"},
        "shipping_address": {"first_name": "John", "address_1": "1 Main St"},
        "totals": {"total_items": "3600", "total_price": "3600", "total_tax": "0", "currency_code": "USD",
                   "currency_minor_unit": 2},
    }


def segment_checkout_started(user_id: str | None, message_id: str | None = None) -> dict[str, Any]:
    """The e-commerce spec's Checkout Started example."""
    call: dict[str, Any] = {
        "type": "track", "event": "Checkout Started", "messageId": message_id or str(uuid.uuid4()),
        "properties": {
            "order_id": "50314b8e9bcf000000000000", "affiliation": "Google Store", "value": 30, "revenue": 25.00,
            "shipping": 3, "tax": 2, "discount": 2.5, "coupon": "hasbros", "currency": "USD",
            "products": [
                {"product_id": "507f1f77bcf86cd799439011", "sku": "45790-32", "name": "Monopoly: 3rd Edition",
                 "price": 19, "quantity": 1, "category": "Games", "url": "https://www.example.com/product/path",
                 "image_url": "https://www.example.com/product/path.jpg"},
                {"product_id": "505bd76785ebb509fc183733", "sku": "46493-32", "name": "Uno Card Game", "price": 3,
                 "quantity": 2, "category": "Games"}]},
        "context": {"ip": "24.5.68.47"},
        "timestamp": "2026-11-22T00:30:12.984Z",
    }
    if user_id is not None:
        call["userId"] = user_id
    else:
        call["anonymousId"] = "507f191e810c19729de860ea"
    return call
