"""Identity as the product runs it, on the real Temporal dev server: the HTTP API, the real worker
(``worker.run_worker``: the hand-over activity registered, journeys by version from the registry),
the outbox, and the flagship whose hours are seconds."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from temporalio.testing import WorkflowEnvironment

from omnicart.privacy.forget import forget_customer
from omnicart.settings import Settings
from tests.support.runtime import journal
from tests.support.timelines import cart, profile
from tests.test_end_to_end import envelope, outbox_for, product  # noqa: F401  (product: a fixture)


def anonymous(anonymous_id: str, event_type: str, properties: dict[str, Any]) -> dict[str, Any]:
    body = envelope("", event_type, properties)
    del body["customer_id"]
    return {**body, "anonymous_id": anonymous_id}


async def test_an_anonymous_checkout_reaches_the_customer_who_logs_in_through_the_outbox(
    product: tuple[httpx.AsyncClient, Settings], dev_env: WorkflowEnvironment,  # noqa: F811
) -> None:
    http, settings = product
    customer, cookie = f"cus_{uuid.uuid4().hex[:8]}", f"ck_{uuid.uuid4().hex[:8]}"
    response = await http.post("/v1/events", json={"events": [
        anonymous(cookie, "product_viewed", {"sku": "SKU-1", "name": "Linen shirt"}),
        anonymous(cookie, "checkout_started", cart("cart_anon")),
    ]})
    assert response.status_code == 202, response.text
    login = {**envelope(customer, "customer_updated", profile(timezone="UTC"), source="api"), "anonymous_id": cookie}
    response = await http.post("/v1/events", json=login)
    assert response.status_code == 202, response.text

    lines = await outbox_for(settings, customer, 3)
    assert [(line["channel"], line["template"]) for line in lines] == [
        ("email", "cart_reminder_1"), ("sms", "cart_reminder_sms"), ("email", "cart_last_chance"),
    ]
    assert "https://shop.example/cart/cart_anon/restore" in lines[0]["html"]
    actions = [line["action"] for line in await journal(dev_env.client, customer)]
    assert actions == ["enter", "send", "send", "send", "exit"]

    report = await forget_customer(dev_env.client, settings, customer)
    assert (report.identity_links_deleted, report.visitor_keys_deleted) == (1, 1)  # the visitor's history too

    neither = await http.post("/v1/events", json={**envelope("", "product_viewed", {"sku": "S"})})
    assert neither.status_code == 422
    assert "customer_id" in neither.text
