"""Personal data in Temporal, erasure and retention, end to end on the real Temporal dev server.

The product as it runs (ingest API, worker, customer workflow, send activity, the official SendGrid
and Twilio SDKs against the loopback providers) for a customer whose id *is* their email address,
then Temporal's history read the way anyone with the UI or CLI could: with a client that has no
codec. Then the right to be forgotten and retention, through the API and the worker.
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.message import Message
from pydantic import SecretStr
from sqlalchemy import select
from temporalio.api.common.v1 import Payload
from temporalio.api.history.v1 import History
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment
from typer.testing import CliRunner

from omnicart.api.event_log import ingested_events
from omnicart.channels.outbox import read_outbox
from omnicart.cli import app
from omnicart.ledger import message_ledger, message_recipients
from omnicart.routing import customer_workflow_id
from omnicart.security.codec import KEY_ID, UndecryptablePayload
from omnicart.security.pseudonym import keyed_hash
from omnicart.settings import Settings, get_settings
from omnicart.storage import get_engine, upgrade
from omnicart.temporal import payload_codec
from tests.providers.sendgrid_server import Reply as SendGridReply
from tests.support.bundles import publish_folder
from tests.support.short_journeys import copy_with_seconds
from tests.support.timelines import cart
from tests.test_channels_end_to_end import (  # the providers' far ends, shared with the channel tests
    Providers,
    abandoned_checkout,
    customer_state,
    envelope,
    eventually,
    journal_until,
    product,
    product_settings,
    providers,  # noqa: F401  (a fixture)
    published,
    service_account_key,  # noqa: F401  (a fixture)
    webhook_key,  # noqa: F401  (a fixture)
)


def payloads_in(message: Message) -> Iterator[Payload]:
    """Every Payload anywhere in a protobuf message: inputs, results, signals, failures' attributes."""
    if isinstance(message, Payload):
        yield message
        return
    for field, value in message.ListFields():
        if field.message_type is None:
            continue  # a scalar
        if field.message_type.GetOptions().map_entry:
            items = list(value.values())
        else:
            items = [value] if isinstance(value, Message) else list(value)
        for item in items:
            if isinstance(item, Message):
                yield from payloads_in(item)


def product_payloads(history: History) -> list[Payload]:
    """Every payload the product wrote into a history.

    Temporal's own bookkeeping of a local activity (``load_journeys``) and of a patch is left out,
    after checking that it holds only that: sequence number, attempt, activity id and type, and
    times; the patch's id.
    """
    markers = [event.marker_recorded_event_attributes for event in history.events
               if event.HasField("marker_recorded_event_attributes")]
    bookkeeping = [payload for marker in markers for key, entry in marker.details.items() if key == "data"
                   for payload in entry.payloads]
    for payload in bookkeeping:
        assert set(json.loads(payload.data)) <= {"seq", "attempt", "activity_id", "activity_type", "complete_time",
                                                 "backoff", "original_schedule_time", "activation_index"}
    # A patch marker (``workflow.patched``) names the change, and nothing else.
    patches = [payload for marker in markers for key, entry in marker.details.items() if key == "patch-data"
               for payload in entry.payloads]
    for payload in patches:
        assert set(json.loads(payload.data)) <= {"id", "deprecated"}
    bookkeeping += patches
    # ... and so does the search attribute Temporal sets for it (TemporalChangeVersion).
    for event in history.events:
        if event.HasField("upsert_workflow_search_attributes_event_attributes"):
            fields = event.upsert_workflow_search_attributes_event_attributes.search_attributes.indexed_fields
            assert set(fields) <= {"TemporalChangeVersion"}
            bookkeeping += list(fields.values())
    return [payload for payload in payloads_in(history) if payload not in bookkeeping]


async def codecless(client: Client) -> Client:
    """What the Temporal UI or CLI without our codec server sees: a client with no codec."""
    return await Client.connect(client.service_client.config.target_host, namespace=client.namespace)


