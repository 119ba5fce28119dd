"""The restock and price-drop fan-out on the time-skipping Temporal server, fed through the real ingest API.

A shop posts its catalog and its customers' events to the API; the API applies the catalog, writes
each restock or honest price drop to the fan-out outbox in the same transaction and starts
``CatalogFanoutWorkflow``; one worker runs it with the customers' workflows, as production does. What
a customer "was told" is what their own workflow says: a ``back_in_stock`` or ``price_drop`` run in
their journal. Waves are 15 minutes of virtual time: the server skips them while a test awaits the
fan-out's result, and stands still otherwise.
"""

from __future__ import annotations

import asyncio
import shutil
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Engine, func, select
from temporalio import activity
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.analytics import AnalyticsActivities
from activities.journeys import JourneyActivities
from activities.quarantine import QuarantineActivities
from activities.restock import FanoutActivities
from omnicart.api.app import create_app
from omnicart.catalog.interest import InterestRecorder, interested_strongest_first
from omnicart.catalog.outbox import FanoutStarter, keep_starting_fanouts, unstarted_fanouts
from omnicart.catalog.tables import catalog_fanouts
from omnicart.channels.outbox import read_outbox
from omnicart.events import Event
from omnicart.fanout import (
    DELIVER_ACTIVITY,
    FanoutChange,
    FanoutInput,
    FanoutPage,
    FanoutPageResult,
    FanoutResult,
    fanout_workflow_id,
)
from omnicart.journey.catalog import JourneyCatalog
from omnicart.journey.registry import JourneyRegistry
from omnicart.journey.versions import JourneyVersions
from omnicart.quarantine import QuarantineLog
from omnicart.rendering import render_message, request_context
from omnicart.settings import Settings
from omnicart.storage import get_engine, upgrade
from omnicart.temporal import connect
from tests.support.bundles import JOURNEYS, publish_folder
from tests.support.runtime import RecordingChannel, eventually, journal, parse_at
from tests.support.timelines import profile
from tests.test_api import closed_port, make_settings, serving
from worker import run_worker
from workflows.customer import CustomerWorkflow
from workflows.restock import CatalogFanoutWorkflow
from workflows.sandbox import workflow_runner

WAVE = timedelta(minutes=15)


def fanout_journeys(tmp_path: Path) -> Path:
    """The two shipped fan-out journeys and their templates, without the folder's frequency caps (a
    test about who is told should not depend on what else each customer heard this week)."""
    folder = tmp_path / "journeys"
    (folder / "templates").mkdir(parents=True)
    for name in ("back_in_stock", "price_drop"):
        shutil.copy(JOURNEYS / f"{name}.yaml", folder)
    for template in (JOURNEYS / "templates").glob("*.yaml"):
        if template.name.startswith(("back_in_stock", "price_drop")):
            shutil.copy(template, folder / "templates")
    return folder


@dataclass
class Shop:
    env: WorkflowEnvironment
    settings: Settings
    engine: Engine
    catalog: JourneyCatalog
    channel: RecordingChannel
    http: httpx.AsyncClient
    now: datetime

    def at(self, offset: timedelta = timedelta(0)) -> str:
        return (self.now + offset).isoformat()

    async def post(self, *events: dict[str, Any]) -> httpx.Response:
        response = await self.http.post("/v1/events", json={"events": list(events)})
        assert response.status_code == 202, response.text
        return response

    def product(self, sku: str, *, price: float = 80.0, offset: timedelta = timedelta(0)) -> dict[str, Any]:
        return entity("product_updated", self.at(offset), sku=sku, name=f"Runner {sku}", price=price, currency="USD",
                      url=f"https://shop.example/p/{sku}", image_url=f"https://shop.example/i/{sku}.jpg")

    def stock(self, sku: str, quantity: int, offset: timedelta = timedelta(0)) -> dict[str, Any]:
        return entity("inventory_changed", self.at(offset), sku=sku, location="online", quantity=quantity)

    def interest(self, customer_id: str, kind: str, sku: str, offset: timedelta = timedelta(0)) -> dict[str, Any]:
        properties: dict[str, Any] = {"sku": sku}
        if kind == "cart_updated":
            properties = {"cart_id": f"cart_{customer_id}", "items": [{"sku": sku, "quantity": 1}]}
        return {**entity(kind, self.at(offset), **properties), "customer_id": customer_id, "source": "web"}

    def fanout(self, kind: str, change_id: str) -> Any:
        change = FanoutChange(kind=kind, change_id=change_id, sku="-", at=self.now)
        return self.env.client.get_workflow_handle(fanout_workflow_id(change), result_type=FanoutResult)

    async def result(self, kind: str, change_id: str, waves: int = 0) -> FanoutResult:
        """The fan-out's outcome, after letting ``waves`` wave intervals of virtual time pass."""
        for _ in range(waves):
            await self.env.sleep(WAVE + timedelta(seconds=1))
        result: FanoutResult = await self.fanout(kind, change_id).result()
        return result


