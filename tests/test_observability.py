"""Metrics and traces as an operator reads them, after real journeys on the real Temporal dev server.

The worker's Prometheus endpoint (the SDK runtime's, on a free loopback port) and the API's
``GET /metrics`` are scraped over HTTP and parsed with prometheus_client's own parser; traces are
caught by the OpenTelemetry SDK's in-memory exporter, installed as this process's tracer provider.
The journey sends one email at once; for the trace it goes through the real SendGrid SDK to the
loopback SendGrid (``tests/providers``).
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from temporalio import workflow
from temporalio.client import Client, WorkflowHistory
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer, Worker

from omnicart.api.app import create_app
from omnicart.channels.outbox import read_outbox
from omnicart.events import Event
from omnicart.observability import count_failing_customers
from omnicart.routing import customer_workflow_id
from omnicart.settings import Settings
from omnicart.signals import CUSTOMER_WORKFLOW
from omnicart.storage import upgrade
from omnicart.temporal import connect
from tests.conftest import _binary
from tests.providers.sendgrid_server import SendGridServer
from tests.support.bundles import JOURNEYS, publish_folder
from tests.support.runtime import send_event
from tests.support.timelines import cart, profile
from tests.test_replay import HISTORIES
from worker import run_worker
from workflows.customer import CustomerWorkflow
from workflows.date_triggers import DateTriggersWorkflow
from workflows.sandbox import workflow_runner

SEND_AT_ONCE = """\
name: send_at_once
description: One email as soon as a checkout is abandoned (a journey with no wait).
trigger:
  event: checkout_started
  key: cart_id
steps:
  - send: {channel: email, template: cart_reminder_1}
"""

SENDGRID_KEY = "SG.observe-" + "k" * 20


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def journeys(tmp_path: Path) -> Path:
    folder = tmp_path / "journeys"
    shutil.copytree(JOURNEYS / "templates", folder / "templates")
    (folder / "send_at_once.yaml").write_text(SEND_AT_ONCE)
    return folder


def envelope(customer_id: str, event_type: str, properties: dict[str, Any], source: str = "web") -> dict[str, Any]:
    return {"id": f"evt_{uuid.uuid4().hex}", "type": event_type, "customer_id": customer_id,
            "timestamp": datetime.now(UTC).isoformat(), "source": source, "properties": properties}


def abandoned_checkout(customer_id: str) -> dict[str, Any]:
    return {"events": [
        envelope(customer_id, "customer_updated", profile(timezone="UTC"), source="api"),
        envelope(customer_id, "checkout_started", cart(f"cart_{uuid.uuid4().hex[:6]}")),
    ]}


@asynccontextmanager
async def running_product(client: Client, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The API (over httpx's ASGI transport) and a worker on ``client``, as ``omnicart dev`` runs them."""
    upgrade(settings.database())
    publish_folder(settings.database(), settings.journeys_dir)
    stop = asyncio.Event()
    worker = asyncio.create_task(run_worker(client, settings, stop))
    app = create_app(settings, client=client)
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://omnicart.test") as http:
                yield http
    finally:
        stop.set()
        await worker


async def eventually(check: Any, timeout: float = 30.0) -> Any:
    """``check()``'s first truthy answer, polling; the last answer when time runs out."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        answer = await check() if asyncio.iscoroutinefunction(check) else check()
        if answer or asyncio.get_running_loop().time() > deadline:
            return answer
        await asyncio.sleep(0.2)


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a Prometheus text page: (name, labels) -> value."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(page: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels`` (0 when there is none)."""
    wanted = set(labels.items())
    return sum(v for (n, have), v in page.items() if n == name and wanted <= have)


# --- metrics -------------------------------------------------------------------------------------


