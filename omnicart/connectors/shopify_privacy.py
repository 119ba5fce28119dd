"""Shopify's mandatory privacy webhooks, carried out with omnicart's own privacy operations.

* ``customers/redact`` erases the customer everywhere (:func:`omnicart.privacy.forget.forget_customer`
  for ``shopify:<id>``, which deletes their quarantined deliveries too);
* ``customers/data_request`` exports what omnicart holds of the customer (their profile, from the
  profile projection) to ``<data_dir>/exports/shopify-data-request-<id>.json`` for the shop owner,
  who must hand it to the customer (Shopify only tells the app; it does not collect the answer);
* ``shop/redact`` (48 hours after a shop uninstalled) erases every ``shopify:`` customer and the
  Shopify quarantine.

All three are idempotent: Shopify may deliver them again.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

from temporalio.client import Client

from omnicart.connectors.core import as_object, text_id
from omnicart.connectors.quarantine import ConnectorQuarantine
from omnicart.customers.profiles import CustomerProfiles
from omnicart.privacy.forget import forget_customer
from omnicart.settings import Settings
from omnicart.storage import get_engine

logger = logging.getLogger(__name__)

PREFIX = "shopify:"


async def carry_out(topic: str, payload: dict[str, Any], temporal: Client, settings: Settings) -> dict[str, Any]:
    """Do what a privacy ``topic`` asks; answers what was done (ids and counts only)."""
    engine = get_engine(settings.database())
    quarantine = ConnectorQuarantine(engine)
    if topic == "shop/redact":
        profiles = CustomerProfiles(engine, settings.signing_secret)
        customers = await asyncio.to_thread(_shopify_customers, profiles)
        for customer_id in customers:
            await forget_customer(temporal, settings, customer_id)
        deleted = await asyncio.to_thread(quarantine.forget_connector, "shopify")
        logger.info("shopify shop/redact: %d customers forgotten, %d quarantined deliveries deleted",
                    len(customers), deleted)
        return {"customers_forgotten": len(customers), "quarantined_deleted": deleted}
    customer = as_object(payload.get("customer"))
    shopify_id = text_id(customer.get("id"))
    if shopify_id is None:
        logger.warning("shopify %s without a customer id: nothing to do", topic)
        return {"done": "nothing: no customer id"}
    customer_id = PREFIX + shopify_id
    if topic == "customers/redact":
        report = await forget_customer(temporal, settings, customer_id)  # its quarantined deliveries too
        logger.info("shopify customers/redact: %s forgotten (%s)", customer_id, report.workflow)
        return {"forgotten": customer_id, "quarantined_deleted": report.connector_rows_deleted}
    request = as_object(payload.get("data_request"))
    request_id = text_id(request.get("id")) or shopify_id
    profiles = CustomerProfiles(engine, settings.signing_secret)
    path = await asyncio.to_thread(_export, profiles, customer_id, settings.data_dir / "exports", request_id)
    logger.info("shopify customers/data_request %s: export written for %s", request_id, customer_id)
    return {"exported": customer_id, "file": path.name}


def _export(profiles: CustomerProfiles, customer_id: str, folder: Path, request_id: str) -> Path:
    profile = profiles.find_by_id(customer_id)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"shopify-data-request-{''.join(c for c in request_id if c.isalnum())}.json"
    document = {"customer_id": customer_id, "profile": profile.model_dump(mode="json") if profile else None}
    path.write_text(json.dumps(document, indent=2), encoding="utf-8")
    return path


def _shopify_customers(profiles: CustomerProfiles) -> list[str]:
    found: list[str] = []
    cursor: str | None = None
    while True:
        page = profiles.everyone(cursor)
        found += [p.customer_id for p in page.customers if p.customer_id and p.customer_id.startswith(PREFIX)]
        if page.next_cursor is None:
            return found
        cursor = page.next_cursor