def entity(type_: str, timestamp: str, **properties: Any) -> dict[str, Any]:
    return {"id": f"evt_{uuid.uuid4().hex}", "type": type_, "timestamp": timestamp, "source": "api",
            "properties": properties}


async def runs(client: Client, customer_id: str, journey: str) -> list[dict[str, Any]]:
    """The journal lines of ``journey`` in the customer's workflow (none: never told)."""
    return [line for line in await journal(client, customer_id) if line["journey"] == journey]


async def entered(client: Client, customer_id: str, journey: str) -> int:
    return sum(line["action"] == "enter" for line in await runs(client, customer_id, journey))


class RetriedOnce(FanoutActivities):
    """Delivers its first page, then fails that attempt as a worker dying before it reports would:
    Temporal runs the page again, and that retry must tell nobody a second time."""

    @activity.defn(name=DELIVER_ACTIVITY)
    async def deliver_fanout_page(self, page: FanoutPage) -> FanoutPageResult:
        result = await super().deliver_fanout_page(page)
        if activity.info().attempt == 1 and page.cursor is None:
            raise RuntimeError("the worker died after delivering, before reporting")
        return result


@asynccontextmanager
async def shop(env: WorkflowEnvironment, tmp_path: Path, fanouts: type[FanoutActivities] = FanoutActivities,
               **settings: Any) -> AsyncIterator[Shop]:
    """The ingest API and one worker running customers' workflows and the fan-out, on one task queue."""
    folder = fanout_journeys(tmp_path)
    config = make_settings(tmp_path, journeys_dir=folder, fanout_customers_per_unit=2, fanout_page_size=4,
                           **settings)
    engine = get_engine(config.database())
    catalog = JourneyCatalog(folder)
    channel = RecordingChannel()
    client = env.client
    fanout = fanouts(engine, client, config, catalog.all, by_reference=False)
    worker = Worker(
        client,
        task_queue=config.task_queue,
        workflows=[CustomerWorkflow, CatalogFanoutWorkflow],
        activities=[
            channel.send_message,
            QuarantineActivities(QuarantineLog(engine)).record_quarantine,
            JourneyActivities(JourneyVersions(JourneyRegistry(engine))).load_journeys,
            AnalyticsActivities(engine, config.signing_secret).record_analytics,
            fanout.fanout_stock_units,
            fanout.deliver_fanout_page,
        ],
        workflow_runner=workflow_runner(),
    )
    async with worker, serving(create_app(config, client=client, catalog=catalog)) as http:
        now = (await env.get_current_time()).replace(microsecond=0)
        yield Shop(env, config, engine, catalog, channel, http, now)


