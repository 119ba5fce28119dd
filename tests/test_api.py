"""The ingest API against the real Temporal dev server, as a shop's system would drive it.

No worker runs on these tests' task queue: what a producer relies on is that an accepted event is
in its customer's workflow (the signal in the workflow's history), and that a refused one is not.
"""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from omnicart.api.app import create_app
from omnicart.api.event_log import EventLog
from omnicart.journey.catalog import JourneyCatalog
from omnicart.routing import customer_workflow_id
from omnicart.settings import Settings
from omnicart.signals import EVENT_SIGNAL, IncomingEvent
from omnicart.storage import get_engine, upgrade
from omnicart.temporal import connect

ROOT = Path(__file__).resolve().parent.parent


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": tmp_path,
        "database_url": f"sqlite:///{tmp_path / 'omnicart.db'}",
        "journeys_dir": ROOT / "journeys",
        "task_queue": f"api-test-{uuid.uuid4()}",
        "api_token": None,
        **overrides,
    }
    settings = Settings(**values)
    upgrade(settings.database())
    return settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path, max_body_bytes=20_000, max_batch_events=10)


@pytest.fixture(scope="module")
def catalog() -> JourneyCatalog:
    return JourneyCatalog(ROOT / "journeys")


@asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client talking to the app in-process, with the app's start-up and shutdown run."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://omnicart.test") as http:
            yield http


@pytest.fixture
async def api(
    settings: Settings, dev_env: WorkflowEnvironment, catalog: JourneyCatalog
) -> AsyncIterator[httpx.AsyncClient]:
    async with serving(create_app(settings, client=dev_env.client, catalog=catalog)) as http:
        yield http


def customer() -> str:
    return f"cus_{uuid.uuid4().hex[:12]}"


def envelope(customer_id: str | None = None, **overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "id": f"evt_{uuid.uuid4().hex}",
        "type": "checkout_started",
        "customer_id": customer_id or customer(),
        "timestamp": "2026-11-22T10:00:00+03:00",
        "source": "web",
        "properties": {
            "cart_id": "cart_7",
            "items": [{"sku": "MUG-1", "name": "Mug", "quantity": 1, "price": 12.5}],
            "total": 12.5,
            "currency": "EUR",
            "restore_url": "https://shop.example/cart/7",
        },
    }
    event.update(overrides)
    return event


async def signalled(client: Client, customer_id: str) -> list[IncomingEvent]:
    """Every event the customer's workflow has received, read from its history."""
    history = await client.get_workflow_handle(customer_workflow_id(customer_id)).fetch_history()
    received: list[IncomingEvent] = []
    for event in history.events:
        if event.event_type != EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
            continue
        attributes = event.workflow_execution_signaled_event_attributes
        assert attributes.signal_name == EVENT_SIGNAL
        [batch] = await client.data_converter.decode(attributes.input.payloads, [list[IncomingEvent]])
        received += batch
    return received


async def has_workflow(client: Client, customer_id: str) -> bool:
    try:
        await client.get_workflow_handle(customer_workflow_id(customer_id)).describe()
    except RPCError:
        return False
    return True


def event_log(settings: Settings) -> EventLog:
    return EventLog(get_engine(settings.database()))


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def test_one_event_is_accepted_and_reaches_its_customers_workflow(
    api: httpx.AsyncClient, dev_env: WorkflowEnvironment, settings: Settings
) -> None:
    event = envelope()

    response = await api.post("/v1/events", json=event)

    assert response.status_code == 202
    assert response.json() == {"accepted": 1, "duplicates": 0}
    [incoming] = await signalled(dev_env.client, event["customer_id"])
    assert incoming.event.id == event["id"]
    assert incoming.event.properties["cart_id"] == "cart_7"
    assert "abandoned_cart" in [bundle.journey.name for bundle in incoming.journeys if not isinstance(bundle, str)]
    logged = event_log(settings).get(event["id"])
    assert logged is not None and logged.forwarded and logged.customer_id == event["customer_id"]


async def test_only_journeys_the_event_type_triggers_are_attached(
    api: httpx.AsyncClient, dev_env: WorkflowEnvironment
) -> None:
    event = envelope(type="product_viewed", properties={"sku": "SKU-1"})

    assert (await api.post("/v1/events", json=event)).status_code == 202

    [incoming] = await signalled(dev_env.client, event["customer_id"])
    # A view starts the browse journey only: not the cart journey, nor the date-triggered ones.
    assert [bundle.journey.name for bundle in incoming.journeys if not isinstance(bundle, str)] == [
        "browse_abandonment"]


