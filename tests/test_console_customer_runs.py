"""A customer's page asks the customer's own workflow (its ``state`` query, on the real Temporal dev
server) which journeys they are in and at which step, and shows their carts beside the profile the
projection keeps and the events the event log has."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from temporalio.testing import WorkflowEnvironment

from omnicart.api.event_log import EventLog
from omnicart.console.app import create_console_app
from omnicart.customers.projection import ProfileProjection
from omnicart.storage import get_engine
from tests.console_support import CSRF, PASSWORD, console_settings, published_product
from tests.support.bundles import flagship
from tests.support.runtime import RecordingChannel, customer_worker, eventually, journal, send_event
from tests.support.timelines import Timeline, cart, profile


async def test_the_customer_page_shows_the_run_and_the_step_it_waits_at(
    dev_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    settings = console_settings(tmp_path)
    published_product(settings)
    customer = f"cus_{uuid.uuid4().hex[:8]}"
    timeline = Timeline("console", [(timedelta(0), "customer_updated", "api", profile()),
                                    (timedelta(minutes=1), "checkout_started", "web", cart("cart_7"))])
    events = timeline.events(datetime.now(UTC) - timedelta(minutes=5), customer)
    engine = get_engine(settings.database())
    EventLog(engine).record(events)
    ProfileProjection(engine, settings.signing_secret).record(events)

    async with customer_worker(dev_env.client, [RecordingChannel().send_message]) as task_queue:
        for event in events:
            await send_event(dev_env.client, task_queue, event, [flagship()])

        async def entered() -> bool:
            return any(line["action"] == "enter" for line in await journal(dev_env.client, customer))

        await eventually(entered)
        app = create_console_app(settings, client=dev_env.client)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://console") as browser:
            token = CSRF.search((await browser.get("/login")).text)
            assert token is not None
            await browser.post("/login", data={"username": "viewer", "password": PASSWORD,
                                               "csrf_token": token.group(1)})
            page = (await browser.get(f"/customers/{customer}")).text

    runs = page[page.index('id="runs"'):page.index('id="carts"')]
    assert "abandoned_cart" in runs and "<td>step_1</td>" in runs  # the wait of an hour before the first email
    carts = page[page.index('id="carts"'):]
    assert "cart_7" in carts.split("</table>")[0]
    timeline_rows = page[page.index('id="timeline"'):]
    assert "checkout_started" in timeline_rows and "customer_updated" in timeline_rows
    assert "ada@example.com" in page  # the profile, from the projection
