"""Two of everything on one PostgreSQL: every message is still sent exactly once.

Two ``python worker.py`` processes and two API processes (uvicorn, as deployed) share one
PostgreSQL database and one Temporal server. Every batch of events is posted to both APIs at the
same moment with the same ids, so the APIs race on the event log and both forward; the workers
race for the customer workflows and the sends. The outbox file both workers append to, and the
ledger they share, must each show every expected message exactly once.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from temporalio.testing import WorkflowEnvironment

from omnicart.channels.outbox import read_outbox
from omnicart.ledger import message_ledger
from omnicart.storage import get_engine, upgrade
from tests.support.postgres import PostgresServer, free_port
from tests.support.processes import Processes, api_command, until_healthy, worker_command
from tests.support.timelines import cart, profile

ROOT = Path(__file__).resolve().parent.parent
CUSTOMERS = 12
START_TIMEOUT = 90.0
DELIVERY_TIMEOUT = 90.0
QUIET_AFTER = 3.0  # how long nothing more may arrive once every expected message has

TWO_EMAILS = """\
name: two_emails_scale_out
trigger:
  event: checkout_started
  if: size(event.properties.items) > 0
  key: cart_id
steps:
  - wait: 1s
  - send: {channel: email, template: cart_reminder_1}
  - wait: {after_trigger: 3s}
  - send: {channel: email, template: cart_reminder_2}
"""


def journeys(tmp_path: Path) -> Path:
    target = tmp_path / "journeys"
    shutil.copytree(ROOT / "journeys" / "templates", target / "templates")
    (target / "two_emails.yaml").write_text(TWO_EMAILS)
    return target


def product_env(database_url: str, dev_env: WorkflowEnvironment, tmp_path: Path, task_queue: str) -> dict[str, str]:
    """The environment an operator gives every process: one database, one Temporal, one outbox."""
    env = {name: value for name, value in os.environ.items() if not name.startswith(("OMNICART_", "TEMPORAL_"))}
    env.update(
        {
            "PYTHONUNBUFFERED": "1",
            "TEMPORAL_ADDRESS": dev_env.client.service_client.config.target_host,
            "TEMPORAL_NAMESPACE": dev_env.client.namespace,
            "OMNICART_DATABASE_URL": database_url,
            "OMNICART_TASK_QUEUE": task_queue,
            "OMNICART_DATA_DIR": str(tmp_path / "data"),
            "OMNICART_OUTBOX_PATH": str(tmp_path / "outbox.jsonl"),
            "OMNICART_JOURNEYS_DIR": str(journeys(tmp_path)),
            # The session's master key; customers' data keys live in the shared PostgreSQL, as in production.
            "OMNICART_ENCRYPTION_KEYS": os.environ["OMNICART_ENCRYPTION_KEYS"],
        }
    )
    return env


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    started = Processes(tmp_path)
    yield started
    started.stop()


def batch(customer_id: str) -> dict[str, Any]:
    """A known customer who starts a checkout and leaves, with ids fixed so both APIs get the same."""
    now = datetime.now(UTC).isoformat()
    who = {**profile(timezone="UTC"), "email": f"{customer_id}@example.com"}
    return {
        "events": [
            {"id": f"{customer_id}-profile", "type": "customer_updated", "customer_id": customer_id,
             "timestamp": now, "source": "api", "properties": who},
            {"id": f"{customer_id}-checkout", "type": "checkout_started", "customer_id": customer_id,
             "timestamp": now, "source": "web", "properties": cart(f"{customer_id}-cart")},
        ]
    }


async def test_two_workers_and_two_apis_on_one_postgresql_send_every_message_exactly_once(
    postgres: PostgresServer, dev_env: WorkflowEnvironment, tmp_path: Path, processes: Processes
) -> None:
    database_url = postgres.create_database()
    upgrade(database_url)
    env = product_env(database_url, dev_env, tmp_path, task_queue=f"scale-out-{tmp_path.name}")
    # What a deploy does before rolling out: publish the journeys to the registry both APIs read.
    published = subprocess.run([sys.executable, "-m", "omnicart.cli", "publish", env["OMNICART_JOURNEYS_DIR"],
                                "--by", "deploy"], env=env, capture_output=True, text=True, timeout=60)
    assert published.returncode == 0 and "two_emails_scale_out" in published.stdout, published.stderr
    ports = [free_port(), free_port()]
    for index in (1, 2):
        processes.start(f"worker{index}", worker_command(), env)
    for index, port in enumerate(ports, start=1):
        processes.start(f"api{index}", api_command(port), env)
    apis = [f"http://127.0.0.1:{port}" for port in ports]
    customers = [f"cus_scale_{tmp_path.name[-6:]}_{n:02d}" for n in range(CUSTOMERS)]
    outbox = tmp_path / "outbox.jsonl"

    async with httpx.AsyncClient(timeout=30) as http:
        await asyncio.gather(*(until_healthy(http, api, processes, START_TIMEOUT) for api in apis))
        # Every batch to both APIs at once, twice over: four deliveries of each event id.
        posts = [http.post(f"{api}/v1/events", json=batch(c)) for c in customers for api in apis for _ in (1, 2)]
        answers = await asyncio.gather(*posts)
    assert [answer.status_code for answer in answers] == [202] * len(posts), [a.text for a in answers]

    expected = Counter({(c, template): 1 for c in customers for template in ("cart_reminder_1", "cart_reminder_2")})
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DELIVERY_TIMEOUT
    while sum(1 for _ in read_outbox(outbox)) < sum(expected.values()):
        if loop.time() > deadline:
            pytest.fail(f"only {len(read_outbox(outbox))} of {sum(expected.values())} messages.\n{processes.logs()}")
        await asyncio.sleep(0.25)
    await asyncio.sleep(QUIET_AFTER)  # a duplicate would land now

    sent = read_outbox(outbox)
    assert Counter((line["customer_id"], line["template"]) for line in sent) == expected
    assert len({line["message_id"] for line in sent}) == len(sent)
    with get_engine(database_url).connect() as connection:
        ledger = connection.execute(select(message_ledger.c.message_id, message_ledger.c.status)).all()
    assert sorted(ledger) == sorted((line["message_id"], "sent") for line in sent)
    assert all(process.poll() is None for process in processes.running.values()), processes.logs()


async def test_a_worker_and_an_api_refuse_to_start_on_an_unmigrated_database(
    postgres: PostgresServer, dev_env: WorkflowEnvironment, tmp_path: Path, processes: Processes
) -> None:
    env = product_env(postgres.create_database(), dev_env, tmp_path, task_queue=f"unmigrated-{tmp_path.name}")
    worker = processes.start("worker", worker_command(), env)
    api = processes.start("api", api_command(free_port()), env)

    assert await asyncio.to_thread(worker.wait, START_TIMEOUT) != 0
    assert await asyncio.to_thread(api.wait, START_TIMEOUT) != 0
    for name in ("worker", "api"):
        assert "run `omnicart db upgrade`" in processes.log(name), processes.logs()
