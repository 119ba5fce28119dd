"""Nothing the ingest API accepts can wedge a customer, and no body gets a 500.

One regression test per attack class an attacker-style test found: each event here was once either
accepted (and then failed in the worker for ever) or answered ``500`` (sometimes with half a batch
applied). Each must now be a ``422`` naming the event's index and field, with nothing of the batch
recorded or forwarded. Plus: a forwarding failure of any kind is a ``503`` that loses nothing, and
one customer's 1,000-event batch reaches its workflow in signals under the size budget.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import EventType
from temporalio.testing import WorkflowEnvironment

from omnicart.api.app import create_app
from omnicart.journey.catalog import JourneyCatalog
from omnicart.journey.model import JourneyBundle
from omnicart.limits import MAX_SAFE_INTEGER, SIGNAL_BUDGET_BYTES
from omnicart.routing import customer_workflow_id
from omnicart.settings import Settings
from omnicart.signals import EVENT_SIGNAL
from omnicart.storage import get_engine
from tests.support.runtime import RecordingChannel, customer_worker, eventually
from tests.test_api import customer, envelope, event_log, has_workflow, make_settings, serving, signalled


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)  # the shipped limits: 1 MB bodies, 1,000-event batches


@pytest.fixture(scope="module")
def catalog() -> JourneyCatalog:
    return JourneyCatalog(Path(__file__).resolve().parent.parent / "journeys")


@pytest.fixture
async def api(
    settings: Settings, dev_env: WorkflowEnvironment, catalog: JourneyCatalog
) -> AsyncIterator[httpx.AsyncClient]:
    async with serving(create_app(settings, client=dev_env.client, catalog=catalog)) as http:
        yield http


def nested(depth: int) -> Any:
    value: Any = "bottom"
    for _ in range(depth):
        value = {"a": value}
    return value


def cart(**extra: Any) -> dict[str, Any]:
    return {"cart_id": "cart_7", "items": [{"sku": "MUG-1", "price": 12.5}], **extra}


def raw_batch(good: dict[str, Any], bad_json: str) -> bytes:
    """A batch of a good event then a bad one written as raw JSON text (what json.dumps cannot write)."""
    return f'{{"events": [{json.dumps(good)}, {bad_json}]}}'.encode()


def raw_event(properties_json: str, **overrides: Any) -> str:
    event = envelope(**overrides)
    event["properties"] = "__PROPERTIES__"
    return json.dumps(event).replace('"__PROPERTIES__"', properties_json)


ATTACKS: list[tuple[str, str, str, str]] = [
    # (case, second event of the batch as raw JSON, field the answer names, words in the message)
    ("nested 200 deep", raw_event(json.dumps(cart(x=nested(200)))), "properties.x" + ".a" * 15, "nests deeper"),
    (
        "nested 1200 deep (RecursionError)",
        raw_event('{"cart_id": "c", "x": ' + "[" * 1200 + "]" * 1200 + "}"),
        "body",
        "nested deeper",
    ),
    ("integer of 5,000 digits", raw_event('{"cart_id": "c", "n": ' + "9" * 5000 + "}"), "properties.n", "2^53"),
    ("integer past 2^53", raw_event(json.dumps(cart(n=MAX_SAFE_INTEGER + 1))), "properties.n", "2^53"),
    ("lone surrogate", raw_event('{"cart_id": "c", "note": "a\\ud800b"}'), "properties.note", "surrogate"),
    ("surrogate in a key", raw_event('{"cart_id": "c", "\\udfff": 1}'), "properties.\\udfff", "surrogate"),
    ("NUL in a value", raw_event('{"cart_id": "c", "note": "a\\u0000"}'), "properties.note", "control character"),
    ("total: Infinity", raw_event('{"cart_id": "c", "total": Infinity}'), "properties.total", "finite"),
    ("1e999", raw_event('{"cart_id": "c", "items": [{"sku": "A", "price": 1e999}]}'), "properties.items[0].price",
     "finite"),
    ("NaN", raw_event('{"cart_id": "c", "score": NaN}'), "properties.score", "finite"),
    ("calendar's first moment", json.dumps(envelope(timestamp="0001-01-01T00:00:00+00:01")), "timestamp", "range"),
    ("calendar's last moment", json.dumps(envelope(timestamp="9999-12-31T23:59:59-00:01")), "timestamp", "range"),
    ("before 1970", json.dumps(envelope(timestamp="1969-12-31T23:59:59Z")), "timestamp", "between"),
    (
        "900 KB first_name",
        json.dumps(envelope(type="customer_updated", properties={"first_name": "A" * 900_000})),
        "properties.first_name",
        "8,192",
    ),
    ("long first_name", json.dumps(envelope(type="customer_updated", properties={"first_name": "A" * 300})),
     "properties.first_name", "at most 200"),
    ("time zone that is a directory", json.dumps(envelope(type="customer_updated", properties={"timezone": "America"})),
     "properties.timezone", "IANA time zone"),
    ("event over 32 KiB", json.dumps(envelope(properties=cart(notes=["n" * 8000] * 5))), "envelope", "32,768"),
    ("501 items", json.dumps(envelope(properties=cart(items=[{"sku": "A"}] * 501))), "properties.items", "at most 500"),
]


@pytest.mark.parametrize(("bad", "field", "words"), [a[1:] for a in ATTACKS], ids=[a[0] for a in ATTACKS])
async def test_an_attack_is_refused_with_422_naming_the_field_and_nothing_of_the_batch_is_applied(
    api: httpx.AsyncClient, dev_env: WorkflowEnvironment, settings: Settings, bad: str, field: str, words: str
) -> None:
    good = envelope()

    response = await api.post("/v1/events", content=raw_batch(good, bad), headers={"content-type": "application/json"})

    assert response.status_code == 422, response.text[:300]
    errors = response.json()["errors"]
    assert field in [error["field"] for error in errors], errors
    message = next(error["message"] for error in errors if error["field"] == field)
    assert words in message
    assert all(error["index"] in (1, None) for error in errors)
    assert event_log(settings).get(good["id"]) is None
    assert not await has_workflow(dev_env.client, good["customer_id"])


async def test_the_same_limits_hold_inside_a_list_item_and_name_its_path(api: httpx.AsyncClient) -> None:
    items = [{"sku": f"S{n}", "name": "ok"} for n in range(5)]
    items[3]["name"] = "x" * 9000

    response = await api.post("/v1/events", json=envelope(properties=cart(items=items)))

    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "properties.items[3].name"


async def test_an_event_at_every_limit_is_accepted(api: httpx.AsyncClient) -> None:
    properties = cart(x=nested(14), n=MAX_SAFE_INTEGER, m=-MAX_SAFE_INTEGER, note="é\t\n" + "x" * 8000)
    event = envelope(properties=properties, timestamp="1970-01-01T00:00:00Z")

    response = await api.post("/v1/events", json=event)

    assert response.status_code == 202, response.text


class _FailingFor:
    """The real catalog, except that looking up one event type fails (a broken journey reload, say)."""

    by_reference = False

    def __init__(self, catalog: JourneyCatalog, event_type: str) -> None:
        self.catalog = catalog
        self.event_type = event_type

    def bundles_for(self, event_type: str) -> Sequence[JourneyBundle]:
        if event_type == self.event_type:
            raise KeyError(event_type)
        return self.catalog.bundles_for(event_type)


async def test_a_forwarding_failure_of_any_kind_is_503_and_the_retry_forwards_what_was_left(
    settings: Settings, dev_env: WorkflowEnvironment, catalog: JourneyCatalog, caplog: pytest.LogCaptureFixture
) -> None:
    ana, ben = customer(), customer()
    fine = envelope(ana)
    failing = envelope(ben, type="product_viewed", properties={"sku": "MUG-1", "name": "Secret Gift For Ben"})
    app = create_app(settings, client=dev_env.client, catalog=catalog)
    app.state.ingest.catalog = _FailingFor(catalog, "product_viewed")

    async with serving(app) as http:
        first = await http.post("/v1/events", json={"events": [fine, failing]})
    async with serving(create_app(settings, client=dev_env.client, catalog=catalog)) as http:
        retry = await http.post("/v1/events", json={"events": [fine, failing]})

    assert first.status_code == 503
    assert first.headers["retry-after"]
    assert "KeyError" in caplog.text and "Secret Gift" not in caplog.text
    assert retry.status_code == 202
    assert retry.json() == {"accepted": 1, "duplicates": 1}
    assert [i.event.id for i in await signalled(dev_env.client, ana)] == [fine["id"]]
    assert [i.event.id for i in await signalled(dev_env.client, ben)] == [failing["id"]]
    rows = [event_log(settings).get(event["id"]) for event in (fine, failing)]
    assert all(row is not None and row.forwarded for row in rows)


async def test_an_event_log_failure_is_503_and_nothing_is_forwarded(
    settings: Settings, dev_env: WorkflowEnvironment, catalog: JourneyCatalog
) -> None:
    event = envelope()

    async with serving(create_app(settings, client=dev_env.client, catalog=catalog)) as http:
        with get_engine(settings.database()).begin() as connection:
            connection.execute(text("DROP TABLE ingested_events"))  # the database lost its table
        response = await http.post("/v1/events", json=event)

    assert response.status_code == 503
    assert response.headers["retry-after"]
    assert not await has_workflow(dev_env.client, event["customer_id"])


async def test_one_customers_1000_events_reach_its_workflow_in_signals_under_the_budget(
    tmp_path: Path, dev_env: WorkflowEnvironment, catalog: JourneyCatalog
) -> None:
    who = customer()
    now = datetime.now(UTC).isoformat()
    batch = [
        envelope(who, id=f"evt_{n}_{uuid.uuid4().hex[:8]}", timestamp=now, properties=cart(n=n)) for n in range(1000)
    ]
    channel = RecordingChannel()

    async with customer_worker(dev_env.client, [channel.send_message]) as task_queue:
        settings = make_settings(tmp_path, task_queue=task_queue)
        async with serving(create_app(settings, client=dev_env.client, catalog=catalog)) as http:
            response = await http.post("/v1/events", json={"events": batch})
        handle = dev_env.client.get_workflow_handle(customer_workflow_id(who))

        async def all_seen() -> bool:
            state: dict[str, Any] = await handle.query("state")
            return set(state["seen"]) >= {event["id"] for event in batch}

        await eventually(all_seen, timeout=60)

    assert response.status_code == 202
    assert response.json() == {"accepted": 1000, "duplicates": 0}
    stored = await every_event_signal(dev_env, who)
    codec = dev_env.client.data_converter.payload_codec
    assert codec is not None
    signals = [payload.data for payload in await codec.decode(stored)]  # as the workflow reads them
    assert len(signals) > 1, "one customer's large batch is split"
    assert max(len(payload) for payload in signals) <= SIGNAL_BUDGET_BYTES
    assert max(payload.ByteSize() for payload in stored) <= SIGNAL_BUDGET_BYTES + 1024  # encrypted, in history
    received = [incoming["event"]["id"] for payload in signals for incoming in json.loads(payload)]
    assert received == [event["id"] for event in batch]


async def every_event_signal(env: WorkflowEnvironment, customer_id: str) -> list[Payload]:
    """The encoded input of every ``event`` signal the customer's workflow received, across
    continue-as-new (each run's history names the run it continues)."""
    runs: list[list[Payload]] = []
    run_id: str | None = None
    while True:
        history = await env.client.get_workflow_handle(customer_workflow_id(customer_id), run_id=run_id).fetch_history()
        runs.append(
            [
                event.workflow_execution_signaled_event_attributes.input.payloads[0]
                for event in history.events
                if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
                and event.workflow_execution_signaled_event_attributes.signal_name == EVENT_SIGNAL
            ]
        )
        run_id = history.events[0].workflow_execution_started_event_attributes.continued_execution_run_id or None
        if run_id is None:
            return [payload for run in reversed(runs) for payload in run]
