"""Analytics capture in the running product: outcomes heard through the signed SendGrid webhook and
``/v1/events`` on the real API and worker (loopback SendGrid, real Temporal), and ``forget``.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pydantic import SecretStr
from sqlalchemy import func, select
from temporalio.testing import WorkflowEnvironment

from omnicart.analytics.rows import JourneyActionRow, MessageOutcomeRow, action_id, outcome_id
from omnicart.analytics.store import journey_actions, message_outcomes, record_actions, record_outcomes
from omnicart.privacy.forget import forget_customer
from omnicart.settings import Settings
from omnicart.storage import get_engine, upgrade
from tests.providers.sendgrid_server import Recorded as MailSend
from tests.test_channels_end_to_end import (  # noqa: F401 (fixtures)
    Providers,
    abandoned_checkout,
    envelope,
    eventually,
    mails_of,
    new_customer,
    product,
    product_settings,
    providers,
    published,
    sendgrid_event,
    service_account_key,
    webhook_key,
)


def outcomes_of(settings: Settings, message_id: str) -> list[tuple[str, bool]]:
    with get_engine(settings.database()).connect() as conn:
        rows = conn.execute(
            select(message_outcomes.c.outcome, message_outcomes.c.machine).where(
                message_outcomes.c.message_id == message_id
            )
        ).all()
    return sorted((row.outcome, row.machine) for row in rows)


async def test_opens_by_apple_mails_proxy_are_stored_apart_and_a_redelivered_webhook_once(
    dev_env: WorkflowEnvironment, providers: Providers, tmp_path: Path  # noqa: F811
) -> None:
    settings = product_settings(providers, tmp_path, published(tmp_path, flagship=True))
    customer = new_customer()
    async with product(dev_env, settings) as http:
        response = await http.post("/v1/events", json=abandoned_checkout(customer, f"cart_{uuid.uuid4().hex[:6]}"))
        assert response.status_code == 202, response.text

        async def first_email() -> MailSend | None:
            return next(iter(mails_of(providers.sendgrid, customer)), None)

        reminder = await eventually(first_email, "SendGrid to receive the first reminder")
        message_id = reminder.json["custom_args"]["message_id"]
        events = [
            sendgrid_event("delivered", reminder, providers.sendgrid),
            # Apple Mail's privacy proxy fetches the pixel as the mail arrives; SendGrid marks it.
            sendgrid_event("open", reminder, providers.sendgrid, sg_machine_open=True, useragent="Mozilla/5.0"),
            sendgrid_event("open", reminder, providers.sendgrid, sg_machine_open=False, useragent="Mozilla/5.0"),
        ]
        for _ in range(2):  # SendGrid redelivers a batch it thinks failed
            body, headers = providers.sendgrid_signed(events)
            response = await http.post("/webhooks/sendgrid", content=body, headers=headers)
            # The machine open reaches no journey (engagement.opened counts people): 2 forwarded.
            assert response.status_code == 200 and response.json()["forwarded"] == 2, response.text
        # The shop's own link tracking reports a click through the events API.
        click = envelope(customer, "message_clicked", {"channel": "email", "message_id": message_id})
        for _ in range(2):
            assert (await http.post("/v1/events", json=click)).status_code == 202

    assert outcomes_of(settings, message_id) == [
        ("clicked", False),
        ("delivered", False),
        ("opened", False),
        ("opened", True),
    ]


async def test_forget_deletes_the_customers_analytics_rows_only(dev_env: WorkflowEnvironment, tmp_path: Path) -> None:
    secret = SecretStr("forget-analytics-secret")
    settings = Settings(_env_file=None, data_dir=tmp_path / "data", signing_secret=secret)
    upgrade(settings.database())
    engine = get_engine(settings.database())
    at = datetime(2026, 11, 1, 10, tzinfo=UTC)
    leaving, staying = f"{uuid.uuid4().hex[:8]}@example.com", new_customer()
    rows = [
        JourneyActionRow(action_id=action_id(who, "r1", seq), at=at + timedelta(minutes=seq), customer_id=who,
                         journey="abandoned_cart", version="v1", run_id="r1", action=action,
                         message_id=f"m_{who}" if action == "send" else None)
        for who in (leaving, staying)
        for seq, action in enumerate(("enter", "step", "send"))
    ]
    record_actions(engine, rows, secret)
    record_outcomes(engine, [
        MessageOutcomeRow(outcome_id=outcome_id(f"m_{who}", "delivered"), message_id=f"m_{who}",
                          outcome="delivered", at=at)
        for who in (leaving, staying)
    ])

    report = await forget_customer(dev_env.client, settings, leaving, timeout=timedelta(seconds=1))
    again = await forget_customer(dev_env.client, settings, leaving, timeout=timedelta(seconds=1))

    assert (report.analytics_rows_deleted, again.analytics_rows_deleted) == (4, 0)  # 3 actions, 1 outcome
    assert "analytics rows deleted: 4" in report.lines()
    with engine.connect() as conn:
        left = conn.execute(select(func.count()).select_from(journey_actions)).scalar()
        outcomes = conn.execute(select(message_outcomes.c.message_id)).scalars().all()
    assert (left, outcomes) == (3, [f"m_{staying}"])