async def test_a_batch_reaches_each_customer_in_batch_order(
    api: httpx.AsyncClient, dev_env: WorkflowEnvironment
) -> None:
    ana, ben = customer(), customer()
    batch = [envelope(ana), envelope(ben), envelope(ana), envelope(ben), envelope(ana)]

    response = await api.post("/v1/events", json={"events": batch})

    assert response.status_code == 202
    assert response.json() == {"accepted": 5, "duplicates": 0}
    ana_ids = [incoming.event.id for incoming in await signalled(dev_env.client, ana)]
    ben_ids = [incoming.event.id for incoming in await signalled(dev_env.client, ben)]
    assert ana_ids == [batch[0]["id"], batch[2]["id"], batch[4]["id"]]
    assert ben_ids == [batch[1]["id"], batch[3]["id"]]


async def test_duplicates_are_counted_across_requests_and_inside_a_batch_and_never_forwarded_twice(
    api: httpx.AsyncClient, dev_env: WorkflowEnvironment
) -> None:
    who = customer()
    first, second = envelope(who), envelope(who)

    assert (await api.post("/v1/events", json=first)).json() == {"accepted": 1, "duplicates": 0}
    response = await api.post("/v1/events", json={"events": [first, second, second]})
    again = await api.post("/v1/events", json=second)

    assert response.status_code == 202
    assert response.json() == {"accepted": 1, "duplicates": 2}
    assert again.json() == {"accepted": 0, "duplicates": 1}
    ids = [incoming.event.id for incoming in await signalled(dev_env.client, who)]
    assert ids == [first["id"], second["id"]]


async def test_the_same_event_sent_concurrently_is_accepted_once(
    api: httpx.AsyncClient, dev_env: WorkflowEnvironment
) -> None:
    event = envelope()

    responses = await asyncio.gather(*(api.post("/v1/events", json=event) for _ in range(4)))

    assert sorted(r.json()["accepted"] for r in responses) == [0, 0, 0, 1]
    assert sum(r.json()["duplicates"] for r in responses) == 3
    assert len(await signalled(dev_env.client, event["customer_id"])) == 1


def _bad_events() -> list[tuple[str, Any, str, str]]:
    """(case, bad envelope, field the answer must name, words the message must contain)."""
    return [
        ("timestamp without offset", envelope(timestamp="2026-11-22T10:00:00"), "timestamp", "offset"),
        ("unknown source", envelope(source="fax"), "source", "'web'"),
        (
            "bad phone",
            envelope(type="customer_updated", properties={"phone": "0612345678"}),
            "properties.phone",
            "E.164",
        ),
        ("type not snake_case", envelope(type="CheckoutStarted"), "type", "snake_case"),
        (
            "missing field",
            {k: v for k, v in envelope().items() if k != "customer_id"},
            "customer_id",
            "required",
        ),
        ("extra top-level key", {**envelope(), "user": "ana"}, "user", "properties"),
        (
            "negative price in an item",
            envelope(properties={"cart_id": "c", "items": [{"sku": "A", "price": -1}]}),
            "properties.items[0].price",
            "greater than or equal to 0",
        ),
        ("event that is not an object", "evt_1", "envelope", "dictionary"),
        ("type outside the tracking plan", envelope(type="zzz_qqq"), "type", "not in the tracking plan"),
        ("customer id that is not an id", envelope(customer_id="*"), "customer_id", "letter or digit"),
    ]


@pytest.mark.parametrize(
    ("bad", "field", "words"),
    [case[1:] for case in _bad_events()],
    ids=[case[0] for case in _bad_events()],
)
async def test_a_malformed_event_is_refused_with_its_index_and_field_and_nothing_is_applied(
    api: httpx.AsyncClient,
    dev_env: WorkflowEnvironment,
    settings: Settings,
    bad: Any,
    field: str,
    words: str,
) -> None:
    good = envelope()

    response = await api.post("/v1/events", json={"events": [good, bad]})

    assert response.status_code == 422
    errors = response.json()["errors"]
    assert {"index": 1, "field": field} in [{"index": e["index"], "field": e["field"]} for e in errors]
    assert words in next(e["message"] for e in errors if e["field"] == field)
    assert all(e["index"] == 1 for e in errors)
    assert event_log(settings).get(good["id"]) is None
    assert not await has_workflow(dev_env.client, good["customer_id"])


async def test_a_catalog_event_needs_no_customer_and_starts_no_workflow(
    api: httpx.AsyncClient, dev_env: WorkflowEnvironment, settings: Settings
) -> None:
    product = envelope(type="price_changed", properties={"sku": "MUG-1", "price": 9.5})
    del product["customer_id"]

    response = await api.post("/v1/events", json=product)

    assert response.status_code == 202, response.text
    assert response.json() == {"accepted": 1, "duplicates": 0}
    assert not await has_workflow(dev_env.client, "")
    logged = event_log(settings).get(product["id"])
    assert logged is not None and logged.forwarded


