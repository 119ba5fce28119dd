"""Shopify end to end on the Temporal dev server, as `omnicart dev` runs it: a checkout webhook
starts the flagship journey, and an order webhook from Shopify POS (a purchase in a physical store)
ends it as a conversion with `source: store`. Journeys are the shipped ones with hours as seconds.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest_asyncio
from temporalio.testing import WorkflowEnvironment

from omnicart.settings import Settings
from tests.support.platform_payloads import SHOPIFY_SECRET, shopify_checkout, shopify_order, shopify_request
from tests.support.runtime import journal
from tests.test_api import signalled
from tests.test_end_to_end import outbox_for, running_product


@pytest_asyncio.fixture
async def shop(dev_env: WorkflowEnvironment, tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, Settings]]:
    async with running_product(dev_env.client, tmp_path, shopify_api_secret=SHOPIFY_SECRET) as running:
        yield running


async def test_a_shopify_checkout_starts_the_flagship_and_a_pos_order_ends_it_as_a_store_conversion(
    shop: tuple[httpx.AsyncClient, Settings], dev_env: WorkflowEnvironment,
) -> None:
    http, settings = shop
    shopify_id = random.randint(10**12, 10**13)
    customer = f"shopify:{shopify_id}"
    body, headers = shopify_request("checkouts/create", shopify_checkout(shopify_id, token=uuid.uuid4().hex))
    started = await http.post("/webhooks/shopify", content=body, headers=headers)
    assert started.status_code == 200 and started.json()["accepted"] == 2, started.text

    [first] = await outbox_for(settings, customer, 1)
    assert (first["channel"], first["template"]) == ("email", "cart_reminder_1")
    assert "IPod Nano - 8GB" in first["html"] and "checkout.local" in first["html"]

    body, headers = shopify_request("orders/create", shopify_order(shopify_id, pos_location=24826418))
    ended = await http.post("/webhooks/shopify", content=body, headers=headers)
    assert ended.status_code == 200 and ended.json()["accepted"] == 1, ended.text
    await asyncio.sleep(6)  # past the 3 s and 5 s touches of the short journey

    assert len(await outbox_for(settings, customer, 1, timeout=0)) == 1
    lines = await journal(dev_env.client, customer)
    assert [line["action"] for line in lines] == ["enter", "send", "convert", "exit"]
    assert lines[-1]["reason"] == "order_placed" and lines[-2]["value"] == 403.0
    [order] = [incoming.event for incoming in await signalled(dev_env.client, customer)
               if incoming.event.type == "order_placed"]
    assert (order.source, order.properties["store_id"]) == ("store", "shopify:24826418")
