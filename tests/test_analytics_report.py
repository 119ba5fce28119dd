"""The journey report: exact numbers for a hand-written timeline, from memory, from the store (SQLite
and PostgreSQL), through ``omnicart report`` in three formats and ``GET /v1/journeys/{name}/stats``.

The timeline (abandoned_cart, 1 November 2026, and one run from October) has every case the report
must get right: two currencies, a holdout run, a machine open beside a person's, a skip with its
reason, a held send, a run still waiting, conversions credited to a message and one with none.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import select

from omnicart.analytics.report import JourneyReport, journey_report, load_rows
from omnicart.analytics.rows import JourneyActionRow, MessageOutcomeRow, action_id, outcome_id
from omnicart.analytics.store import journey_actions, message_outcomes, record_actions, record_outcomes
from omnicart.api.app import create_app
from omnicart.security.pseudonym import customer_ref
from omnicart.settings import Settings
from omnicart.storage import get_engine, upgrade

JOURNEY = "abandoned_cart"
T0 = datetime(2026, 11, 1, 10, 0, tzinfo=UTC)
NOVEMBER = T0.replace(hour=0)
ADA = "ada@example.com"  # a customer id that is an email: the store must keep only its keyed hash
SECRET = SecretStr("analytics-test-secret")


class Timeline:
    """Rows as the workflow records them: ids from (customer, run, the customer's action counter)."""

    def __init__(self) -> None:
        self.actions: list[JourneyActionRow] = []
        self.outcomes: list[MessageOutcomeRow] = []

    def act(self, customer: str, run: str, action: str, at: datetime, **fields: Any) -> None:
        self.actions.append(
            JourneyActionRow(
                action_id=action_id(customer, run, len(self.actions)),
                at=at,
                customer_id=customer,
                journey=fields.pop("journey", JOURNEY),
                version=fields.pop("version", "v1"),
                run_id=run,
                action=action,
                **fields,
            )
        )

    def step(self, customer: str, run: str, step: str, at: datetime, **fields: Any) -> None:
        self.act(customer, run, "step", at, step=step, **fields)

    def told(self, message_id: str, outcome: str, at: datetime, *, machine: bool = False, event: str = "") -> None:
        self.outcomes.append(
            MessageOutcomeRow(
                outcome_id=outcome_id(message_id, outcome, event or f"{outcome}-{len(self.outcomes)}"),
                message_id=message_id,
                outcome=outcome,
                machine=machine,
                at=at,
            )
        )


def hours(n: float) -> datetime:
    return T0 + timedelta(hours=n)


def timeline() -> Timeline:
    t = Timeline()
    # ada (variant ten): email, then an SMS she converts after (80 EUR), and she replies STOP to it.
    t.act(ADA, "r1", "enter", hours(0))
    t.step(ADA, "r1", "first_reminder", hours(0), variant="ten", experiment="discount")
    t.act(ADA, "r1", "send", hours(1), step="first_reminder", channel="email", message_id="m1", variant="ten")
    t.step(ADA, "r1", "second_reminder", hours(1), variant="ten")
    t.act(ADA, "r1", "send", hours(5), step="second_reminder", channel="sms", message_id="m2", variant="ten")
    t.act(ADA, "r1", "convert", hours(6), value=80.0, currency="EUR", message_id="m2", variant="ten")
    t.act(ADA, "r1", "exit", hours(6), reason="order_placed", variant="ten")
    # bob (variant twenty): no SMS consent; the last chance is held for quiet hours; converts in USD.
    t.act("bob", "r2", "enter", hours(0.2))
    t.step("bob", "r2", "first_reminder", hours(0.2), variant="twenty", experiment="discount")
    t.act("bob", "r2", "send", hours(1.2), step="first_reminder", channel="email", message_id="m3", variant="twenty")
    t.step("bob", "r2", "second_reminder", hours(1.2), variant="twenty")
    t.act("bob", "r2", "skip", hours(5.2), step="second_reminder", channel="sms", reason="no_sms_consent",
          variant="twenty")
    t.step("bob", "r2", "last_chance", hours(5.2), variant="twenty")
    t.act("bob", "r2", "hold", hours(23), step="last_chance", channel="email", reason="quiet_hours",
          variant="twenty")
    t.act("bob", "r2", "send", hours(30), step="last_chance", channel="email", message_id="m4", variant="twenty")
    t.act("bob", "r2", "convert", hours(31), value=120.0, currency="USD", message_id="m4", variant="twenty")
    t.act("bob", "r2", "exit", hours(31), reason="order_placed", variant="twenty")
    # cem is in the journey's holdout: walked silently, still converts (50 EUR, no message).
    t.act("cem", "r3", "enter", hours(0.3), holdout="journey")
    t.step("cem", "r3", "first_reminder", hours(0.3), holdout="journey")
    t.act("cem", "r3", "skip", hours(1.3), step="first_reminder", channel="email", reason="holdout", holdout="journey")
    t.act("cem", "r3", "convert", hours(2), value=50.0, currency="EUR", holdout="journey")
    t.act("cem", "r3", "exit", hours(2), reason="order_placed", holdout="journey")
    # dan (variant ten): his email bounced; he waits at the second reminder now.
    t.act("dan", "r4", "enter", hours(0.5))
    t.step("dan", "r4", "first_reminder", hours(0.5), variant="ten", experiment="discount")
    t.act("dan", "r4", "send", hours(1.5), step="first_reminder", channel="email", message_id="m5", variant="ten")
    t.step("dan", "r4", "second_reminder", hours(1.5), variant="ten")
    # eve orders before any message (30 EUR): a conversion with no message.
    t.act("eve", "r5", "enter", hours(0.7))
    t.step("eve", "r5", "first_reminder", hours(0.7))
    t.act("eve", "r5", "convert", hours(0.8), value=30.0, currency="EUR")
    t.act("eve", "r5", "exit", hours(0.8), reason="order_placed")
    # fay entered in October; her conversion on 2 November belongs to that run.
    t.act("fay", "r6", "enter", T0 - timedelta(days=31))
    t.step("fay", "r6", "first_reminder", T0 - timedelta(days=31))
    t.act("fay", "r6", "send", T0 - timedelta(days=31), step="first_reminder", channel="email", message_id="m6")
    t.act("fay", "r6", "convert", hours(24), value=10.0, currency="EUR", message_id="m6")
    t.act("fay", "r6", "exit", hours(24), reason="order_placed")
    # Another journey's row is not this journey's.
    t.act("gus", "r7", "enter", hours(1), journey="browse_abandonment")

    t.told("m1", "delivered", hours(1.1))
    t.told("m1", "opened", hours(1.2), machine=True)  # Apple Mail's proxy, not ada
    t.told("m2", "delivered", hours(5.1))
    t.told("m2", "unsubscribed", hours(5.5))
    t.told("m3", "delivered", hours(1.3))
    t.told("m3", "opened", hours(1.3), machine=True)
    t.told("m3", "opened", hours(2))  # bob himself
    t.told("m3", "opened", hours(3))  # and again: still one message opened
    t.told("m3", "clicked", hours(2.1))
    t.told("m4", "delivered", hours(30.1))
    t.told("m4", "opened", hours(30.5))
    t.told("m5", "bounced", hours(1.6))
    t.told("m6", "delivered", T0 - timedelta(days=31))
    t.told("m_elsewhere", "opened", hours(2))  # a message of no run here
    return t


def by_key(report: JourneyReport) -> dict[str | None, dict[str, Any]]:
    return {group.key: group.model_dump(exclude={"key"}) for group in report.groups}


def counts(**values: Any) -> dict[str, Any]:
    """A group's numbers: zero unless given."""
    zero: dict[str, Any] = {
        "sent": 0, "delivered": 0, "opened": 0, "machine_opened": 0, "clicked": 0, "bounced": 0, "failed": 0,
        "unsubscribed": 0, "skipped": {}, "held": 0, "waiting": 0, "conversions": 0, "revenue": {},
    }
    return {**zero, **values}


def check_november_by_step(report: JourneyReport) -> None:
    assert report.category == "marketing"
    assert (report.entered_runs, report.entered_customers, report.active_runs, report.recipients) == (5, 5, 1, 3)
    assert report.exits == {"order_placed": 4}
    assert (report.converted_runs, report.converted_customers, report.uncredited_conversions) == (4, 4, 2)
    assert report.conversion_rate == pytest.approx(4 / 5)
    assert report.revenue == {"EUR": 160.0, "USD": 120.0}
    # Runs outside the holdout made 110 EUR and 120 USD; three customers were sent something.
    assert report.revenue_per_recipient == {"EUR": 36.67, "USD": 40.0}
    assert report.treated.model_dump() == {
        "entered_customers": 4, "converted_customers": 3, "conversion_rate": 0.75,
        "revenue": {"EUR": 110.0, "USD": 120.0},
    }
    assert report.holdout.model_dump() == {
        "entered_customers": 1, "converted_customers": 1, "conversion_rate": 1.0, "revenue": {"EUR": 50.0},
    }
    assert [group.key for group in report.groups] == ["first_reminder", "second_reminder", "last_chance"]
    assert by_key(report) == {
        "first_reminder": counts(sent=3, delivered=2, opened=1, machine_opened=1, clicked=1, bounced=1,
                                 skipped={"holdout": 1}),
        "second_reminder": counts(sent=1, delivered=1, unsubscribed=1, skipped={"no_sms_consent": 1}, waiting=1,
                                  conversions=1, revenue={"EUR": 80.0}),
        "last_chance": counts(sent=1, delivered=1, opened=1, held=1, conversions=1, revenue={"USD": 120.0}),
    }


def test_the_report_of_a_known_timeline() -> None:
    t = timeline()
    report = journey_report(JOURNEY, t.actions, t.outcomes, since=NOVEMBER)

    check_november_by_step(report)


def test_without_a_window_every_run_counts_with_all_its_rows() -> None:
    t = timeline()
    report = journey_report(JOURNEY, t.actions, t.outcomes)

    assert (report.entered_runs, report.recipients, report.converted_customers) == (6, 4, 5)
    assert report.revenue == {"EUR": 170.0, "USD": 120.0}
    assert by_key(report)["first_reminder"]["sent"] == 4 and by_key(report)["first_reminder"]["conversions"] == 1
    # Only October: fay's run, with the conversion she made in November.
    october = journey_report(JOURNEY, t.actions, t.outcomes, until=NOVEMBER)
    assert (october.entered_runs, october.converted_runs, october.revenue) == (1, 1, {"EUR": 10.0})


def test_grouped_by_variant_and_by_channel() -> None:
    t = timeline()

    variants = by_key(journey_report(JOURNEY, t.actions, t.outcomes, by="variant", since=NOVEMBER))
    channels = by_key(journey_report(JOURNEY, t.actions, t.outcomes, by="channel", since=NOVEMBER))

    assert variants["ten"] == counts(sent=3, delivered=2, machine_opened=1, bounced=1, unsubscribed=1, waiting=1,
                                     conversions=1, revenue={"EUR": 80.0})
    assert variants["twenty"] == counts(sent=2, delivered=2, opened=2, clicked=1, skipped={"no_sms_consent": 1},
                                        held=1, conversions=1, revenue={"USD": 120.0})
    assert variants[None] == counts(skipped={"holdout": 1})
    assert channels["email"] == counts(sent=4, delivered=3, opened=2, machine_opened=1, clicked=1, bounced=1,
                                       skipped={"holdout": 1}, held=1, conversions=1, revenue={"USD": 120.0})
    assert channels["sms"] == counts(sent=1, delivered=1, unsubscribed=1, skipped={"no_sms_consent": 1},
                                     conversions=1, revenue={"EUR": 80.0})
    assert channels[None]["waiting"] == 1  # dan waits at a step, which has no channel


def test_the_store_keeps_each_row_once_and_reports_the_same_numbers(database: str) -> None:
    engine = get_engine(database)
    t = timeline()

    first = record_actions(engine, t.actions, SECRET), record_outcomes(engine, t.outcomes)
    again = record_actions(engine, t.actions, SECRET), record_outcomes(engine, t.outcomes)
    actions, outcomes = load_rows(engine, JOURNEY, since=NOVEMBER)

    assert first == (len(t.actions), len(t.outcomes)) and again == (0, 0)
    check_november_by_step(journey_report(JOURNEY, actions, outcomes, since=NOVEMBER))
    assert len(load_rows(engine, JOURNEY)[0]) == len([row for row in t.actions if row.journey == JOURNEY])
    with engine.connect() as conn:
        refs = set(conn.execute(select(journey_actions.c.customer_ref)).scalars())
        stored_outcomes = conn.execute(select(message_outcomes.c.message_id)).scalars().all()
    assert customer_ref(ADA, SECRET) in refs and not any("@" in ref for ref in refs)
    assert len(stored_outcomes) == len(t.outcomes)


# -- omnicart report and GET /v1/journeys/{name}/stats ---------------------------------------------


def stored_timeline(tmp_path: Path) -> Settings:
    settings = Settings(_env_file=None, data_dir=tmp_path / "data", signing_secret=SECRET)
    upgrade(settings.database())
    t = timeline()
    record_actions(get_engine(settings.database()), t.actions, SECRET)
    record_outcomes(get_engine(settings.database()), t.outcomes)
    return settings


def omnicart(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMNICART_DATA_DIR": str(settings.data_dir), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "omnicart.cli", *args], env=env, capture_output=True, text=True,
                          timeout=120)


def test_the_cli_prints_the_report_as_json_csv_and_a_table(tmp_path: Path) -> None:
    settings = stored_timeline(tmp_path)
    window = ("--since", "2026-11-01")

    as_json = omnicart(settings, "report", JOURNEY, *window, "--format", "json")
    as_csv = omnicart(settings, "report", JOURNEY, *window, "--format", "csv", "--by", "channel")
    as_table = omnicart(settings, "report", JOURNEY, *window)
    unknown = omnicart(settings, "report", "no_such_journey")

    assert as_json.returncode == 0, as_json.stderr
    check_november_by_step(JourneyReport.model_validate_json(as_json.stdout))
    assert as_csv.returncode == 0, as_csv.stderr
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert [row["channel"] for row in rows] == ["", "email", "sms"]
    email = rows[1]
    assert (email["sent"], email["opened"], email["machine_opened"], email["held"]) == ("4", "2", "1", "1")
    assert (email["skipped_holdout"], email["skipped_no_sms_consent"], email["revenue_USD"]) == ("1", "0", "120.00")
    assert as_table.returncode == 0, as_table.stderr
    lines = as_table.stdout.splitlines()
    assert "entered: 5 runs, 5 customers; still in the journey: 1; sent to: 3 customers" in lines
    assert "revenue: 160.00 EUR, 120.00 USD; per recipient: 36.67 EUR, 40.00 USD" in lines
    second = next(line for line in lines if "second_reminder" in line)
    assert [cell.strip() for cell in second.strip("│ ").split("│")] == [
        "second_reminder", "1", "1", "0", "0", "0", "0", "0", "1", "0", "1", "1", "80.00 EUR", "no_sms_consent 1",
    ]
    assert unknown.returncode == 1 and "no run of journey 'no_such_journey'" in unknown.stderr


@asynccontextmanager
async def api(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, catalog=None)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://omnicart.test") as http:
        yield http


async def test_the_api_answers_the_same_report(tmp_path: Path) -> None:
    settings = stored_timeline(tmp_path).model_copy(update={"api_token": SecretStr("t0ken")})
    auth = {"Authorization": "Bearer t0ken"}

    async with api(settings) as http:
        response = await http.get(f"/v1/journeys/{JOURNEY}/stats", params={"since": "2026-11-01"}, headers=auth)
        by_variant = await http.get(f"/v1/journeys/{JOURNEY}/stats", params={"by": "variant"}, headers=auth)
        unknown = await http.get("/v1/journeys/no_such_journey/stats", headers=auth)
        no_token = await http.get(f"/v1/journeys/{JOURNEY}/stats")
        bad_group = await http.get(f"/v1/journeys/{JOURNEY}/stats", params={"by": "colour"}, headers=auth)

    assert response.status_code == 200, response.text
    report = JourneyReport.model_validate(response.json())
    check_november_by_step(report)
    assert report.since == NOVEMBER
    assert by_variant.status_code == 200 and {g["key"] for g in by_variant.json()["groups"]} == {"ten", "twenty", None}
    assert unknown.status_code == 404
    assert no_token.status_code == 401
    assert bad_group.status_code == 422


def test_the_simulated_report_previews_a_timeline(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, data_dir=tmp_path / "data")
    start = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
    profile = {"email": "kim@example.com", "first_name": "Kim", "timezone": "UTC", "consent": {"email": True}}
    cart = {"cart_id": "c1", "currency": "EUR", "total": 40.0, "restore_url": "https://shop.example/c1",
            "items": [{"sku": "MUG-1", "name": "Mug", "quantity": 1, "price": 40.0}]}

    def event(n: int, kind: str, customer: str, at: datetime, **properties: Any) -> str:
        return json.dumps({"id": f"evt_{n}", "type": kind, "customer_id": customer, "timestamp": at.isoformat(),
                           "source": "web", "properties": properties})

    lines = [
        event(1, "customer_updated", "cus_kim", start, **profile),
        event(2, "checkout_started", "cus_kim", start, **cart),
        event(3, "message_opened", "cus_kim", start + timedelta(hours=2), step="first_reminder", machine=True),
        event(4, "customer_updated", "cus_lev", start, **{**profile, "email": "lev@example.com"}),
        event(5, "checkout_started", "cus_lev", start, **cart),
        event(6, "order_placed", "cus_lev", start + timedelta(minutes=10), order_id="o1", total=40.0,
              currency="EUR"),
    ]
    timeline_file = tmp_path / "timeline.jsonl"
    timeline_file.write_text("\n".join(lines) + "\n")
    journeys = Path(__file__).resolve().parent.parent / "journeys"

    done = omnicart(settings, "report", JOURNEY, "--simulate", str(timeline_file), "--journeys", str(journeys),
                    "--format", "json")

    assert done.returncode == 0, done.stderr
    report = JourneyReport.model_validate_json(done.stdout)
    assert (report.entered_customers, report.converted_customers, report.recipients) == (2, 1, 1)
    assert report.exits.get("order_placed") == 1 and report.uncredited_conversions == 1
    first = next(group for group in report.groups if group.key == "first_reminder")
    assert (first.sent, first.machine_opened, first.opened) == (1, 1, 0)


def test_a_message_skipped_out_of_stock_at_send_time_is_a_skip_not_a_send() -> None:
    """The journal says send, then skip out_of_stock with the same message id: nobody got it."""
    t = Timeline()
    t.act("ann", "r1", "enter", hours(0))
    t.act("ann", "r1", "send", hours(1), step="first_reminder", channel="email", message_id="m_ann")
    t.act("ann", "r1", "skip", hours(1), step="first_reminder", channel="email", message_id="m_ann",
          reason="out_of_stock")
    t.act("bo", "r2", "enter", hours(0))
    t.act("bo", "r2", "send", hours(1), step="first_reminder", channel="email", message_id="m_bo")
    report = journey_report(JOURNEY, t.actions, [], by="step")
    [group] = report.groups
    assert (group.sent, group.skipped) == (1, {"out_of_stock": 1})
    assert report.recipients == 1
