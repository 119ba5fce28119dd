"""End to end on the real Temporal dev server: HTTP event in, rendered message out in the outbox.

The real ingest API, the real worker (customer workflow + send activity + ledger + outbox) and a copy
of the flagship journey whose hours are seconds, so the whole journey plays out in a few seconds.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest_asyncio
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from omnicart.api.app import create_app
from omnicart.channels.outbox import read_outbox
from omnicart.settings import Settings
from omnicart.storage import upgrade
from tests.support.bundles import publish_folder
from tests.support.runtime import journal
from tests.support.short_journeys import copy_with_seconds
from tests.support.timelines import cart, profile
from worker import run_worker


@pytest_asyncio.fixture
async def product(dev_env: WorkflowEnvironment, tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, Settings]]:
    """The API and a worker, as ``omnicart dev`` runs them, on a fresh task queue and data folder."""
    async with running_product(dev_env.client, tmp_path) as running:
        yield running


@asynccontextmanager
async def running_product(client: Client, tmp_path: Path, **overrides: Any) -> AsyncIterator[
        tuple[httpx.AsyncClient, Settings]]:
    """The shipped journeys with hours as seconds, published; a worker; the API in process."""
    settings = Settings(
        data_dir=tmp_path / "data",
        journeys_dir=copy_with_seconds(tmp_path / "journeys"),
        task_queue=f"e2e-{uuid.uuid4()}",
        **overrides,
    )
    upgrade(settings.database())
    publish_folder(settings.database(), settings.journeys_dir)
    stop = asyncio.Event()
    worker = asyncio.create_task(run_worker(client, settings, stop))
    app = create_app(settings, client=client)
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://omnicart.test") as http:
                yield http, settings
    finally:
        stop.set()
        await worker


def envelope(customer_id: str, event_type: str, properties: dict[str, Any], source: str = "web") -> dict[str, Any]:
    return {"id": f"evt_{uuid.uuid4().hex}", "type": event_type, "customer_id": customer_id,
            "timestamp": datetime.now(UTC).isoformat(), "source": source, "properties": properties}


async def outbox_for(settings: Settings, customer_id: str, count: int, timeout: float = 30) -> list[dict[str, Any]]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        lines = [line for line in read_outbox(settings.outbox()) if line["customer_id"] == customer_id] \
            if settings.outbox().exists() else []
        if len(lines) >= count or asyncio.get_running_loop().time() > deadline:
            return lines
        await asyncio.sleep(0.2)


async def test_an_abandoned_cart_becomes_email_sms_email_in_the_outbox(
    product: tuple[httpx.AsyncClient, Settings], dev_env: WorkflowEnvironment,
) -> None:
    http, settings = product
    customer = f"cus_{uuid.uuid4().hex[:8]}"
    # Daytime everywhere on Earth is impossible; a zone where it is never quiet is not needed:
    # the short copy has no quiet hours.
    response = await http.post("/v1/events", json={"events": [
        envelope(customer, "customer_updated", profile(timezone="UTC"), source="api"),
        envelope(customer, "checkout_started", cart("cart_e2e")),
    ]})
    assert response.status_code == 202, response.text
    assert response.json() == {"accepted": 2, "duplicates": 0}

    lines = await outbox_for(settings, customer, 3)
    assert [(line["channel"], line["template"]) for line in lines] == [
        ("email", "cart_reminder_1"), ("sms", "cart_reminder_sms"), ("email", "cart_last_chance"),
    ]
    first, sms, last = lines
    assert "Linen shirt" in first["html"] and "$49.50" in first["html"]
    assert "https://shop.example/cart/cart_e2e/restore" in first["html"]
    assert "https://shop.example/cart/cart_e2e/restore" in sms["body"]
    assert "STOP" in sms["body"]
    assert any(ch.isalnum() for ch in last.get("html", "")) and "10%" in last["html"]
    actions = [line["action"] for line in await journal(dev_env.client, customer)]
    assert actions == ["enter", "send", "send", "send", "exit"]


async def test_an_order_mid_journey_stops_every_later_message(
    product: tuple[httpx.AsyncClient, Settings], dev_env: WorkflowEnvironment,
) -> None:
    http, settings = product
    customer = f"cus_{uuid.uuid4().hex[:8]}"
    await http.post("/v1/events", json={"events": [
        envelope(customer, "customer_updated", profile(timezone="UTC"), source="api"),
        envelope(customer, "checkout_started", cart("cart_e2e2")),
    ]})
    assert len(await outbox_for(settings, customer, 1)) == 1
    order = envelope(customer, "order_placed", {"order_id": "o_1", "total": 79.5, "currency": "USD",
                                                "store_id": "store_7"}, source="store")
    assert (await http.post("/v1/events", json=order)).status_code == 202
    await asyncio.sleep(7)  # past the 3 s and 5 s touches of the short journey
    assert len(await outbox_for(settings, customer, 1, timeout=0)) == 1
    lines = [line for line in await journal(dev_env.client, customer)]
    assert [line["action"] for line in lines][-2:] == ["convert", "exit"]
    assert lines[-1]["reason"] == "order_placed" and lines[-2]["value"] == 79.5
