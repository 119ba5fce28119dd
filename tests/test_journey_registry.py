"""The journey registry: what is published, in which version, paused or not, and who did it.

Every API host and worker reads the same published set from the shared database; a version, once
written, never changes, so a run keeps the journey it began on. On SQLite and on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from omnicart.api.app import create_app
from omnicart.channels.outbox import read_outbox
from omnicart.events import Event
from omnicart.journey.loader import load_journey
from omnicart.journey.registry import JourneyRegistry, PublishedJourneys, UnknownJourney, publish_files
from omnicart.quarantine import QuarantineLog
from omnicart.routing import customer_workflow_id, signal_customer
from omnicart.settings import Settings
from omnicart.signals import QUARANTINE_QUERY, REPLAY_QUARANTINE_UPDATE, IncomingEvent
from omnicart.storage import get_engine, upgrade
from tests.support.bundles import JOURNEYS, publish_folder
from tests.support.runtime import RecordingChannel, customer_worker, eventually, journal
from tests.support.short_journeys import copy_with_seconds
from tests.support.timelines import cart, describe, profile
from worker import run_worker


def _journeys(target: Path) -> Path:
    shutil.copytree(JOURNEYS, target)
    return target


def test_publishing_makes_versions_and_republishing_the_same_content_changes_nothing(
    database: str, tmp_path: Path
) -> None:
    registry = JourneyRegistry(get_engine(database))
    folder = _journeys(tmp_path / "journeys")

    changed, problems = publish_files(registry, [folder], "ada@laptop")
    assert problems == [] and sorted(changed) == [
        "abandoned_cart", "back_in_stock", "birthday", "browse_abandonment", "price_drop", "win_back"]
    first = registry.published()["abandoned_cart"]
    assert first.status == "active" and first.updated_by == "ada@laptop"

    assert publish_files(registry, [folder], "ada@laptop") == ([], [])

    flagship = folder / "abandoned_cart.yaml"
    flagship.write_text(flagship.read_text().replace("within: 7d", "within: 5d"))
    changed, _ = publish_files(registry, [folder], "grace@laptop")
    second = registry.published()["abandoned_cart"]
    assert changed == ["abandoned_cart"] and second.version != first.version
    assert second.bundle.journey.goal is not None and second.bundle.journey.goal.within == "5d"
    old = registry.version(first.version)  # a run that began on the first version still finds it
    assert old is not None and old.journey.goal is not None and old.journey.goal.within == "7d"
    assert [(c.change, c.by) for c in registry.changes("abandoned_cart")] == [
        ("published", "ada@laptop"), ("published", "grace@laptop")]


def test_a_broken_file_publishes_nothing(database: str, tmp_path: Path) -> None:
    registry = JourneyRegistry(get_engine(database))
    folder = _journeys(tmp_path / "journeys")
    (folder / "browse_abandonment.yaml").write_text("name: browse_abandonment\nsteps: []\n")

    changed, problems = publish_files(registry, [folder], "ada@laptop")
    assert changed == [] and problems and all("browse_abandonment.yaml" in p.file for p in problems)
    assert registry.published() == {}


def test_pause_stops_new_entries_on_every_host_and_resume_restores_them(database: str, tmp_path: Path) -> None:
    registry = JourneyRegistry(get_engine(database))
    publish_files(registry, [_journeys(tmp_path / "journeys")], "ada@laptop")
    host_a = PublishedJourneys(JourneyRegistry(get_engine(database)), max_age=0)
    host_b = PublishedJourneys(JourneyRegistry(get_engine(database)), max_age=0)
    assert [b.journey.name for b in host_a.bundles_for("checkout_started")] == ["abandoned_cart"]

    assert registry.pause("abandoned_cart", "grace@laptop") is True
    assert registry.pause("abandoned_cart", "grace@laptop") is False
    assert host_a.bundles_for("checkout_started") == [] and host_b.bundles_for("checkout_started") == []
    assert host_b.all()["abandoned_cart"].status == "paused"

    assert registry.resume("abandoned_cart", "grace@laptop") is True
    assert [b.journey.name for b in host_b.bundles_for("checkout_started")] == ["abandoned_cart"]
    assert [c.change for c in registry.changes("abandoned_cart")] == ["published", "paused", "resumed"]
    with pytest.raises(UnknownJourney):
        registry.pause("no_such_journey", "grace@laptop")


def test_a_host_keeps_serving_what_it_read_while_the_database_is_unreachable(database: str, tmp_path: Path) -> None:
    registry = JourneyRegistry(get_engine(database))
    publish_files(registry, [_journeys(tmp_path / "journeys")], "ada@laptop")
    clock = [0.0]
    host = PublishedJourneys(registry, max_age=1.0, clock=lambda: clock[0])
    assert host.bundles_for("checkout_started")

    registry.engine = get_engine("sqlite:////nonexistent/dir/omnicart.db")
    clock[0] = 5.0
    assert [b.journey.name for b in host.bundles_for("checkout_started")] == ["abandoned_cart"]


def test_the_cli_publishes_lists_pauses_and_resumes(tmp_path: Path) -> None:
    env = {**os.environ, "OMNICART_DATA_DIR": str(tmp_path / "data"), "COLUMNS": "200"}

    def omnicart(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "omnicart.cli", *args], env=env, capture_output=True,
                              text=True, timeout=60)

    assert omnicart("db", "upgrade").returncode == 0
    folder = _journeys(tmp_path / "journeys")
    published = omnicart("publish", str(folder), "--by", "ada")
    assert published.returncode == 0 and "abandoned_cart" in published.stdout
    assert omnicart("publish", str(folder)).stdout.strip() == "nothing changed"
    assert "paused" in omnicart("pause", "abandoned_cart", "--by", "grace").stdout
    listing = omnicart("journeys").stdout
    assert "abandoned_cart" in listing and "paused" in listing and "grace" in listing
    assert "resumed" in omnicart("resume", "abandoned_cart").stdout

    (folder / "abandoned_cart.yaml").write_text("name: abandoned_cart\n")
    broken = omnicart("publish", str(folder))
    assert broken.returncode == 1
    assert "abandoned_cart.yaml:" in broken.stderr and "nothing was published" in broken.stderr


# --- journeys travel by version, on the real dev server ------------------------------------------


@pytest_asyncio.fixture
async def product(dev_env: WorkflowEnvironment, tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, Settings]]:
    """The API and a worker as ``omnicart dev`` runs them: journeys published to the registry."""
    settings = Settings(data_dir=tmp_path / "data", journeys_dir=copy_with_seconds(tmp_path / "journeys"),
                        task_queue=f"by-ref-{uuid.uuid4()}")
    upgrade(settings.database())
    publish_folder(settings.database(), settings.journeys_dir)
    stop = asyncio.Event()
    worker = asyncio.create_task(run_worker(dev_env.client, settings, stop))
    app = create_app(settings, client=dev_env.client)
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport,
                                                                   base_url="http://omnicart.test") as http:
        yield http, settings
    stop.set()
    await worker


def _envelope(customer_id: str, event_type: str, properties: dict[str, Any]) -> dict[str, Any]:
    return {"id": f"evt_{uuid.uuid4().hex}", "type": event_type, "customer_id": customer_id,
            "timestamp": datetime.now(UTC).isoformat(), "source": "web", "properties": properties}


async def _decoded(client: Client, payloads: Any) -> list[Any]:
    codec = client.data_converter.payload_codec
    assert codec is not None
    return [json.loads(p.data) for p in await codec.decode(list(payloads))]


async def test_events_name_journeys_by_version_and_sends_name_their_template(
    product: tuple[httpx.AsyncClient, Settings], dev_env: WorkflowEnvironment
) -> None:
    http, settings = product
    customer = f"cus_{uuid.uuid4().hex[:8]}"
    response = await http.post("/v1/events", json={"events": [
        _envelope(customer, "customer_updated", profile(timezone="UTC")),
        _envelope(customer, "checkout_started", cart("cart_a")),
        _envelope(customer, "checkout_started", cart("cart_b")),
    ]})
    assert response.status_code == 202, response.text

    async def two_first_reminders() -> bool:
        lines = read_outbox(settings.outbox()) if settings.outbox().exists() else []
        return len([line for line in lines if line["template"] == "cart_reminder_1"]) == 2

    await eventually(two_first_reminders)
    history = await dev_env.client.get_workflow_handle(customer_workflow_id(customer)).fetch_history()
    version = JourneyRegistry(get_engine(settings.database())).published()["abandoned_cart"].version

    [signal] = [await _decoded(dev_env.client, e.workflow_execution_signaled_event_attributes.input.payloads)
                for e in history.events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED]
    checkouts = [incoming for incoming in signal[0] if incoming["event"]["type"] == "checkout_started"]
    assert [incoming["journeys"] for incoming in checkouts] == [[version], [version]]  # a hash, not the journey
    markers = [e for e in history.events if e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED
               and e.marker_recorded_event_attributes.marker_name == "core_local_activity"
               and b'"activity_type":"load_journeys"' in e.marker_recorded_event_attributes.details["data"]
               .payloads[0].data]
    assert len(markers) == 1  # fetched once for both carts (the low-stock branch's catalog reads are others)

    sends = [await _decoded(dev_env.client, e.activity_task_scheduled_event_attributes.input.payloads)
             for e in history.events if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED]
    [request] = sends[0]
    assert request["template"] is None and request["template_name"] == "cart_reminder_1"
    assert request["journey_version"] == version and "trigger" not in request["context"]
    [line, *_] = [line for line in read_outbox(settings.outbox()) if line["template"] == "cart_reminder_1"]
    assert line["subject"] and "Linen shirt" in json.dumps(line)


async def test_a_version_missing_from_the_registry_quarantines_the_event_until_it_is_published(
    dev_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    """The API's registry had a version the worker's did not (another database, replication lag)."""
    engine_url = f"sqlite:///{tmp_path / 'worker.db'}"
    upgrade(engine_url)
    log = QuarantineLog(get_engine(engine_url))
    fast = load_journey(copy_with_seconds(tmp_path / "journeys") / "abandoned_cart.yaml")
    customer = f"cus_{uuid.uuid4().hex[:8]}"
    async with customer_worker(dev_env.client, [RecordingChannel().send_message], quarantine=log) as task_queue:
        profile_event = Event.parse(_envelope(customer, "customer_updated", profile(timezone="UTC")))
        checkout = Event.parse(_envelope(customer, "checkout_started", cart()))
        await signal_customer(dev_env.client, task_queue, customer, [
            IncomingEvent(event=profile_event), IncomingEvent(event=checkout, journeys=[fast.version])])
        handle = dev_env.client.get_workflow_handle(customer_workflow_id(customer))

        async def quarantined() -> bool:
            return len(await handle.query(QUARANTINE_QUERY)) == 1

        await eventually(quarantined)
        [entry] = await handle.query(QUARANTINE_QUERY)
        assert entry["event_id"] == checkout.id and fast.version in entry["error"]

        JourneyRegistry(get_engine(engine_url)).publish([fast], "ops")  # the version arrives
        remaining = await handle.execute_update(REPLAY_QUARANTINE_UPDATE, result_type=list[dict[str, Any]])
        assert remaining == []
        lines = [describe(line) for line in await journal(dev_env.client, customer)]
    assert "enter" in lines