async def test_every_malformed_event_of_a_batch_is_named(api: httpx.AsyncClient) -> None:
    batch = [envelope(source="fax"), envelope(), envelope(timestamp="yesterday", type="Bad")]

    response = await api.post("/v1/events", json={"events": batch})

    assert response.status_code == 422
    named = sorted((e["index"], e["field"]) for e in response.json()["errors"])
    assert named == [(0, "source"), (2, "timestamp"), (2, "type")]


async def test_a_producer_cannot_send_the_schedules_date_reached_event(api: httpx.AsyncClient) -> None:
    """It would start whatever date journey it names, whenever a caller liked: only the schedule sends it."""
    forged = envelope(type="date_reached", properties={"journey": "birthday", "due_at": "2026-11-22T10:00:00Z"})
    response = await api.post("/v1/events", json={"events": [envelope(), forged]})
    assert response.status_code == 422
    assert response.json()["errors"] == [{
        "index": 1, "field": "type",
        "message": "'date_reached' is sent by omnicart's date-trigger schedule, never by a producer"}]


async def test_a_single_malformed_envelope_is_index_0(api: httpx.AsyncClient) -> None:
    response = await api.post("/v1/events", json=envelope(type="customer_updated", properties={"email": "ana"}))

    assert response.status_code == 422
    assert response.json() == {
        "errors": [{"index": 0, "field": "properties.email", "message": "is not an email address"}]
    }


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        (b'{"id": "evt_1", "type": ', "body", "invalid JSON"),
        (b"\xff\xfe not json", "body", "invalid JSON"),
        (b"[]", "body", "expected one event envelope"),
        (b'"checkout_started"', "body", "expected one event envelope"),
        (b'{"events": {"id": "evt_1"}}', "events", "must be a list"),
        (b'{"events": [], "shop": "x"}', "shop", "beside"),
    ],
    ids=["truncated JSON", "not UTF-8", "a list", "a string", "events not a list", "key beside events"],
)
async def test_a_body_of_the_wrong_shape_is_refused(
    api: httpx.AsyncClient, body: bytes, field: str, words: str
) -> None:
    response = await api.post("/v1/events", content=body, headers={"content-type": "application/json"})

    assert response.status_code == 422
    [error] = response.json()["errors"]
    assert error["index"] is None
    assert error["field"] == field
    assert words in error["message"]


async def test_an_oversized_body_is_refused_with_413(
    api: httpx.AsyncClient, settings: Settings, dev_env: WorkflowEnvironment
) -> None:
    event = envelope(properties={"cart_id": "c", "note": "x" * settings.max_body_bytes})

    response = await api.post("/v1/events", json=event)

    assert response.status_code == 413
    assert response.json()["errors"][0]["field"] == "body"
    assert event_log(settings).get(event["id"]) is None
    assert not await has_workflow(dev_env.client, event["customer_id"])


async def test_a_chunked_body_cannot_slip_past_the_size_limit(api: httpx.AsyncClient, settings: Settings) -> None:
    def chunked(payload: bytes) -> Callable[[], AsyncIterator[bytes]]:
        async def chunks() -> AsyncIterator[bytes]:
            for start in range(0, len(payload), 1000):
                yield payload[start : start + 1000]

        return chunks

    big = envelope(properties={"cart_id": "c", "note": "x" * settings.max_body_bytes})
    small = envelope()

    refused = await api.post("/v1/events", content=chunked(json.dumps(big).encode())())
    accepted = await api.post("/v1/events", content=chunked(json.dumps(small).encode())())

    assert refused.request.headers.get("transfer-encoding") == "chunked"
    assert "content-length" not in refused.request.headers
    assert refused.status_code == 413
    assert event_log(settings).get(big["id"]) is None
    assert accepted.status_code == 202


async def test_a_batch_over_the_event_limit_is_refused_with_413(api: httpx.AsyncClient, settings: Settings) -> None:
    batch = [envelope() for _ in range(settings.max_batch_events + 1)]

    response = await api.post("/v1/events", json={"events": batch})

    assert response.status_code == 413
    assert response.json()["errors"][0]["field"] == "events"
    assert all(event_log(settings).get(event["id"]) is None for event in batch)


