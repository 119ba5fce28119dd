"""The Segment-compatible API on the Temporal dev server: calls shaped like Segment's HTTP Tracking
API examples and e-commerce spec, authenticated as Segment authenticates, and what comes out."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.testing import WorkflowEnvironment
from typer.testing import CliRunner

from omnicart.api.app import create_app
from omnicart.cli import app as cli
from omnicart.connectors.quarantine import ConnectorQuarantine, Delivery
from omnicart.identity import IdentityLinks
from omnicart.journey.catalog import JourneyCatalog
from omnicart.settings import Settings, get_settings
from omnicart.storage import get_engine
from tests.support.platform_payloads import SEGMENT_KEY, segment_auth, segment_checkout_started
from tests.test_api import (
    catalog,  # noqa: F401  (a fixture)
    event_log,
    has_workflow,
    make_settings,
    serving,
    signalled,
)


def segment_settings(tmp_path: Path, **overrides: Any) -> Settings:
    return make_settings(tmp_path, segment_write_keys=f"other-source-key,{SEGMENT_KEY}", **overrides)


def user() -> str:
    return f"user_{uuid.uuid4().hex[:10]}"


async def test_identify_track_and_page_become_profile_checkout_and_page_view(
    tmp_path: Path, dev_env: WorkflowEnvironment, catalog: JourneyCatalog  # noqa: F811
) -> None:
    settings = segment_settings(tmp_path)
    someone = user()
    identify = {"userId": someone, "messageId": "m-identify", "timestamp": "2026-11-22T00:30:08.276Z",
                "traits": {"email": "pgibbons@example.com", "firstName": "Peter", "industry": "Technology"},
                "context": {"ip": "24.5.68.47", "timezone": "Europe/Istanbul", "locale": "tr-TR"}}
    page = {"userId": someone, "messageId": "m-page", "name": "Home", "timestamp": "2026-11-22T00:31:00Z",
            "properties": {"url": "https://shop.example/", "path": "/", "title": "Shop", "referrer": ""}}
    async with serving(create_app(settings, client=dev_env.client, catalog=catalog)) as http:
        answers = [
            await http.post("/v1/segment/identify", json=identify, headers=segment_auth()),
            await http.post("/v1/segment/track", json=segment_checkout_started(someone, "m-track"),
                            headers=segment_auth()),
            await http.post("/v1/segment/page", json=page, headers=segment_auth()),
        ]

    assert [answer.status_code for answer in answers] == [200, 200, 200]
    assert all(answer.json()["success"] is True and answer.json()["accepted"] == 1 for answer in answers)
    profile, checkout, viewed = [incoming.event for incoming in await signalled(dev_env.client, someone)]
    assert (profile.id, profile.type) == ("segment:m-identify", "customer_updated")
    assert profile.properties == {"email": "pgibbons@example.com", "first_name": "Peter",
                                  "timezone": "Europe/Istanbul", "locale": "tr-TR"}
    assert checkout.type == "checkout_started"
    assert checkout.timestamp == datetime(2026, 11, 22, 0, 30, 12, 984000, tzinfo=UTC)
    assert checkout.properties == {
        "cart_id": "50314b8e9bcf000000000000",
        "items": [
            {"sku": "45790-32", "name": "Monopoly: 3rd Edition", "quantity": 1, "price": 19.0,
             "url": "https://www.example.com/product/path", "image_url": "https://www.example.com/product/path.jpg"},
            {"sku": "46493-32", "name": "Uno Card Game", "quantity": 2, "price": 3.0},
        ],
        "total": 25.0,
        "currency": "USD",
    }
    assert (viewed.type, viewed.properties["url"], viewed.properties["name"]) == (
        "page_viewed", "https://shop.example/", "Home")


async def test_a_batch_at_segments_own_path_is_deduped_by_message_id_and_skew_corrected(
    tmp_path: Path, dev_env: WorkflowEnvironment, catalog: JourneyCatalog  # noqa: F811
) -> None:
    settings = segment_settings(tmp_path)
    someone = user()
    # The sender's clock is an hour fast: its sentAt and originalTimestamp are both an hour ahead.
    fast = datetime.now(UTC) + timedelta(hours=1)
    viewed = {"type": "track", "event": "Product Viewed", "userId": someone, "messageId": "m-view",
              "originalTimestamp": (fast - timedelta(seconds=30)).isoformat(),
              "properties": {"product_id": "507f1f77bcf86cd799439011", "sku": "G-32", "name": "Monopoly",
                             "price": 18.99, "currency": "USD"}}
    batch = {"batch": [viewed, {"type": "identify", "userId": someone, "messageId": "m-id",
                                "traits": {"email": "a@example.com"}}],
             "sentAt": fast.isoformat(), "context": {"library": {"name": "analytics-python"}}}
    async with serving(create_app(settings, client=dev_env.client, catalog=catalog)) as http:
        first = await http.post("/segment/v1/batch", json=batch, headers=segment_auth())
        again = await http.post("/v1/segment/batch", json=batch, headers=segment_auth())

    assert first.json()["accepted"] == 2 and again.json() == {
        "success": True, "accepted": 0, "duplicates": 2, "quarantined": 0, "reason": None}
    product, _ = [incoming.event for incoming in await signalled(dev_env.client, someone)]
    assert product.properties == {"sku": "G-32", "name": "Monopoly", "price": 18.99, "currency": "USD"}
    skew = abs(product.timestamp - (datetime.now(UTC) - timedelta(seconds=30)))
    assert skew < timedelta(seconds=20), "the sender's hour of clock skew was taken out"


async def test_a_missing_or_unknown_write_key_is_401(
    tmp_path: Path, dev_env: WorkflowEnvironment, catalog: JourneyCatalog  # noqa: F811
) -> None:
    settings = segment_settings(tmp_path)
    someone = user()
    wrong = [{}, segment_auth("wrong-key"), {"Authorization": "Bearer segment-write-key-1"},
             {"Authorization": "Basic !!!"}]
    async with serving(create_app(settings, client=dev_env.client, catalog=catalog)) as http:
        statuses = [(await http.post("/v1/segment/track", json=segment_checkout_started(someone, "m-x"),
                                     headers=headers)).status_code for headers in wrong]

    assert statuses == [401] * 4
    assert event_log(settings).get("segment:m-x") is None
    assert not await has_workflow(dev_env.client, someone)


async def test_an_anonymous_visitors_calls_are_taken_and_an_identify_links_them_to_the_customer(
    tmp_path: Path, dev_env: WorkflowEnvironment, catalog: JourneyCatalog  # noqa: F811
) -> None:
    """Segment's ``anonymousId`` is omnicart's ``anonymous_id``: the visitor's checkout is kept for
    them, and the ``identify`` that carries both ids links them (``docs/IDENTITY.md``)."""
    settings = segment_settings(tmp_path)
    someone = user()
    visitor = "507f191e810c19729de860ea"  # the anonymousId of the spec's example
    identify = {"type": "identify", "userId": someone, "anonymousId": visitor, "messageId": f"i-{someone}",
                "traits": {"email": "ada@example.com", "firstName": "Ada"}}
    nobody = {"type": "track", "event": "Checkout Started", "messageId": f"n-{someone}", "properties": {}}
    async with serving(create_app(settings, client=dev_env.client, catalog=catalog)) as http:
        anonymous = await http.post("/v1/segment/batch", headers=segment_auth(), json={"batch": [
            segment_checkout_started(None, f"anon-{someone}"), nobody]})
        linked = await http.post("/v1/segment/identify", headers=segment_auth(), json=identify)
        kept = (await http.get("/v1/connectors/quarantine", params={"connector": "segment"})).json()

    assert anonymous.status_code == 200 and anonymous.json()["accepted"] == 1
    assert [entry["reason"] for entry in kept] == ["anonymous: neither userId nor anonymousId"]
    logged = event_log(settings).get(f"segment:anon-{someone}")
    assert logged is not None and logged.customer_id == ""  # an anonymous visitor's: no customer id
    assert linked.status_code == 200, linked.text
    links = IdentityLinks(get_engine(settings.database()), settings.signing_secret)
    assert links.customer_for(visitor) == someone


async def test_unmapped_calls_are_quarantined_and_a_mapping_fix_replays_them(
    tmp_path: Path, dev_env: WorkflowEnvironment, catalog: JourneyCatalog  # noqa: F811
) -> None:
    settings = segment_settings(tmp_path)
    someone = user()
    wish = {"type": "track", "event": "Product Added to Wishlist", "userId": someone, "messageId": f"w-{someone}",
            "properties": {"sku": "MUG-1", "name": "Mug"}}
    async with serving(create_app(settings, client=dev_env.client, catalog=catalog)) as http:
        answer = await http.post("/v1/segment/batch", headers=segment_auth(), json={"batch": [wish]})
        kept = (await http.get("/v1/connectors/quarantine", params={"connector": "segment"})).json()

    assert answer.status_code == 200 and answer.json()["quarantined"] == 1 and answer.json()["accepted"] == 0
    assert [entry["reason"] for entry in kept] == [
        "track event 'Product Added to Wishlist' is not in the Segment mapping"]

    # The shop maps its own event (declared in its plan: plan/wishlist_added.yaml) and replays.
    mapping = tmp_path / "segment.yaml"
    mapping.write_text(
        "track:\n  Product Added to Wishlist:\n    event: wishlist_added\n"
        "    properties: {sku: [sku, product_id], name: [name]}\npage: null\n"
    )
    fixed = settings.model_copy(update={"segment_mapping_file": mapping})
    async with serving(create_app(fixed, client=dev_env.client, catalog=catalog)) as http:
        replayed = (await http.post("/v1/connectors/quarantine/replay", params={"connector": "segment"})).json()
        left = (await http.get("/v1/connectors/quarantine", params={"connector": "segment"})).json()

    assert [outcome["answer"]["accepted"] for outcome in replayed] == [1]
    assert left == []
    [wished] = [incoming.event for incoming in await signalled(dev_env.client, someone)]
    assert (wished.type, wished.properties) == ("wishlist_added", {"sku": "MUG-1", "name": "Mug"})


def test_operators_list_the_connector_quarantine_from_the_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = segment_settings(tmp_path)
    delivery = Delivery(connector="segment", delivery_id="m-anon", topic="track Checkout Started",
                        payload=b'{"anonymousId": "a1"}', occurred_at=datetime.now(UTC), context={})
    ConnectorQuarantine(get_engine(settings.database())).keep(delivery, "anonymous: no userId")
    monkeypatch.setenv("OMNICART_DATABASE_URL", settings.database())
    get_settings.cache_clear()
    try:
        listed = CliRunner().invoke(cli, ["connectors", "quarantine", "list"], env={"COLUMNS": "200"})
    finally:
        get_settings.cache_clear()

    assert listed.exit_code == 0, listed.output
    assert "m-anon" in listed.output and "anonymous: no userId" in listed.output
    assert "a1" not in listed.output.replace("m-anon", ""), "payloads are not printed"
