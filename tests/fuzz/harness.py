"""Send generated bodies to the real API (with a real worker behind it) and judge what they left.

The verdict is what the issue "Nothing accepted can wedge a customer" asks for, checked on the
real product after the fact rather than predicted per body:

* no response is a 5xx other than ``503`` (and every status is one a producer is promised);
* no customer workflow the fuzz reached is wedged: none has a workflow task past its first attempt,
  and each answers its ``journal`` query;
* no batch is half-applied: every event of a ``202`` batch is forwarded in the event log, and no event
  of a ``4xx`` batch is in it (unless another, accepted request carried the same id);
* no accepted event is lost: each is in its workflow's ``seen`` ids (the SDK drops a signal it cannot
  decode, so a poison pill can also vanish rather than wedge).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from hypothesis import HealthCheck, Phase, given, seed, settings
from temporalio.client import Client

from omnicart import limits
from omnicart.api.app import create_app
from omnicart.api.event_log import EventLog
from omnicart.routing import customer_workflow_id
from omnicart.settings import Settings
from omnicart.storage import upgrade
from tests.fuzz.strategies import bodies, schema_bodies
from tests.support.bundles import publish_folder
from worker import build_worker

ROOT = Path(__file__).resolve().parents[2]
PROMISED = frozenset({202, 401, 413, 422, 503})
QUERY_TIMEOUT = timedelta(seconds=10)


@dataclass(frozen=True)
class Outcome:
    status: int
    event_ids: tuple[str, ...]
    customer_ids: tuple[str, ...]  # kept for reading a report by hand


@dataclass
class Report:
    statuses: Counter[int] = field(default_factory=Counter)
    wedged: list[str] = field(default_factory=list)
    half_applied: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    customers_checked: int = 0
    seconds: float = 0.0

    @property
    def server_errors(self) -> int:
        return sum(count for status, count in self.statuses.items() if status >= 500 and status != 503)

    @property
    def unpromised(self) -> int:
        return sum(count for status, count in self.statuses.items() if status not in PROMISED)

    def lines(self) -> list[str]:
        total = sum(self.statuses.values())
        by_status = ", ".join(f"{status}: {count}" for status, count in sorted(self.statuses.items()))
        return [
            f"requests      {total} in {self.seconds:.1f} s ({total / max(self.seconds, 1e-9):.0f}/s)",
            f"by status     {by_status}",
            f"5xx           {self.server_errors} (503 answers are not counted: they are retries, not failures)",
            f"unpromised    {self.unpromised} (statuses other than 202/401/413/422/503)",
            f"wedged        {len(self.wedged)} of {self.customers_checked} customer workflows",
            f"half-applied  {len(self.half_applied)}",
            f"lost          {len(self.lost)} accepted events not in their workflow",
            *(f"  wedged: {line}" for line in self.wedged[:10]),
            *(f"  lost: {line}" for line in self.lost[:10]),
            *(f"  half-applied: {line}" for line in self.half_applied[:10]),
        ]


def mentioned(body: bytes) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The event ids and customer ids a body names (leniently: anything unreadable names nothing)."""
    try:
        data = json.loads(body, parse_int=limits.parse_int)
    except (ValueError, RecursionError):
        return (), ()
    envelopes = data.get("events", [data]) if isinstance(data, dict) else []
    if not isinstance(envelopes, list):
        return (), ()
    named = [e for e in envelopes if isinstance(e, dict)]
    ids = tuple(e["id"] for e in named if isinstance(e.get("id"), str))
    customers = tuple(e["customer_id"] for e in named if isinstance(e.get("customer_id"), str))
    return ids, customers