async def test_with_a_token_configured_only_the_right_bearer_token_gets_in(
    tmp_path: Path, dev_env: WorkflowEnvironment, catalog: JourneyCatalog
) -> None:
    settings = make_settings(tmp_path, api_token=SecretStr("s3cret-token"))
    app = create_app(settings, client=dev_env.client, catalog=catalog)
    event = envelope()

    async with serving(app) as http:
        missing = await http.post("/v1/events", json=event)
        wrong = await http.post("/v1/events", json=event, headers={"Authorization": "Bearer s3cret-tokem"})
        basic = await http.post("/v1/events", json=event, headers={"Authorization": "Basic czNjcmV0LXRva2Vu"})
        assert event_log(settings).get(event["id"]) is None
        right = await http.post("/v1/events", json=event, headers={"Authorization": "Bearer s3cret-token"})
        health = await http.get("/healthz")

    assert [missing.status_code, wrong.status_code, basic.status_code] == [401, 401, 401]
    assert missing.headers["www-authenticate"] == "Bearer"
    assert right.status_code == 202
    assert right.json() == {"accepted": 1, "duplicates": 0}
    assert health.status_code == 200


async def test_healthz_answers_200_when_temporal_answers(api: httpx.AsyncClient) -> None:
    response = await api.get("/healthz")

    assert response.status_code == 200


async def test_healthz_answers_503_when_temporal_is_unreachable(settings: Settings, catalog: JourneyCatalog) -> None:
    down = await connect(target_host=f"127.0.0.1:{closed_port()}", lazy=True)

    async with serving(create_app(settings, client=down, catalog=catalog)) as http:
        response = await http.get("/healthz")

    assert response.status_code == 503


async def test_an_event_refused_while_temporal_was_down_is_accepted_on_retry(
    settings: Settings, dev_env: WorkflowEnvironment, catalog: JourneyCatalog
) -> None:
    event = envelope()
    down = await connect(target_host=f"127.0.0.1:{closed_port()}", lazy=True)

    async with serving(create_app(settings, client=down, catalog=catalog)) as http:
        outage = await http.post("/v1/events", json=event)
    logged = event_log(settings).get(event["id"])
    # The API comes back (a restart, or another process) on the same database.
    async with serving(create_app(settings, client=dev_env.client, catalog=catalog)) as http:
        retry = await http.post("/v1/events", json=event)
        repeat = await http.post("/v1/events", json=event)

    assert outage.status_code == 503
    assert outage.headers["retry-after"]
    assert logged is not None and not logged.forwarded
    assert retry.status_code == 202
    assert retry.json() == {"accepted": 1, "duplicates": 0}
    assert repeat.json() == {"accepted": 0, "duplicates": 1}
    assert [i.event.id for i in await signalled(dev_env.client, event["customer_id"])] == [event["id"]]


async def test_without_a_client_the_api_connects_to_the_temporal_the_environment_names(
    settings: Settings, dev_env: WorkflowEnvironment, catalog: JourneyCatalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEMPORAL_ADDRESS", dev_env.client.service_client.config.target_host)
    event = envelope()

    async with serving(create_app(settings, catalog=catalog)) as http:
        health = await http.get("/healthz")
        response = await http.post("/v1/events", json=event)

    assert health.status_code == 200
    assert response.status_code == 202
    assert len(await signalled(dev_env.client, event["customer_id"])) == 1


async def test_the_openapi_document_describes_the_events_endpoint(api: httpx.AsyncClient) -> None:
    spec = (await api.get("/openapi.json")).json()
    docs = await api.get("/docs")

    operation = spec["paths"]["/v1/events"]["post"]
    body = operation["requestBody"]["content"]["application/json"]["schema"]
    assert {"$ref": "#/components/schemas/Event"} in body["oneOf"]
    assert {"202", "401", "413", "422", "503"} <= set(operation["responses"])
    assert set(spec["components"]["schemas"]["Event"]["properties"]) >= {"id", "timestamp", "source"}
    assert docs.status_code == 200



@pytest.mark.parametrize(("kind", "sender"), [("back_in_stock", "omnicart's restock fan-out"),
                                              ("price_dropped", "omnicart's price-drop fan-out")])
async def test_a_producer_cannot_send_the_fanouts_customer_events(
    api: httpx.AsyncClient, dev_env: WorkflowEnvironment, kind: str, sender: str
) -> None:
    """They would start the back-in-stock or price-drop journey for anyone, about anything: only the
    fan-out, which checked the stock or the 30-day price history, sends them."""
    forged = envelope(type=kind, properties={"sku": "SHOE-42", "price": 1.0, "reference_price": 100.0,
                                             "drop_percent": 99.0})

    response = await api.post("/v1/events", json=forged)

    assert response.status_code == 422
    assert response.json()["errors"] == [{
        "index": 0, "field": "type", "message": f"'{kind}' is sent by {sender}, never by a producer"}]
    assert not await has_workflow(dev_env.client, forged["customer_id"])