async def test_a_sent_journey_moves_the_worker_and_api_metrics(dev_env: WorkflowEnvironment, tmp_path: Path) -> None:
    port = free_port()
    settings = Settings(
        _env_file=None,
        data_dir=tmp_path / "data",
        journeys_dir=journeys(tmp_path),
        task_queue=f"metrics-{uuid.uuid4()}",
        metrics_address=f"127.0.0.1:{port}",
        failing_customers_interval_seconds=0.5,
    )
    client = await connect(
        settings, serve_metrics=True, target_host=dev_env.client.service_client.config.target_host,
        namespace=dev_env.client.namespace, api_key=None, tls=False,
    )
    worker_metrics = f"http://127.0.0.1:{port}/metrics"
    customer = f"cus_{uuid.uuid4().hex[:8]}"
    async with running_product(client, settings) as http, httpx.AsyncClient() as scraper:
        api_before = samples((await http.get("/metrics")).text)
        response = await http.post("/v1/events", json=abandoned_checkout(customer))
        assert response.status_code == 202, response.text
        assert (await http.post("/v1/events", json={"id": "x"})).status_code == 422

        def sent() -> bool:
            return any(line["customer_id"] == customer for line in read_outbox(settings.outbox()))

        assert await eventually(sent), "the journey's email never reached the outbox"
        # An input the journey engine fails on (a direct signaller skipped the API's validation).
        poison = Event.model_validate({
            "id": f"evt_{uuid.uuid4().hex}", "type": "customer_updated", "customer_id": customer, "source": "api",
            "timestamp": datetime.now(UTC), "properties": {"push_tokens": 5},
        })
        await send_event(client, settings.task_queue, poison, [])

        async def worker_page() -> dict[tuple[str, frozenset[tuple[str, str]]], float] | None:
            page = samples((await scraper.get(worker_metrics)).text)
            wanted = {"omnicart_sends_total", "omnicart_customers_failing", "omnicart_quarantined_inputs_total"}
            counted = {name for name, _ in page} >= wanted
            return page if counted else None

        page = await eventually(worker_page)
        assert page is not None, "the worker's metrics never showed the send"
        api_after = samples((await http.get("/metrics")).text)

    # The product's numbers, on the worker's endpoint.
    mine = {"task_queue": settings.task_queue}
    assert value(page, "omnicart_sends_total", channel="email", outcome="sent", **mine) == 1
    assert value(page, "omnicart_sends_total", **mine) == 1  # no retry, failure or cancellation
    assert value(page, "omnicart_send_latency_count", channel="email", **mine) == 1
    assert 0 < value(page, "omnicart_send_latency_sum", channel="email", **mine) < 30
    assert value(page, "omnicart_customers_failing") == 0
    assert value(page, "omnicart_quarantined_inputs_total", **mine) == 1
    # ... beside the SDK's own, which Temporal's dashboards read.
    assert value(page, "temporal_activity_execution_latency_count", activity_type="send_message", **mine) == 1
    assert value(page, "temporal_workflow_task_execution_latency_count", **mine) >= 1
    assert value(page, "temporal_request_total") > 0

    # The API's: two events accepted, one request refused for its missing fields.
    assert value(api_after, "omnicart_events_accepted_total") - value(api_before, "omnicart_events_accepted_total") == 2
    refused = value(api_after, "omnicart_requests_rejected_total", status="422", reason="type")
    assert refused - value(api_before, "omnicart_requests_rejected_total", status="422", reason="type") == 1


async def test_refused_requests_are_counted_by_status_and_reason(dev_env: WorkflowEnvironment, tmp_path: Path) -> None:
    settings = Settings(
        _env_file=None, data_dir=tmp_path / "data", task_queue=f"refused-{uuid.uuid4()}",
        api_token=SecretStr("t0ken"), max_body_bytes=2_000,
    )
    upgrade(settings.database())
    app = create_app(settings, client=dev_env.client)
    good = {"Authorization": "Bearer t0ken"}
    async with app.router.lifespan_context(app), httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://omnicart.test"
    ) as http:
        before = samples((await http.get("/metrics")).text)
        bad_time = envelope("cus_1", "checkout_started", cart()) | {"timestamp": "yesterday"}
        made_up = {"events": [], "my_customers_email": "ada@example.com"}
        answers = [
            await http.post("/v1/events", json=bad_time, headers=good),
            await http.post("/v1/events", json=made_up, headers=good),
            await http.post("/v1/events", content=b"{" + b" " * 3_000 + b"}", headers=good),
            await http.post("/v1/events", json=bad_time),
        ]
        after = samples((await http.get("/metrics")).text)
    assert [answer.status_code for answer in answers] == [422, 422, 413, 401]

    def moved(status: str, reason: str) -> float:
        name = "omnicart_requests_rejected_total"
        return value(after, name, status=status, reason=reason) - value(before, name, status=status, reason=reason)

    assert moved("422", "timestamp") == 1
    assert moved("422", "other") == 1  # a key the producer made up is not a label value
    assert moved("413", "body") == 1
    assert moved("401", "token") == 1
    assert not any("ada@example.com" in str(labels) for _, labels in after)


@workflow.defn(name=CUSTOMER_WORKFLOW, sandboxed=False)
class BrokenCustomerWorkflow:
    """A customer workflow whose code has a bug that fails every workflow task (not the workflow)."""

    @workflow.run
    async def run(self, _input: Any) -> None:
        raise RuntimeError("a bug in the workflow code")