async def history_of(client: Client, workflow_id: str, run_id: str | None = None) -> History:
    history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
    return History(events=history.events)


# --- 1. nothing personal readable in Temporal without the codec --------------------------------


async def test_no_email_phone_or_name_is_readable_in_temporal_without_the_codec(
    dev_env: WorkflowEnvironment,
    providers: Providers,  # noqa: F811  (the fixture imported above)
    tmp_path: Path,
) -> None:
    tag = uuid.uuid4().hex[:8]
    email = f"grace.{tag}@example.org"
    phone = f"+1415555{random.randrange(10_000):04d}"
    first_name = f"Zelinda{tag}"
    customer = email  # this shop uses email addresses as customer ids
    providers.sendgrid.script(
        # The first reminder meets a provider outage whose message quotes the customer: retried,
        # so the failure is stored in the history.
        SendGridReply.error(503, f"mailbox of {first_name} <{email}> is over quota"),
        SendGridReply(),
        # The last chance fails for good, the error quoting the address.
        SendGridReply.error(400, f"The to address {email} does not exist", "personalizations.0.to"),
    )
    settings = product_settings(providers, tmp_path, published(tmp_path, flagship=True))
    async with product(dev_env, settings) as http:
        batch = abandoned_checkout(customer, f"cart_{tag}", email=email, phone=phone, first_name=first_name)
        response = await http.post("/v1/events", json=batch)
        assert response.status_code == 202, response.text
        lines = await journal_until(dev_env.client, customer, "skip email cart_last_chance email_failed")
    assert lines[:4] == [
        "enter", "send email cart_reminder_1", "send sms cart_reminder_sms", "send email cart_last_chance"
    ]
    assert providers.twilio.sent(), "the SMS went out"

    workflow_id = customer_workflow_id(customer)
    raw = await codecless(dev_env.client)
    history = await history_of(raw, workflow_id)
    description = await raw.get_workflow_handle(workflow_id).describe()
    stored = history.SerializeToString() + description.raw_description.SerializeToString()
    for personal in (email, phone, phone.removeprefix("+"), first_name):
        assert personal.encode() not in stored, f"{personal} is readable in Temporal"
        assert personal not in workflow_id
    # The product sets no search attributes: only Temporal's own are there (build ids; the patch of a change).
    assert set(description.raw_description.workflow_execution_info.search_attributes.indexed_fields) <= {
        "BuildIds", "TemporalChangeVersion"}

    payloads = product_payloads(history)
    assert len(payloads) >= 9  # start input, the events signal, three sends, their results, a failure
    assert {payload.metadata["encoding"] for payload in payloads} == {b"binary/encrypted"}
    assert {payload.metadata[KEY_ID] for payload in payloads} == {payloads[0].metadata[KEY_ID]}
    assert payloads[0].metadata[KEY_ID].startswith(b"dek/"), "the customer's own data key"
    failures = [
        event.activity_task_started_event_attributes.last_failure
        for event in history.events
        if event.activity_task_started_event_attributes.HasField("last_failure")
    ]
    assert failures and {failure.message for failure in failures} == {"Encoded failure"}

    # With the codec, everything is there.
    readable = b"".join(payload.data for payload in await payload_codec(settings).decode(payloads))
    for personal in (email, phone, first_name):
        assert personal.encode() in readable
    [failure] = await payload_codec(settings).decode([failures[0].encoded_attributes])
    assert first_name in json.loads(failure.data)["message"]


# --- 2. the right to be forgotten ----------------------------------------------------------------


def outbox_settings(tmp_path: Path, **values: Any) -> Settings:
    settings = Settings(
        _env_file=None,
        data_dir=tmp_path / "data",
        journeys_dir=copy_with_seconds(tmp_path / "journeys", durations={"1h": "1s", "24h": "60s", "72h": "90s"}),
        task_queue=f"privacy-{uuid.uuid4()}",
        **values,
    )
    upgrade(settings.database())
    publish_folder(settings.database(), settings.journeys_dir)
    return settings


