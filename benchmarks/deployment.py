"""The product deployed on this machine as production runs it, for the load and chaos runs.

OS processes, as an operator starts them: PostgreSQL (durable: commits survive a crash), a Temporal
dev server on a file database (its state survives a restart), ``python worker.py`` and the API under
uvicorn, sharing one database, one Temporal and one outbox; the flagship published with hours
played as seconds (``benchmarks.run.seconds_for_hours``: a journey lasts about 72 s).
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr
from temporalio.client import Client

from benchmarks.run import seconds_for_hours
from omnicart.dev import TemporalDevServer, find_temporal
from omnicart.security.keys import new_key_spec
from omnicart.settings import Settings
from omnicart.storage import upgrade
from tests.support.postgres import PostgresServer, free_port
from tests.support.processes import Processes, api_command, until_healthy, worker_command

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 120.0


@dataclass
class Deployment:
    tmp: Path
    postgres: PostgresServer
    temporal: TemporalDevServer
    processes: Processes
    client: Client
    keys: str
    journeys: Path
    flagship: Path
    workers: list[str]
    url: str

    @property
    def outbox(self) -> Path:
        return self.tmp / "outbox.jsonl"


def product_env(tmp: Path, database_url: str, temporal: TemporalDevServer, keys: str, journeys: Path,
                task_queue: str) -> dict[str, str]:
    """What an operator gives every process: one database, one Temporal, one outbox."""
    env = {name: value for name, value in os.environ.items() if not name.startswith(("OMNICART_", "TEMPORAL_"))}
    env.update({
        "PYTHONUNBUFFERED": "1",
        "TEMPORAL_ADDRESS": temporal.address,
        "TEMPORAL_NAMESPACE": "default",
        "OMNICART_DATABASE_URL": database_url,
        "OMNICART_TASK_QUEUE": task_queue,
        "OMNICART_DATA_DIR": str(tmp / "data"),
        "OMNICART_OUTBOX_PATH": str(tmp / "outbox.jsonl"),
        "OMNICART_JOURNEYS_DIR": str(journeys),
        "OMNICART_ENCRYPTION_KEYS": keys,
    })
    return env


@asynccontextmanager
async def deployed(name: str, workers: int) -> AsyncIterator[Deployment]:
    """Start everything, publish the journeys, wait for the API; stop it all afterwards."""
    with tempfile.TemporaryDirectory(prefix=f"omnicart-{name}-") as scratch:
        tmp = Path(scratch)
        journeys = tmp / "journeys"
        journeys.mkdir()
        flagship = seconds_for_hours(ROOT / "journeys" / "abandoned_cart.yaml", journeys)
        postgres = PostgresServer(durable=True)
        postgres.start()
        temporal = TemporalDevServer(find_temporal(), tmp / "temporal", free_port(), free_port())
        processes = Processes(tmp)
        try:
            database_url = postgres.create_database()
            upgrade(database_url)
            keys = new_key_spec(name)
            await temporal.start()
            client = await temporal.connect(Settings(data_dir=tmp / "data", encryption_keys=SecretStr(keys)))
            env = product_env(tmp, database_url, temporal, keys, journeys, task_queue=name)
            published = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "omnicart.cli", "publish", str(journeys), "--by", name, env=env,
                stdout=asyncio.subprocess.DEVNULL)
            assert await published.wait() == 0, "omnicart publish failed"
            names = [f"worker{index}" for index in range(1, workers + 1)]
            for worker in names:
                processes.start(worker, worker_command(), env)
            port = free_port()
            processes.start("api", api_command(port), env)
            url = f"http://127.0.0.1:{port}"
            async with httpx.AsyncClient() as http:
                await until_healthy(http, url, processes, START_TIMEOUT)
            yield Deployment(tmp, postgres, temporal, processes, client, keys, journeys, flagship, names, url)
        finally:
            processes.stop()
            await temporal.stop()
            postgres.stop()


async def post_until_taken(http: httpx.AsyncClient, url: str, events: list[dict[str, Any]]) -> int:
    """Post one batch until the API takes it, as a producer must: the same ids every time. Attempts."""
    attempts = 0
    while True:
        attempts += 1
        try:
            answer = await http.post(f"{url}/v1/events", json={"events": events})
            if answer.status_code == 202:
                return attempts
            if answer.status_code < 500:
                raise SystemExit(f"the API refused a good batch: {answer.status_code} {answer.text[:300]}")
        except httpx.TransportError:
            pass
        await asyncio.sleep(min(5.0, 0.2 * 2 ** min(attempts, 5)))
