"""Metrics and traces: what an operator watches, and how one event is followed to the provider.

Two metric paths, each where its numbers are made (``docs/OPERATIONS.md`` lists every metric):

* **Worker** (anything that runs activities): the Temporal SDK's own runtime metrics (``temporal_*``)
  and the product's send, latency and quarantine metrics, all recorded through the SDK's metric
  meter and served by the SDK runtime's Prometheus endpoint on ``OMNICART_METRICS_ADDRESS``. One
  port per worker, one exporter, and the product's numbers carry the same ``namespace`` and
  ``task_queue`` labels as Temporal's.
* **Ingest API**: events accepted, duplicates and rejected requests, counted with
  ``prometheus_client`` and served at ``GET /metrics`` on the API's own port: an API process
  already serves HTTP, so the scrape needs no second port (keep ``/metrics`` off the public load
  balancer's routes).

Traces: ``temporalio.contrib.opentelemetry.TracingInterceptor`` on the client (the worker takes
it from the client), :class:`RequestSpans` around every API request, and :func:`provider_span`
around every call to a provider, so one trace runs from ``POST /v1/events`` through
signal-with-start and the workflow to the SendGrid/Twilio/FCM call. The exporter is configured by
the standard ``OTEL_*`` variables; with no ``OTEL_EXPORTER_OTLP_ENDPOINT`` tracing is off.
Spans carry ids, never personal data: the workflow id is the customer's safe reference
(``omnicart.security.pseudonym``), message ids are digests, and request spans name the route
template, never the raw path (which may hold a customer id), query or client address.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import Counter
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from temporalio import activity
from temporalio.client import Client
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from omnicart.settings import Settings
from omnicart.signals import CUSTOMER_WORKFLOW

logger = logging.getLogger(__name__)

# -- worker: the SDK runtime's Prometheus endpoint --------------------------------------------------

SEND_LATENCY = "omnicart_send_latency"
SEND_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 6 * 3600, 24 * 3600)
"""Seconds. Most sends take well under a second; a provider outage stretches a send over hours of
retries, and those must land in a bucket of their own rather than in ``+Inf``."""

_runtimes: dict[str, Runtime] = {}


class MetricsAddressInUse(RuntimeError):
    """``OMNICART_METRICS_ADDRESS`` could not be served (another process holds the port)."""


def metrics_runtime(address: str) -> Runtime:
    """The SDK runtime serving Prometheus metrics on ``address`` (``host:port``), one per address.

    A runtime binds its port once; every client of this process that serves metrics shares it.
    """
    runtime = _runtimes.get(address)
    if runtime is None:
        config = PrometheusConfig(
            bind_address=address,
            # Counters end in _total, as Prometheus names them and as the API's metrics do.
            counters_total_suffix=True,
            histogram_bucket_overrides={SEND_LATENCY: SEND_LATENCY_BUCKETS},
        )
        try:
            runtime = Runtime(telemetry=TelemetryConfig(metrics=config))
        except Exception as exc:  # the core reports a bind failure as a plain exception
            raise MetricsAddressInUse(f"OMNICART_METRICS_ADDRESS={address}: cannot serve metrics there: {exc}") from exc
        _runtimes[address] = runtime
    return runtime


def client_options(settings: Settings, *, serve_metrics: bool) -> dict[str, Any]:
    """What ``Client.connect`` needs for metrics and traces (``omnicart.temporal.connect`` adds it).

    Only long-running processes (worker, API, ``omnicart dev``) serve metrics: a CLI command run on
    the same machine must not try to take the worker's port.
    """
    options: dict[str, Any] = {}
    if serve_metrics and settings.metrics_address:
        options["runtime"] = metrics_runtime(settings.metrics_address)
    if tracing_enabled():
        options["interceptors"] = [TracingInterceptor()]
    return options


def count_send(request_channel: str, outcome: str) -> None:
    """One send attempt's outcome: sent, already_sent, failed, retried, cancelled or error (a bug)."""
    activity.metric_meter().create_counter(
        "omnicart_sends", "Send attempts by channel and outcome", "attempts"
    ).add(1, {"channel": request_channel, "outcome": outcome})


def observe_send_latency(request_channel: str) -> None:
    """Seconds from when the workflow first scheduled this send to the provider's acceptance.

    The workflow schedules a send when its step falls due (after quiet hours), so this is what the
    product adds to the journey's own waits: queueing on the task queue, retries through an outage,
    and the provider call. ``activity.info().scheduled_time`` is the first attempt's, the same for
    every retry.
    """
    waited = datetime.now(UTC) - activity.info().scheduled_time
    activity.metric_meter().create_histogram_float(
        SEND_LATENCY, "Seconds from a send falling due to the provider accepting it", "s"
    ).record(max(waited.total_seconds(), 0.0), {"channel": request_channel})


FAILING_CUSTOMERS_QUERY = (
    f"WorkflowType = '{CUSTOMER_WORKFLOW}' AND ExecutionStatus = 'Running' AND "
    "TemporalReportedProblems IN ('category=WorkflowTaskFailed', 'category=WorkflowTaskTimedOut')"
)
"""Recent Temporal servers (the tests' dev server: 1.32) flag a workflow whose workflow task failed
or timed out several times in a row (5 by default) with the ``TemporalReportedProblems`` search
attribute, and clear it once a task succeeds: exactly "customers whose workflow is stuck"."""