def outbox_lines(settings: Settings, customer_id: str) -> list[dict[str, Any]]:
    if not settings.outbox().exists():
        return []
    return [line for line in read_outbox(settings.outbox()) if line["customer_id"] == customer_id]


async def first_message(settings: Settings, customer_id: str) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        lines = outbox_lines(settings, customer_id)
        return lines[0] if lines else None

    return await eventually(probe, "the first reminder in the outbox")


def rows(settings: Settings, table: Any, customer_id: str) -> list[Any]:
    with get_engine(settings.database()).connect() as conn:
        return list(conn.execute(select(table).where(table.c.customer_id == customer_id)))


async def test_forget_ends_the_workflow_shreds_its_history_and_pseudonymises_the_database(
    dev_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    token = "back-office-token"
    settings = outbox_settings(tmp_path, api_token=SecretStr(token))
    auth = {"Authorization": f"Bearer {token}"}
    customer = f"cus_{uuid.uuid4().hex[:10]}"
    email = f"linus.{uuid.uuid4().hex[:6]}@example.org"
    workflow_id = customer_workflow_id(customer)
    async with product(dev_env, settings) as http:
        batch = abandoned_checkout(customer, "cart_forget", email=email)
        assert (await http.post("/v1/events", json=batch, headers=auth)).status_code == 202
        await first_message(settings, customer)
        old_run = (await dev_env.client.get_workflow_handle(workflow_id).describe()).run_id

        refused = await http.post(f"/v1/customers/{customer}/forget")
        assert refused.status_code == 401
        response = await http.post(f"/v1/customers/{customer}/forget", headers=auth)
        assert response.status_code == 200, response.text
        report = response.json()
        assert report["workflow"] == "erased its state and ended"
        assert report["data_key_deleted"] is True
        assert report["erased"]["recipients_deleted"] >= 1
        assert report["erased"]["rows_pseudonymised"] >= 3  # two events and at least one message
        assert report["erased"]["outbox_lines_deleted"] >= 1

        old = await dev_env.client.get_workflow_handle(workflow_id, run_id=old_run).describe()
        assert old.status == WorkflowExecutionStatus.COMPLETED
        pseudonym = keyed_hash(customer, settings.signing_secret)
        for table in (message_ledger, ingested_events):
            assert rows(settings, table, customer) == []
            assert rows(settings, table, pseudonym)
        assert rows(settings, message_recipients, customer) == []
        assert all(row.error is None for row in rows(settings, message_ledger, pseudonym))
        assert outbox_lines(settings, customer) == []

        # The old history is still in Temporal, and nobody can read it any more.
        old_payloads = product_payloads(await history_of(dev_env.client, workflow_id, old_run))
        assert old_payloads
        for payload in old_payloads:
            try:
                await dev_env.client.data_converter.decode([payload])
            except UndecryptablePayload:
                continue
            raise AssertionError("a payload of the forgotten customer's history can still be decrypted")

        again = (await http.post(f"/v1/customers/{customer}/forget", headers=auth)).json()
        assert again["workflow"] == "already closed" and again["data_key_deleted"] is False
        assert not any(again["erased"].values())

        # A later event for the same id starts afresh, with a new key and nothing of the old state.
        later = envelope(customer, "checkout_started", cart("cart_after"))
        assert (await http.post("/v1/events", json=later, headers=auth)).status_code == 202

        async def new_run() -> str | None:
            description = await dev_env.client.get_workflow_handle(workflow_id).describe()
            return description.run_id if description.run_id != old_run else None

        fresh_run = await eventually(new_run, "a new workflow run")
        state = await customer_state(dev_env.client, customer)
        assert state.profile.email is None and list(state.carts) == ["cart_after"]
        fresh = list(payloads_in(await history_of(dev_env.client, workflow_id, fresh_run)))
        assert fresh[0].metadata[KEY_ID] != old_payloads[0].metadata[KEY_ID]
        await dev_env.client.get_workflow_handle(workflow_id).terminate(reason="end of test")


# --- 3. retention -------------------------------------------------------------------------------


async def test_the_worker_removes_recipients_errors_and_outbox_lines_past_retention(
    dev_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    settings = outbox_settings(tmp_path, retention_days=2 / 86_400, retention_interval_seconds=0.5)
    customer = f"ada.{uuid.uuid4().hex[:8]}@example.org"  # an email as customer id: pseudonymised too
    async with product(dev_env, settings) as http:
        batch = abandoned_checkout(customer, "cart_retention", email=customer)
        assert (await http.post("/v1/events", json=batch)).status_code == 202
        sent = await first_message(settings, customer)
        assert rows(settings, message_recipients, customer), "the recipient is recorded when sending"

        async def removed() -> bool:
            return not (
                outbox_lines(settings, customer)
                or rows(settings, message_recipients, customer)
                or rows(settings, message_ledger, customer)
            )

        await eventually(removed, "retention to remove the customer's personal data", timeout=15)
    pseudonymised = rows(settings, message_ledger, keyed_hash(customer, settings.signing_secret))
    assert [row.message_id for row in pseudonymised] == [sent["message_id"]]
    assert pseudonymised[0].status == "sent", "what is not personal stays: the ledger still says it was sent"
    await dev_env.client.get_workflow_handle(customer_workflow_id(customer)).terminate(reason="end of test")


def test_retention_apply_command_removes_old_outbox_lines_and_says_what_it_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    outbox = tmp_path / "data" / "outbox.jsonl"
    outbox.parent.mkdir(parents=True)
    now = datetime.now(UTC)
    old, recent = (
        {"sent_at": (now - age).isoformat(), "customer_id": "cus_1", "to": [f"{name}@example.org"]}
        for name, age in (("old", timedelta(days=40)), ("recent", timedelta(days=1)))
    )
    outbox.write_text(json.dumps(old) + "\n" + json.dumps(recent) + "\n")
    upgrade(f"sqlite:///{tmp_path / 'data' / 'omnicart.db'}")  # as a deployment does before anything else
    monkeypatch.chdir(tmp_path)  # no stray .env
    monkeypatch.setenv("OMNICART_DATA_DIR", str(tmp_path / "data"))
    get_settings.cache_clear()
    try:
        unset = CliRunner().invoke(app, ["retention", "apply"])
        monkeypatch.setenv("OMNICART_RETENTION_DAYS", "30")
        get_settings.cache_clear()
        applied = CliRunner().invoke(app, ["retention", "apply"])
    finally:
        get_settings.cache_clear()
    assert unset.exit_code == 1 and "OMNICART_RETENTION_DAYS" in unset.output
    assert applied.exit_code == 0, applied.output
    assert "outbox lines deleted: 1" in applied.output
    assert [line["to"] for line in read_outbox(outbox)] == [["recent@example.org"]]


def test_forget_command_erases_and_is_safe_to_repeat(
    dev_env: WorkflowEnvironment, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    customer = f"nobody.{uuid.uuid4().hex[:6]}@example.org"
    outbox = tmp_path / "data" / "outbox.jsonl"
    outbox.parent.mkdir(parents=True)
    outbox.write_text(json.dumps({"customer_id": customer, "to": [customer]}) + "\n")
    upgrade(f"sqlite:///{tmp_path / 'data' / 'omnicart.db'}")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OMNICART_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("TEMPORAL_ADDRESS", dev_env.client.service_client.config.target_host)
    monkeypatch.setenv("TEMPORAL_NAMESPACE", dev_env.client.namespace)
    get_settings.cache_clear()
    try:
        first = CliRunner().invoke(app, ["forget", customer])
        second = CliRunner().invoke(app, ["forget", customer])
    finally:
        get_settings.cache_clear()
    assert first.exit_code == 0, first.output
    assert f"workflow {customer_workflow_id(customer)}: none" in first.output
    assert "outbox lines deleted: 1" in first.output and customer not in first.output
    assert second.exit_code == 0 and "outbox lines deleted: 0" in second.output
    assert outbox.read_text() == ""
