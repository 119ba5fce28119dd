"""Anonymous visitors who become known, through ingest, on the real time-skipping Temporal server.

Ingest routes an anonymous-only event to the visitor's own workflow until a link exists; the first
link tells that workflow to hand its state over (the ``hand_over`` activity) and end; the known
customer's workflow merges it. Sends go to a recording channel, the identity links and interest to
a throwaway SQLite database.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment

from activities.identity import IdentityActivities
from omnicart.api.event_log import EventLog
from omnicart.api.ingest import Ingest
from omnicart.catalog.interest import interested_customers
from omnicart.events import Event
from omnicart.identity import IdentityLinks, anonymous_customer_id
from omnicart.journey.catalog import triggered_by
from omnicart.journey.model import JourneyBundle
from omnicart.routing import customer_workflow_id
from omnicart.settings import Settings
from omnicart.simulate import simulate
from omnicart.storage import get_engine, upgrade
from tests.support.bundles import flagship
from tests.support.identity import event, welcome
from tests.support.runtime import RecordingChannel, customer_worker, eventually, journal
from tests.support.timelines import HOUR, cart, profile


@dataclass
class Journeys:
    """The journey source ingest reads: whole bundles (no registry), as in the other tests."""

    bundles: Sequence[JourneyBundle]
    by_reference: bool = False

    def bundles_for(self, event_type: str) -> Sequence[JourneyBundle]:
        return triggered_by(self.bundles, event_type)


@dataclass
class Shop:
    env: WorkflowEnvironment
    ingest: Ingest
    channel: RecordingChannel
    settings: Settings

    async def post(self, *events: Event) -> None:
        result = await self.ingest.submit(list(events))
        assert result.accepted == len(events)

    async def state(self, customer_id: str) -> dict[str, Any]:
        handle = self.env.client.get_workflow_handle(customer_workflow_id(customer_id))
        state: dict[str, Any] = await handle.query("state", result_type=dict)
        return state

    async def status(self, customer_id: str) -> WorkflowExecutionStatus | None:
        handle = self.env.client.get_workflow_handle(customer_workflow_id(customer_id))
        return (await handle.describe()).status


@asynccontextmanager
async def shop(env: WorkflowEnvironment, tmp_path: Path, bundles: Sequence[JourneyBundle]) -> AsyncIterator[Shop]:
    channel = RecordingChannel()
    url = f"sqlite:///{tmp_path / 'omnicart.db'}"
    upgrade(url)
    async with customer_worker(env.client, [channel.send_message, IdentityActivities(env.client).hand_over]) as queue:
        settings = Settings(_env_file=None, database_url=url, data_dir=tmp_path, task_queue=queue, api_token=None)
        ingest = Ingest(env.client, queue, Journeys(bundles), EventLog(get_engine(url)), settings)
        yield Shop(env, ingest, channel, settings)


@pytest.mark.parametrize("linked_by", ["login", "checkout_with_email"])
async def test_an_anonymous_checkout_then_a_login_is_one_flagship_run_for_the_known_customer(
    time_env: WorkflowEnvironment, tmp_path: Path, linked_by: str
) -> None:
    async with shop(time_env, tmp_path, [flagship()]) as it:
        t0 = await time_env.get_current_time()
        visitor = anonymous_customer_id("ck_ada", it.settings.signing_secret)
        view = event("a1", "product_viewed", t0, anonymous_id="ck_ada", sku="SKU-1", name="Linen shirt")
        checkout = event("a2", "checkout_started", t0 + timedelta(minutes=1), anonymous_id="ck_ada", **cart())
        await it.post(view, checkout)
        await eventually(lambda: _has_held(it, visitor))
        assert await journal(time_env.client, visitor) == []  # nobody to send to: the journey waits

        if linked_by == "login":
            links = [event("k1", "customer_updated", t0 + timedelta(minutes=2), customer_id="cus_ada",
                           anonymous_id="ck_ada", **profile())]
        else:  # the checkout form asks for an email: the shop knows the customer, the same cart goes on
            links = [event("k0", "customer_updated", t0 + timedelta(minutes=2), customer_id="cus_ada", **profile()),
                     event("k1", "checkout_started", t0 + timedelta(minutes=2), customer_id="cus_ada",
                           anonymous_id="ck_ada", **cart())]
        await it.post(*links)
        await eventually(lambda: _merged(it, "cus_ada", visitor))
        await eventually(lambda: _completed(it, visitor))  # the visitor's workflow ended after handing over
        again = event("k2", "customer_updated", t0 + timedelta(minutes=3), customer_id="cus_ada",
                      anonymous_id="ck_ada")
        after = event("a3", "product_viewed", t0 + timedelta(minutes=4), anonymous_id="ck_ada", sku="SKU-2")
        await it.post(again, after)  # a repeated link, and the visitor's id once linked
        await eventually(lambda: _has_seen(it, "cus_ada", "a3"))
        await time_env.sleep(2 * HOUR)
        lines = await journal(time_env.client, "cus_ada")
        state = await it.state("cus_ada")

    assert [(line["journey"], line["action"], line.get("step")) for line in lines] == [
        ("abandoned_cart", "enter", None), ("abandoned_cart", "send", "first_reminder")]
    assert [(r.customer_id, r.template_name, r.to) for r in it.channel.requests] == [
        ("cus_ada", "cart_reminder_1", ["ada@example.com"])]
    assert state["merged"] == [visitor]
    assert list(state["carts"]) == ["cart_1"]
    page = interested_customers(get_engine(it.settings.database()), "SKU-1", now=t0)
    assert [c.customer_id for c in page.customers] == ["cus_ada"]  # the visitor's interest moved
    assert IdentityLinks(get_engine(it.settings.database()), it.settings.signing_secret).customer_for(
        "ck_ada") == "cus_ada"
    previewed = simulate([flagship()], [view, checkout, *links, again, after])
    assert [(a.customer_id, a.action, a.step) for a in previewed if a.at <= t0 + 2 * HOUR] == [
        (line["customer_id"], line["action"], line.get("step")) for line in lines]


async def test_a_customer_who_had_the_welcome_gets_none_after_merging_an_anonymous_sign_up(
    time_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    async with shop(time_env, tmp_path, [welcome()]) as it:
        t0 = await time_env.get_current_time()
        await it.post(event("k1", "customer_updated", t0, customer_id="cus_grace", **profile()))
        await eventually(lambda: _sent(it, 1))
        visitor = anonymous_customer_id("dev_grace", it.settings.signing_secret)
        newsletter = event("a1", "customer_updated", t0 + timedelta(minutes=1), anonymous_id="dev_grace",
                           first_name="Grace")
        await it.post(newsletter)
        await eventually(lambda: _has_held(it, visitor))
        await it.post(event("k2", "customer_updated", t0 + timedelta(minutes=2), customer_id="cus_grace",
                            anonymous_id="dev_grace"))
        await eventually(lambda: _merged(it, "cus_grace", visitor))
        await time_env.sleep(HOUR)
        lines = await journal(time_env.client, "cus_grace")

    assert [(line["journey"], line["action"]) for line in lines] == [
        ("welcome", "enter"), ("welcome", "send"), ("welcome", "exit")]
    assert [r.template_name for r in it.channel.requests] == ["hello"]


async def _has_held(it: Shop, customer_id: str) -> bool:
    try:
        return bool((await it.state(customer_id))["held"])
    except Exception:
        return False


async def _merged(it: Shop, customer_id: str, visitor: str) -> bool:
    try:
        return visitor in (await it.state(customer_id))["merged"]
    except Exception:
        return False


async def _has_seen(it: Shop, customer_id: str, event_id: str) -> bool:
    return event_id in (await it.state(customer_id))["seen"]


async def _completed(it: Shop, customer_id: str) -> bool:
    return await it.status(customer_id) == WorkflowExecutionStatus.COMPLETED


async def _sent(it: Shop, count: int) -> bool:
    return len(it.channel.requests) >= count