async def test_a_restock_tells_interested_customers_once_each_strongest_first_paced_by_stock(
    time_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    async with shop(time_env, tmp_path) as s:
        await s.post(s.product("SHOE"), s.stock("SHOE", 0), s.product("HAT"), s.stock("HAT", 0))
        requested = [f"cus_req_{n}" for n in range(2)]
        carted = [f"cus_cart_{n}" for n in range(3)]
        viewed = [f"cus_view_{n}" for n in range(5)]
        await s.post(
            *(s.interest(c, "back_in_stock_requested", "SHOE") for c in requested),
            *(s.interest(c, "cart_updated", "SHOE") for c in carted),
            *(s.interest(c, "product_viewed", "SHOE") for c in viewed),
            s.interest("cus_hat_only", "product_viewed", "HAT"),
            s.interest("cus_long_ago", "product_viewed", "SHOE", offset=-timedelta(days=91)),  # expired
        )
        restock = s.stock("SHOE", 3, offset=timedelta(seconds=1))
        await s.post(restock)
        # Sent again, and a second statement of the same level: neither is a new restock.
        await s.post(restock)
        await s.post(s.stock("SHOE", 3, offset=timedelta(seconds=2)))

        # Wave one: 3 units x 2 customers per unit. Those who asked go first, then carts, then views.
        async def first_wave_told() -> bool:
            told = [c for c in requested + carted + viewed if await entered(time_env.client, c, "back_in_stock")]
            return len(told) == 6
        await eventually(first_wave_told)
        for customer in requested + carted:
            assert await entered(time_env.client, customer, "back_in_stock") == 1, customer
        first_wave = await runs(time_env.client, requested[0], "back_in_stock")

        # Nobody bought: 15 minutes later the next wave tells the rest, then the fan-out ends.
        result = await s.result("restock", restock["id"], waves=1)
        assert (result.told, result.waves, result.stopped) == (10, 2, "everyone_told")
        for customer in requested + carted + viewed:
            assert await entered(time_env.client, customer, "back_in_stock") == 1, customer
        last_wave = await runs(time_env.client, viewed[-1], "back_in_stock")
        assert parse_at(last_wave[0]) - parse_at(first_wave[0]) >= WAVE
        assert await runs(time_env.client, "cus_hat_only", "back_in_stock") == []
        assert await runs(time_env.client, "cus_long_ago", "back_in_stock") == []
        with s.engine.connect() as connection:
            assert connection.execute(select(func.count()).select_from(catalog_fanouts)).scalar_one() == 1
        assert unstarted_fanouts(s.engine) == []


async def test_a_restock_stops_when_the_stock_runs_out_between_waves(
    time_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    async with shop(time_env, tmp_path) as s:
        await s.post(s.product("SHOE"), s.stock("SHOE", 0))
        customers = [f"cus_{n}" for n in range(10)]
        await s.post(*(s.interest(c, "product_viewed", "SHOE") for c in customers))
        restock = s.stock("SHOE", 3, offset=timedelta(seconds=1))
        await s.post(restock)

        async def told() -> int:
            return sum([await entered(time_env.client, c, "back_in_stock") for c in customers])
        await eventually(lambda: _equals(told(), 6))
        await s.post(s.stock("SHOE", 0, offset=timedelta(minutes=5)))  # sold out within the wave

        result = await s.result("restock", restock["id"], waves=1)
        assert (result.told, result.waves, result.stopped) == (6, 1, "out_of_stock")
        assert await told() == 6


async def test_a_retried_page_tells_nobody_twice(time_env: WorkflowEnvironment, tmp_path: Path) -> None:
    async with shop(time_env, tmp_path, fanouts=RetriedOnce) as s:
        await s.post(s.product("SHOE"), s.stock("SHOE", 0))
        customers = [f"cus_{n}" for n in range(6)]
        await s.post(*(s.interest(c, "product_viewed", "SHOE") for c in customers))
        restock = s.stock("SHOE", 100, offset=timedelta(seconds=1))
        await s.post(restock)

        result = await s.result("restock", restock["id"])
        # The first page's four were forwarded by the failed attempt; its retry forwarded none again.
        assert (result.told, result.delivered) == (6, 2)
        for customer in customers:
            assert await entered(time_env.client, customer, "back_in_stock") == 1, customer


async def test_a_price_drop_tells_interested_customers_and_the_email_quotes_the_30_day_lowest_as_was(
    time_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    async with shop(time_env, tmp_path) as s:
        # 100 three weeks ago, 120 last week: the honest "was" is 100, and 85 is 15 % below it.
        await s.post(s.product("SHOE", price=100.0, offset=-timedelta(days=21)))
        await s.post(entity("price_changed", s.at(-timedelta(days=7)), sku="SHOE", price=120.0, currency="USD"))
        await s.post(*(s.interest(c, "customer_updated", "SHOE") | {"properties": profile(sms=False)}
                       for c in ("cus_ada", "cus_bob")))
        await s.post(s.interest("cus_ada", "product_viewed", "SHOE"), s.interest("cus_bob", "cart_updated", "SHOE"),
                     s.interest("cus_cy", "product_viewed", "OTHER"))
        drop = entity("price_changed", s.at(timedelta(seconds=1)), sku="SHOE", price=85.0, currency="USD")
        await s.post(drop)

        result = await s.result("price_drop", drop["id"])
        assert (result.told, result.stopped) == (2, "everyone_told")

        async def emailed() -> bool:
            return len(s.channel.requests) == 2
        await eventually(emailed)
        bodies = []
        for request in s.channel.requests:
            assert (request.journey, request.channel) == ("price_drop", "email")
            template = s.catalog.all()["price_drop"].templates[request.template_name]
            context = request_context(request, template, unsubscribe_url="https://shop.example/u")
            bodies.append(render_message(template, context).html or "")
        assert all("Now $85.00, was $100.00" in body for body in bodies), bodies[0]
        assert await runs(time_env.client, "cus_cy", "price_drop") == []


async def test_a_small_price_drop_is_told_but_the_journey_does_not_speak(
    time_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    async with shop(time_env, tmp_path) as s:
        await s.post(s.product("SHOE", price=100.0, offset=-timedelta(days=3)))
        await s.post(s.interest("cus_ada", "product_viewed", "SHOE"))
        drop = entity("price_changed", s.at(timedelta(seconds=1)), sku="SHOE", price=95.0, currency="USD")
        await s.post(drop)

        result = await s.result("price_drop", drop["id"])
        assert result.told == 1  # an honest drop, but 5 % is under the journey's 10 %
        assert await runs(time_env.client, "cus_ada", "price_drop") == []


async def test_a_long_fanout_continues_as_new_carrying_its_cursor_and_tells_each_customer_once(
    time_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    async with shop(time_env, tmp_path) as s:
        customers = [f"cus_{n}" for n in range(9)]
        await s.post(s.product("SHOE"), *(s.interest(c, "product_viewed", "SHOE") for c in customers))
        change = FanoutChange(kind="price_drop", change_id="drop_1", sku="SHOE", at=s.now, price=40.0,
                              reference_price=80.0, currency="USD")
        # Two customers a page and a history bound of 12 events: a new run every few pages.
        result = await time_env.client.execute_workflow(
            CatalogFanoutWorkflow.run, FanoutInput(change=change, page_size=2, max_history_events=12),
            id=fanout_workflow_id(change), task_queue=s.settings.task_queue)
        assert (result.told, result.stopped) == (9, "everyone_told")
        assert result.continued >= 2
        for customer in customers:
            assert await entered(time_env.client, customer, "price_drop") == 1, customer


async def test_a_fanout_whose_start_failed_at_ingest_is_started_by_the_sweep(
    time_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    async with shop(time_env, tmp_path) as s:
        await s.post(s.product("SHOE"), s.stock("SHOE", 0))
        await s.post(*(s.interest(f"cus_{n}", "product_viewed", "SHOE") for n in range(3)))
        restock = s.stock("SHOE", 5, offset=timedelta(seconds=1))
        # The same database, but an API process whose Temporal is unreachable: the restock is
        # applied and answered as any catalog event is; its fan-out waits in the outbox.
        down = await connect(target_host=f"127.0.0.1:{closed_port()}", lazy=True)
        async with serving(create_app(s.settings, client=down, catalog=s.catalog)) as outage:
            response = await outage.post("/v1/events", json=restock)
        assert response.status_code == 202, response.text
        [waiting] = unstarted_fanouts(s.engine)
        assert (waiting.kind, waiting.change_id, waiting.sku) == ("restock", restock["id"], "SHOE")

        stop = asyncio.Event()
        sweep = asyncio.create_task(keep_starting_fanouts(FanoutStarter(s.engine, s.env.client, s.settings), 3600,
                                                          stop))
        await eventually(lambda: _equals(asyncio.to_thread(unstarted_fanouts, s.engine), []))
        stop.set()
        await sweep
        result = await s.result("restock", restock["id"])
        assert (result.told, result.stopped) == (3, "everyone_told")
        for n in range(3):
            assert await entered(time_env.client, f"cus_{n}", "back_in_stock") == 1


def test_interest_pages_strongest_first_by_key_across_reasons(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    engine = get_engine(settings.database())
    recorder = InterestRecorder(engine, settings.signing_secret, timedelta(days=90))
    now = datetime.fromisoformat("2026-11-20T10:00:00+00:00")
    kinds = {"requested": "back_in_stock_requested", "carted": "cart_updated", "viewed": "product_viewed"}
    people = {"viewed": ["v1", "v2", "v3"], "requested": ["r1", "r2"], "carted": ["c1"]}
    events = []
    for reason, customers in people.items():
        for customer in customers:
            properties: dict[str, Any] = ({"cart_id": "c", "items": [{"sku": "SKU"}]} if reason == "carted"
                                          else {"sku": "SKU"})
            events.append(Event(id=f"{customer}-e", type=kinds[reason], customer_id=customer, timestamp=now,
                                source="web", properties=properties))
    recorder.record(events)
    for size in (1, 2, 3, 6, 7):
        seen: list[tuple[str, str]] = []
        cursor: str | None = None
        while True:
            page = interested_strongest_first(engine, "SKU", cursor, size, now)
            seen += [(c.reason, c.customer_id) for c in page.customers]
            cursor = page.next_cursor
            if cursor is None:
                break
        assert [reason for reason, _ in seen] == ["requested"] * 2 + ["carted"] + ["viewed"] * 3, size
        assert sorted(customer for _, customer in seen) == sorted(c for group in people.values() for c in group), size


async def _equals(value: Any, expected: Any) -> bool:
    return bool(await value == expected)


async def test_the_production_worker_runs_the_fanout_and_the_back_in_stock_email_reaches_the_outbox(
    dev_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    """``worker.run_worker`` (what ``omnicart dev`` and production run) registers the fan-out, and the
    shipped journey falls back from push and SMS to email for a customer who only agreed to email,
    naming the store the restock reached."""
    settings = Settings(data_dir=tmp_path / "data", journeys_dir=JOURNEYS, task_queue=f"fanout-{uuid.uuid4()}")
    upgrade(settings.database())
    publish_folder(settings.database(), JOURNEYS)
    stop = asyncio.Event()
    worker = asyncio.create_task(run_worker(dev_env.client, settings, stop))
    try:
        async with serving(create_app(settings, client=dev_env.client)) as http:
            now = datetime.now(UTC).replace(microsecond=0)

            async def post(*events: dict[str, Any]) -> None:
                response = await http.post("/v1/events", json={"events": list(events)})
                assert response.status_code == 202, response.text
            await post(entity("store_updated", (now - timedelta(minutes=5)).isoformat(), store_id="london_soho",
                              name="Soho", address="12 Carnaby St, London", timezone="Europe/London",
                              latitude=51.5129, longitude=-0.1389),
                       entity("product_updated", (now - timedelta(minutes=5)).isoformat(), sku="BOOT",
                              name="Trail boot", price=120.0, currency="EUR", url="https://shop.example/p/boot"),
                       entity("inventory_changed", (now - timedelta(minutes=5)).isoformat(), sku="BOOT",
                              location="online", quantity=0))
            customer = f"cus_{uuid.uuid4().hex[:8]}"
            await post({**entity("customer_updated", now.isoformat(), **profile(sms=False, timezone="UTC")),
                        "customer_id": customer},
                       {**entity("back_in_stock_requested", now.isoformat(), sku="BOOT"), "customer_id": customer})
            await post(entity("inventory_changed", (now + timedelta(seconds=1)).isoformat(), sku="BOOT",
                              location="london_soho", quantity=2))

            async def emailed() -> bool:
                lines = read_outbox(settings.outbox()) if settings.outbox().exists() else []
                return any(line["customer_id"] == customer for line in lines)
            await eventually(emailed, timeout=60)
        [line] = [line for line in read_outbox(settings.outbox()) if line["customer_id"] == customer]
        assert (line["journey"], line["channel"], line["template"]) == ("back_in_stock", "email",
                                                                       "back_in_stock_email")
        assert line["subject"] == "Trail boot is back in stock"
        assert "€120.00" in line["html"]
        # The store that has it, with its address and a pick-up link (the product page: no OMNICART_PICKUP_URL).
        assert "In stock now at Soho, 12 Carnaby St, London" in line["html"]
        assert 'href="https://shop.example/p/boot' in line["html"].split("In stock now at Soho", 1)[1]
    finally:
        stop.set()
        await worker