async def test_customers_whose_workflow_task_keeps_failing_are_counted(encryption: DataConverter) -> None:
    # A dev server of its own: the server flags a workflow after this many failed tasks in a row
    # (5 by default; 2 here so the test takes seconds, not a minute of the server's retry backoff).
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=_binary("temporal"),
        data_converter=encryption,
        dev_server_log_level="error",
        dev_server_extra_args=[
            "--dynamic-config-value", "system.numConsecutiveWorkflowTaskProblemsToTriggerSearchAttribute=2",
        ],
    )
    try:
        assert await count_failing_customers(env.client) == 0
        async with Worker(env.client, task_queue="broken", workflows=[BrokenCustomerWorkflow]):
            handle = await env.client.start_workflow(
                CUSTOMER_WORKFLOW, None, id="customer/cus_broken", task_queue="broken"
            )

            async def flagged() -> bool:
                return await count_failing_customers(env.client) == 1

            assert await eventually(flagged, timeout=60), "the server never flagged the failing workflow"
            await handle.terminate()

        async def cleared() -> bool:
            return await count_failing_customers(env.client) == 0

        assert await eventually(cleared), "a terminated workflow is still counted"
    finally:
        await env.shutdown()


# --- traces --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def spans() -> Iterator[InMemorySpanExporter]:
    """This process's tracer provider, exporting to memory (a process gets one provider, ever)."""
    exporter = InMemorySpanExporter()
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield exporter
    exporter.clear()


async def test_one_trace_runs_from_the_api_request_to_the_provider_call(
    dev_env: WorkflowEnvironment, tmp_path: Path, spans: InMemorySpanExporter, encryption: DataConverter,
) -> None:
    with SendGridServer(SENDGRID_KEY) as sendgrid:
        settings = Settings(
            _env_file=None,
            data_dir=tmp_path / "data",
            journeys_dir=journeys(tmp_path),
            task_queue=f"traces-{uuid.uuid4()}",
            sendgrid_api_key=SecretStr(SENDGRID_KEY),
            sendgrid_host=sendgrid.url,
        )
        client = await connect(
            settings, target_host=dev_env.client.service_client.config.target_host,
            namespace=dev_env.client.namespace, api_key=None, tls=False,
        )
        customer = "ada@example.com"  # an id that is itself personal data: spans must carry its hash
        async with running_product(client, settings) as http:
            spans.clear()
            response = await http.post("/v1/events", json=abandoned_checkout(customer))
            assert response.status_code == 202, response.text

            def provider_spans() -> list[ReadableSpan]:
                return [span for span in spans.get_finished_spans() if span.name == "sendgrid send"]

            sent = await eventually(provider_spans)
            assert sent, "no span for the SendGrid call"
            assert len(sendgrid.requests) == 1
            history = await client.get_workflow_handle(customer_workflow_id(customer)).fetch_history()

    # Tracing can be turned off again: a history written with trace headers replays without them.
    await Replayer(
        workflows=[CustomerWorkflow], data_converter=encryption, workflow_runner=workflow_runner()
    ).replay_workflow(history)

    finished = spans.get_finished_spans()
    trace_id = sent[0].context.trace_id
    in_trace = {span.name for span in finished if span.context.trace_id == trace_id}
    assert "POST /v1/events" in in_trace
    assert f"SignalWithStartWorkflow:{CUSTOMER_WORKFLOW}" in in_trace
    assert f"RunWorkflow:{CUSTOMER_WORKFLOW}" in in_trace
    assert "StartActivity:send_message" in in_trace and "RunActivity:send_message" in in_trace
    request = next(span for span in finished if span.name == "POST /v1/events")
    assert request.attributes is not None and request.attributes["http.response.status_code"] == 202
    assert sent[0].parent is not None
    parent = next(span for span in finished if span.context.span_id == sent[0].parent.span_id)
    assert parent.name == "RunActivity:send_message"

    personal = ("ada@example.com", "+14155550100", "Ada")
    for span in finished:
        text = " ".join([span.name, *(f"{k}={v!s}" for k, v in (span.attributes or {}).items())])
        for event in span.events:
            text += " " + " ".join(f"{k}={v!s}" for k, v in (event.attributes or {}).items())
        assert not any(value in text for value in personal), (span.name, text)


async def test_saved_histories_replay_with_tracing_on() -> None:
    """Turning tracing on is not a workflow change: histories recorded without it replay with it."""
    replayer = Replayer(
        workflows=[CustomerWorkflow, DateTriggersWorkflow], data_converter=pydantic_data_converter,
        workflow_runner=workflow_runner(), interceptors=[TracingInterceptor()],
    )
    for path in HISTORIES:
        await replayer.replay_workflow(WorkflowHistory.from_json(path.stem, path.read_text()))
