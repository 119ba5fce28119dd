"""Journey actions reach the product database exactly once, even when a worker is killed mid-journey.

A real deployment in miniature: the API and ``python worker.py`` processes on one PostgreSQL and one
Temporal server. Six customers check out; the worker is killed (SIGKILL) while every journey waits
between its two emails; a second worker takes over; each customer then orders. Every customer must
have exactly the rows their journey produced: one enter, every step reached, two sends, one exit
and one conversion credited to the second email, none twice, none missing. The conversion is the
only row that had no send to ride along with: each journey run costs one ``record_analytics``
activity at most.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from temporalio.api.enums.v1 import EventType
from temporalio.testing import WorkflowEnvironment

from omnicart.analytics.report import journey_report, load_rows
from omnicart.analytics.store import journey_actions
from omnicart.channels.outbox import read_outbox
from omnicart.routing import customer_workflow_id
from omnicart.security.pseudonym import customer_ref
from omnicart.settings import Settings
from omnicart.storage import get_engine, upgrade
from tests.support.postgres import PostgresServer, free_port
from tests.support.processes import Processes, api_command, until_healthy, worker_command
from tests.test_scale_out import START_TIMEOUT, batch, processes, product_env

__all__ = ["processes"]  # the fixture, shared with the scale-out tests

CUSTOMERS = 6
TIMEOUT = 120.0
JOURNEY = """\
name: two_emails_scale_out
trigger:
  event: checkout_started
  if: size(event.properties.items) > 0
  key: cart_id
goal:
  event: order_placed
  within: 1h
  value: 'has(event.properties.total) ? event.properties.total : 0.0'
steps:
  - id: pause
    wait: 1s
  - id: first
    send: {channel: email, template: cart_reminder_1}
  - id: later
    wait: {after_trigger: 10s}
  - id: second
    send: {channel: email, template: cart_reminder_2}
"""


async def until(check: object, what: str, processes: Processes) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TIMEOUT
    while not check():  # type: ignore[operator]
        if loop.time() > deadline:
            pytest.fail(f"timed out waiting for {what}.\n{processes.logs()}")
        await asyncio.sleep(0.25)


async def test_a_worker_killed_mid_journey_neither_drops_nor_doubles_an_analytics_row(
    postgres: PostgresServer, dev_env: WorkflowEnvironment, tmp_path: Path, processes: Processes
) -> None:
    database_url = postgres.create_database()
    upgrade(database_url)
    env = product_env(database_url, dev_env, tmp_path, task_queue=f"analytics-{tmp_path.name}")
    (Path(env["OMNICART_JOURNEYS_DIR"]) / "two_emails.yaml").write_text(JOURNEY)
    env["OMNICART_SEND_TIMEOUT_SECONDS"] = "5"  # a send the kill interrupts is retried soon
    published = subprocess.run([sys.executable, "-m", "omnicart.cli", "publish", env["OMNICART_JOURNEYS_DIR"]],
                               env=env, capture_output=True, text=True, timeout=60)
    assert published.returncode == 0, published.stderr
    port = free_port()
    api = f"http://127.0.0.1:{port}"
    worker = processes.start("worker1", worker_command(), env)
    processes.start("api", api_command(port), env)
    customers = [f"cus_rec_{tmp_path.name[-6:]}_{n}" for n in range(CUSTOMERS)]
    outbox = tmp_path / "outbox.jsonl"
    engine = get_engine(database_url)

    async with httpx.AsyncClient(timeout=30) as http:
        await until_healthy(http, api, processes, START_TIMEOUT)
        for customer in customers:
            assert (await http.post(f"{api}/v1/events", json=batch(customer))).status_code == 202
        await until(lambda: len(read_outbox(outbox)) >= CUSTOMERS, "every first email", processes)
        worker.kill()  # SIGKILL mid-journey: every run waits for its second email
        worker.wait()
        processes.start("worker2", worker_command(), env)
        await until(lambda: len(read_outbox(outbox)) >= 2 * CUSTOMERS, "every second email", processes)
        now = datetime.now(UTC).isoformat()
        for customer in customers:
            order = {"id": f"{customer}-order", "type": "order_placed", "customer_id": customer, "timestamp": now,
                     "source": "web", "properties": {"order_id": f"o-{customer}", "total": 79.5, "currency": "USD"}}
            assert (await http.post(f"{api}/v1/events", json={"events": [order]})).status_code == 202

        def converted() -> bool:
            with engine.connect() as connection:
                rows = connection.execute(select(journey_actions.c.action_id)
                                          .where(journey_actions.c.action == "convert")).all()
            return len(rows) == CUSTOMERS

        await until(converted, "every conversion recorded", processes)
        await asyncio.sleep(2)  # a duplicate or a late row would land now

    with engine.connect() as connection:
        rows = connection.execute(select(journey_actions)).mappings().all()
    second_emails = {line["customer_id"]: line["message_id"] for line in read_outbox(outbox)
                     if line["template"] == "cart_reminder_2"}
    for customer in customers:
        mine = [row for row in rows if row["customer_ref"] == customer_ref(customer)]
        assert Counter(row["action"] for row in mine) == {"enter": 1, "step": 4, "send": 2, "exit": 1, "convert": 1}
        assert sorted(row["step"] for row in mine if row["action"] == "step") == ["first", "later", "pause", "second"]
        [convert] = [row for row in mine if row["action"] == "convert"]
        assert (convert["message_id"], convert["value"], convert["currency"]) == (second_emails[customer], 79.5, "USD")
    assert all("@" not in str(dict(row)) for row in rows)  # no email address (opaque ids are kept as they are)

    # The report over these rows, as a marketer would read it.
    report = journey_report("two_emails_scale_out", *load_rows(engine, "two_emails_scale_out"))
    assert (report.entered_customers, report.recipients, report.converted_customers) == (CUSTOMERS,) * 3
    assert report.revenue == {"USD": 79.5 * CUSTOMERS} and report.exits == {"completed": CUSTOMERS}
    assert [(group.key, group.sent, group.delivered) for group in report.groups if group.sent] == [
        ("first", CUSTOMERS, CUSTOMERS), ("second", CUSTOMERS, CUSTOMERS)]

    # Cost: the conversion is the only batch that could not ride along with a send.
    client = dev_env.client
    for customer in customers:
        history = await client.get_workflow_handle(customer_workflow_id(customer)).fetch_history()
        recorded = [event for event in history.events
                    if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
                    and event.activity_task_scheduled_event_attributes.activity_type.name == "record_analytics"]
        assert len(recorded) == 1
    assert Settings(_env_file=None).record_analytics  # on by default
