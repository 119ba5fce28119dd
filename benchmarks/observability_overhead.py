"""What tracing and metrics cost the ingest path: events per second through the API, off and on.

    .venv/bin/python -m benchmarks.observability_overhead --events 300

Posts one event per request, each for a new customer (so each is a signal-with-start), through the
real API (httpx's ASGI transport) to a Temporal dev server, sequentially, three ways in one process:
tracing off; tracing on with every span kept (exported to memory, synchronously: an upper bound on
an OTLP exporter, which batches in a background thread); and the Prometheus metrics scrape
(its time and page size). No worker runs: this is the API's cost only.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic import SecretStr
from temporalio.testing import WorkflowEnvironment

from omnicart.api.app import create_app
from omnicart.dev import find_temporal
from omnicart.security.keys import new_key_spec
from omnicart.settings import Settings
from omnicart.storage import upgrade
from omnicart.temporal import connect


async def _rate(settings: Settings, target: str, events: int) -> float:
    client = await connect(settings, target_host=target, namespace="default", api_key=None, tls=False)
    app = create_app(settings, client=client)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://bench"
    ) as http:
        started = time.perf_counter()
        for _ in range(events):
            event = {"id": f"evt_{uuid.uuid4().hex}", "type": "product_viewed",
                     "customer_id": f"cus_{uuid.uuid4().hex}",
                     "timestamp": datetime.now(UTC).isoformat(), "source": "web",
                     "properties": {"sku": "MUG-1", "name": "Mug", "price": 12.5}}
            response = await http.post("/v1/events", json=event)
            assert response.status_code == 202, response.text
        rate = events / (time.perf_counter() - started)
        started = time.perf_counter()
        page = (await http.get("/metrics")).text
        print(f"  GET /metrics: {(time.perf_counter() - started) * 1000:.1f} ms, {len(page):,} bytes")
    return rate


async def main(events: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            _env_file=None,
            data_dir=Path(tmp),
            task_queue="bench-observability",
            encryption_keys=SecretStr(new_key_spec("bench")),
            key_database_url=f"sqlite:///{Path(tmp) / 'keys.db'}",
        )
        upgrade(settings.database())
        env = await WorkflowEnvironment.start_local(
            dev_server_existing_path=str(find_temporal()), dev_server_log_level="error"
        )
        target = env.client.service_client.config.target_host
        try:
            await _rate(settings, target, min(events, 50))  # warm up: imports, connections, key cache
            off = await _rate(settings, target, events)
            print(f"tracing off: {off:,.0f} events/s")
            spans = InMemorySpanExporter()
            provider = TracerProvider()
            provider.add_span_processor(SimpleSpanProcessor(spans))
            trace.set_tracer_provider(provider)
            on = await _rate(settings, target, events)
            per_request = len(spans.get_finished_spans()) / events
            print(f"tracing on:  {on:,.0f} events/s ({per_request:.0f} spans per request; "
                  f"{(1 / on - 1 / off) * 1000:+.2f} ms per request)")
        finally:
            await env.shutdown()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=300)
    asyncio.run(main(parser.parse_args().events))
