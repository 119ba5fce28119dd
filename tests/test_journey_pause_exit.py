"""Pausing a journey from the console, on the real Temporal dev server: with "runs under way exit"
the customer waiting in the flagship leaves it (exit ``journey_paused``) and gets no reminder; with
"runs go on" the reminder still goes out. Who chose which is in the console's audit."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from temporalio.testing import WorkflowEnvironment
from typer.testing import CliRunner

from omnicart.cli import app
from omnicart.console.app import create_console_app
from omnicart.console.users import ConsoleUsers
from omnicart.journey.registry import JourneyRegistry
from omnicart.routing import customer_workflow_id
from omnicart.settings import Settings, get_settings
from omnicart.storage import get_engine
from tests.console_support import CSRF, PASSWORD, console_settings, published_product
from tests.support.bundles import flagship
from tests.support.runtime import RecordingChannel, customer_worker, eventually, journal, send_event
from tests.support.timelines import Timeline, cart, profile

REMINDER_IN = timedelta(seconds=20)  # the first reminder falls due this long after the customer enters


async def _waiting_in_the_flagship(env: WorkflowEnvironment, task_queue: str) -> str:
    """A customer whose checkout was an hour ago less REMINDER_IN: the run waits for the first email."""
    customer = f"cus_{uuid.uuid4().hex[:8]}"
    timeline = Timeline("pause", [(timedelta(0), "customer_updated", "api", profile()),
                                  (timedelta(minutes=1), "checkout_started", "web", cart())])
    start = datetime.now(UTC) - timedelta(hours=1, minutes=1) + REMINDER_IN
    for event in timeline.events(start, customer):
        await send_event(env.client, task_queue, event, [flagship()])

    async def entered() -> bool:
        return any(line["action"] == "enter" for line in await journal(env.client, customer))

    await eventually(entered)
    return customer


async def _pause(env: WorkflowEnvironment, settings: Settings, runs: str) -> None:
    """An editor pauses the flagship on the console's journey page, choosing what runs under way do."""
    app = create_console_app(settings, client=env.client)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://console") as browser:
        token = CSRF.search((await browser.get("/login")).text)
        assert token is not None
        await browser.post("/login", data={"username": "editor", "password": PASSWORD, "csrf_token": token.group(1)})
        csrf = CSRF.search((await browser.get("/journeys/abandoned_cart")).text)
        assert csrf is not None
        answer = await browser.post("/journeys/abandoned_cart/pause",
                                    data={"csrf_token": csrf.group(1), "runs": runs})
        assert answer.status_code == 303, answer.text
        while app.state.exiting:  # the workflows are told in the background
            await asyncio.sleep(0.05)


def _sends(lines: list[dict[str, Any]]) -> list[str]:
    return [line["template"] for line in lines if line["action"] == "send"]


async def test_pause_with_runs_exiting_ends_the_run_and_runs_going_on_still_get_the_reminder(
    dev_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    (tmp_path / "go_on").mkdir()
    (tmp_path / "exit").mkdir()
    go_on_settings = console_settings(tmp_path / "go_on")
    exit_settings = console_settings(tmp_path / "exit")
    channel = RecordingChannel()
    async with customer_worker(dev_env.client, [channel.send_message]) as go_on_queue, \
            customer_worker(dev_env.client, [channel.send_message]) as exit_queue:
        # Two products (databases, task queues): the same journey paused each way at the same moment.
        go_on_settings = go_on_settings.model_copy(update={"task_queue": go_on_queue})
        exit_settings = exit_settings.model_copy(update={"task_queue": exit_queue})
        published_product(go_on_settings)
        published_product(exit_settings)
        staying, leaving = await asyncio.gather(_waiting_in_the_flagship(dev_env, go_on_queue),
                                                _waiting_in_the_flagship(dev_env, exit_queue))

        await asyncio.gather(_pause(dev_env, go_on_settings, "go_on"), _pause(dev_env, exit_settings, "exit"))

        async def exited() -> bool:
            return any(line["action"] == "exit" for line in await journal(dev_env.client, leaving))

        async def reminded() -> bool:
            return bool(_sends(await journal(dev_env.client, staying)))

        await eventually(exited)
        await eventually(reminded, timeout=60)
        await asyncio.sleep(2)  # the leaving customer's reminder was due at the same moment
        left = await journal(dev_env.client, leaving)
        stayed = await journal(dev_env.client, staying)
        state = await dev_env.client.get_workflow_handle(customer_workflow_id(leaving)).query("state")

    assert _sends(stayed) == ["cart_reminder_1"]
    assert [(line["action"], line.get("reason")) for line in left if line["journey"] == "abandoned_cart"] == [
        ("enter", None), ("exit", "journey_paused")]
    assert not [request for request in channel.requests if request.customer_id == leaving]
    assert state["runs"] == []

    # Recorded with who did it: the registry's history and the console's audit.
    exit_engine = get_engine(exit_settings.database())
    changes = JourneyRegistry(exit_engine).changes("abandoned_cart")
    assert (changes[-1].change, changes[-1].by) == ("paused_exit", "editor")
    audit = ConsoleUsers(exit_engine).audit("abandoned_cart", limit=1)[0]
    assert (audit.username, audit.action, audit.detail) == ("editor", "paused", "runs under way exit")
    go_on_audit = ConsoleUsers(get_engine(go_on_settings.database())).audit("abandoned_cart", limit=1)[0]
    assert go_on_audit.detail == "no new entries; runs under way go on"


async def test_omnicart_pause_exit_runs_ends_the_runs_under_way_from_the_terminal(
    dev_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    settings = console_settings(tmp_path)
    published_product(settings)
    async with customer_worker(dev_env.client, [RecordingChannel().send_message]) as task_queue:
        customer = await _waiting_in_the_flagship(dev_env, task_queue)
        environment = {"OMNICART_DATA_DIR": str(tmp_path), "OMNICART_TASK_QUEUE": task_queue,
                       "OMNICART_JOURNEY_EXIT_RATE": "20",
                       "TEMPORAL_ADDRESS": dev_env.client.service_client.config.target_host}
        get_settings.cache_clear()
        try:  # the command runs its own event loop: off this one
            result = await asyncio.to_thread(CliRunner().invoke, app, ["pause", "abandoned_cart", "--exit-runs",
                                                                      "--by", "ops@shop"], env=environment)
        finally:
            get_settings.cache_clear()
        assert result.exit_code == 0, result.output
        assert "abandoned_cart paused" in result.output and "told 1 customer workflows" in result.output

        async def exited() -> bool:
            return ("exit", "journey_paused") in [(line["action"], line.get("reason"))
                                                  for line in await journal(dev_env.client, customer)]

        await eventually(exited)
    change = JourneyRegistry(get_engine(settings.database())).changes("abandoned_cart")[-1]
    assert (change.change, change.by) == ("paused_exit", "ops@shop")