class Fuzzer:
    """Posts bodies to one API and remembers what each answer was."""

    def __init__(self, http: httpx.AsyncClient, event_log: EventLog, client: Client) -> None:
        self.http = http
        self.event_log = event_log
        self.client = client
        self.outcomes: list[Outcome] = []

    async def post(self, body: bytes) -> int:
        response = await self.http.post("/v1/events", content=body, headers={"content-type": "application/json"})
        self.outcomes.append(Outcome(response.status_code, *mentioned(body)))
        return response.status_code

    async def report(self, seconds: float) -> Report:
        report = Report(statuses=Counter(outcome.status for outcome in self.outcomes), seconds=seconds)
        report.half_applied = await asyncio.to_thread(self._half_applied)
        forwarded = await asyncio.to_thread(self._forwarded_by_customer)
        report.customers_checked = len(forwarded)
        limit = asyncio.Semaphore(16)

        async def check(customer_id: str) -> tuple[str | None, list[str]]:
            async with limit:
                wedged = await self._wedged(customer_id)
                return wedged, [] if wedged else await self._lost(customer_id, forwarded[customer_id])

        verdicts = await asyncio.gather(*(check(customer_id) for customer_id in sorted(forwarded)))
        report.wedged = [wedged for wedged, _ in verdicts if wedged is not None]
        report.lost = [line for _, lost in verdicts for line in lost]
        return report

    def _forwarded_by_customer(self) -> dict[str, set[str]]:
        """The forwarded event ids of each customer (a duplicate id belongs to its first customer)."""
        ids = {event_id for outcome in self.outcomes if outcome.status == 202 for event_id in outcome.event_ids}
        by_customer: dict[str, set[str]] = {}
        for event_id in ids:
            row = self.event_log.get(event_id)
            if row is not None and row.forwarded:
                by_customer.setdefault(row.customer_id, set()).add(event_id)
        return by_customer

    def _half_applied(self) -> list[str]:
        taken = {i for o in self.outcomes if o.status in (202, 503) for i in o.event_ids}
        problems: list[str] = []
        for outcome in self.outcomes:
            if outcome.status == 202:
                for event_id in outcome.event_ids:
                    row = self.event_log.get(event_id)
                    if row is None or not row.forwarded:
                        problems.append(f"{event_id!r} of a 202 batch is {'missing' if row is None else 'unforwarded'}")
            elif 400 <= outcome.status < 500:
                for event_id in outcome.event_ids:
                    if event_id not in taken and self.event_log.get(event_id) is not None:
                        problems.append(f"{event_id!r} of a {outcome.status} batch is in the event log")
        return problems

    async def _lost(self, customer_id: str, event_ids: set[str], patience: float = 30.0) -> list[str]:
        """Accepted events the workflow has still not seen after ``patience`` seconds of catching up."""
        handle = self.client.get_workflow_handle(customer_workflow_id(customer_id))
        deadline = time.monotonic() + patience
        while True:
            state: dict[str, Any] = await handle.query("state", rpc_timeout=QUERY_TIMEOUT)
            missing = event_ids - set(state["seen"])
            if not missing or time.monotonic() > deadline:
                return [f"{event_id!r} of {customer_id!r}" for event_id in sorted(missing)]
            await asyncio.sleep(0.5)

    async def _wedged(self, customer_id: str) -> str | None:
        """Why this customer's workflow is stuck, or None when it runs."""
        handle = self.client.get_workflow_handle(customer_workflow_id(customer_id))
        try:
            description = await handle.describe()
            raw = description.raw_description
            if raw.HasField("pending_workflow_task") and raw.pending_workflow_task.attempt > 1:
                return f"{customer_id!r}: workflow task attempt {raw.pending_workflow_task.attempt}"
            await handle.query("journal", rpc_timeout=QUERY_TIMEOUT)
        except Exception as error:
            return f"{customer_id!r}: {type(error).__name__}: {str(error)[:120]}"
        return None


@asynccontextmanager
async def fuzz_target(client: Client, data_dir: Path, **overrides: Any) -> AsyncIterator[Fuzzer]:
    """The product as it runs: the real worker (customer workflow, send activity, outbox) on a
    fresh task queue of ``client``'s Temporal, and the ingest API in process (``overrides``: settings)."""
    settings = Settings(
        data_dir=data_dir,
        database_url=f"sqlite:///{data_dir / 'omnicart.db'}",
        journeys_dir=ROOT / "journeys",
        task_queue=f"fuzz-{uuid.uuid4()}",
        api_token=None,
        **overrides,
    )
    upgrade(settings.database())
    publish_folder(settings.database(), settings.journeys_dir)
    app = create_app(settings, client=client)
    async with build_worker(client, settings), app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://omnicart.test", timeout=60) as http:
            yield Fuzzer(http, app.state.event_log, client)


def run_examples(fuzzer: Fuzzer, loop: asyncio.AbstractEventLoop, requests: int, seed_value: int | None) -> None:
    """Generate ``requests`` bodies with Hypothesis and post each (from this thread, on ``loop``).

    Only the generate phase runs: the fuzz counts outcomes over the whole run instead of stopping
    at, and shrinking, the first surprise.
    """
    spec = asyncio.run_coroutine_threadsafe(_openapi(fuzzer.http), loop).result()  # as a client reads it
    token = uuid.uuid4().hex[:8]

    @settings(
        max_examples=requests,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(bodies(token, schema_bodies(spec)))
    def one(body: bytes) -> None:
        asyncio.run_coroutine_threadsafe(fuzzer.post(body), loop).result()

    test: Callable[[], None] = one if seed_value is None else seed(seed_value)(one)
    test()


async def _openapi(http: httpx.AsyncClient) -> dict[str, Any]:
    spec: dict[str, Any] = (await http.get("/openapi.json")).json()
    return spec


async def fuzz(client: Client, data_dir: Path, requests: int, seed_value: int | None = None) -> Report:
    """Run the whole fuzz against ``client``'s Temporal and judge what it left."""
    async with fuzz_target(client, data_dir) as fuzzer:
        started = time.monotonic()
        await asyncio.to_thread(run_examples, fuzzer, asyncio.get_running_loop(), requests, seed_value)
        seconds = time.monotonic() - started
        return await fuzzer.report(seconds)


__all__ = ["PROMISED", "Report", "fuzz"]