async def count_failing_customers(client: Client) -> int:
    """How many customers' workflows are stuck on a failing workflow task right now."""
    return (await client.count_workflows(FAILING_CUSTOMERS_QUERY)).count


async def keep_counting_failing_customers(client: Client, interval: float, stop: asyncio.Event | None = None) -> None:
    """Set the ``omnicart_customers_failing`` gauge every ``interval`` seconds until ``stop``.

    Every worker reports the same number (alert on ``max``). A server without the search attribute
    answers with an error: logged once, and the SDK's ``temporal_workflow_task_execution_failed``
    counter is the alert to use instead (``docs/OPERATIONS.md``).
    """
    runtime = client.service_client.config.runtime or Runtime.default()
    gauge = runtime.metric_meter.create_gauge(
        "omnicart_customers_failing", "Customers whose workflow task keeps failing", "workflows"
    ).with_additional_attributes({"namespace": client.namespace})
    stop = stop if stop is not None else asyncio.Event()
    warned = False
    while not stop.is_set():
        try:
            gauge.set(await count_failing_customers(client))
            warned = False
        except Exception as exc:
            if not warned:
                logger.warning("could not count failing customer workflows (%s): %s", type(exc).__name__, exc)
                warned = True
        with suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)


# -- ingest API: prometheus_client, served at GET /metrics ------------------------------------------

EVENTS_ACCEPTED = Counter("omnicart_events_accepted", "Events taken in and forwarded to their customers' workflows")
EVENTS_DUPLICATE = Counter("omnicart_events_duplicate", "Events whose id was already accepted: ignored")
REQUESTS_REJECTED = Counter(
    "omnicart_requests_rejected",
    "Requests refused with nothing applied, by status and reason",
    ["status", "reason"],
)


def count_rejected(status: int, reason: str) -> None:
    """A refused request: ``reason`` is a bounded word (a field class, ``body``, ``token``, ...)."""
    REQUESTS_REJECTED.labels(status=str(status), reason=reason).inc()


def count_ingested(accepted: int, duplicates: int) -> None:
    EVENTS_ACCEPTED.inc(accepted)
    EVENTS_DUPLICATE.inc(duplicates)


# -- traces ---------------------------------------------------------------------------------------

_tracer = trace.get_tracer("omnicart")


def configure_tracing(service_name: str, environ: Mapping[str, str] = os.environ) -> bool:
    """Export spans over OTLP/HTTP when ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or its traces variant) is set.

    Everything else comes from the standard variables, read by the OpenTelemetry SDK itself:
    ``OTEL_SERVICE_NAME`` (default ``service_name``), ``OTEL_RESOURCE_ATTRIBUTES``,
    ``OTEL_EXPORTER_OTLP_HEADERS``, ``OTEL_TRACES_SAMPLER``, ``OTEL_SDK_DISABLED``. True when on.
    """
    endpoint = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if not endpoint or environ.get("OTEL_SDK_DISABLED", "").lower() == "true" or tracing_enabled():
        return tracing_enabled()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    attributes = {} if environ.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: service_name}
    provider = TracerProvider(resource=Resource.create(attributes))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    logger.info("tracing: exporting spans over OTLP to %s", endpoint)
    return True


def tracing_enabled() -> bool:
    """Whether this process records spans (an SDK tracer provider is installed)."""
    return isinstance(trace.get_tracer_provider(), TracerProvider)


@contextmanager
def provider_span(provider: str, operation: str, message_id: str, channel: str) -> Iterator[trace.Span]:
    """A client span around one call to a provider (``send`` or ``lookup``), a child of the send activity's.

    Attributes are ids only: the message id (a digest), provider, channel. Never the address.
    """
    with _tracer.start_as_current_span(
        f"{provider} {operation}",
        kind=trace.SpanKind.CLIENT,
        attributes={
            "omnicart.provider": provider,
            "omnicart.channel": channel,
            "omnicart.message_id": message_id,
        },
    ) as span:
        yield span


class RequestSpans:
    """A server span per HTTP request, continuing the caller's ``traceparent`` when it sends one.

    Written here rather than taken from opentelemetry-instrumentation-asgi because that records the
    raw path, query string and client address: our paths hold customer ids and unsubscribe tokens,
    and a customer's address is personal data. This records an allowlist: method, route template,
    status.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        carrier = {key.decode("latin-1"): value.decode("latin-1") for key, value in scope.get("headers", [])}
        method = str(scope.get("method", "GET"))
        with _tracer.start_as_current_span(
            method, context=propagate.extract(carrier), kind=trace.SpanKind.SERVER,
            attributes={"http.request.method": method},
        ) as span:
            status: list[int] = []

            async def send_and_note(message: Message) -> None:
                if message["type"] == "http.response.start":
                    status.append(int(message["status"]))
                await send(message)

            try:
                await self.app(scope, receive, send_and_note)
            finally:
                route = getattr(scope.get("route"), "path", None) or _mount_of(scope)
                span.update_name(f"{method} {route}")
                span.set_attribute("http.route", route)
                if status:
                    span.set_attribute("http.response.status_code", status[0])
                    if status[0] >= 500:
                        span.set_status(trace.StatusCode.ERROR)


def _mount_of(scope: Scope) -> str:
    """A mounted app's prefix (``/codec``), or ``unmatched``: never the raw path."""
    root = str(scope.get("root_path", "") or "")
    return root or "unmatched"
