"""The ledger, the event log and discount codes on SQLite and on PostgreSQL, with concurrent callers.

Several workers and API processes share one PostgreSQL in production: "claimed once", "recorded
once" and "redeemed once" must hold when callers race, and times must come back as the UTC
instants that were stored whatever the server's time zone (the test server's is New York).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from sqlalchemy import func, select

from omnicart.api.event_log import EventLog, ingested_events
from omnicart.discounts import DiscountBook
from omnicart.events import Event
from omnicart.journey.model import SmsTemplate
from omnicart.ledger import ClaimState, LedgerStatus, MessageLedger
from omnicart.messages import SendRequest
from omnicart.storage import get_engine

T = TypeVar("T")
RACERS = 8


def race(call: Callable[[int], T], racers: int = RACERS) -> list[T]:
    """Run ``call(i)`` on ``racers`` threads released at the same moment."""
    start = threading.Barrier(racers)

    def run(index: int) -> T:
        start.wait()
        return call(index)

    with ThreadPoolExecutor(racers) as pool:
        return list(pool.map(run, range(racers)))


def sms(message_id: str, customer_id: str = "cus_1", phone: str = "+14155550100") -> SendRequest:
    return SendRequest(
        message_id=message_id,
        customer_id=customer_id,
        journey="abandoned_cart",
        journey_version="v1",
        run_id="run_1",
        step_id="reminder",
        channel="sms",
        template_name="cart_reminder_sms",
        template=SmsTemplate(channel="sms", body="Your cart is waiting"),
        to=[phone],
        context={},
    )


def event(event_id: str, customer_id: str = "cus_1") -> Event:
    return Event(
        id=event_id,
        type="page_viewed",
        customer_id=customer_id,
        timestamp=datetime(2026, 7, 1, 23, 30, tzinfo=UTC),
        source="web",
    )


# -- message ledger ----------------------------------------------------------------------------


def test_racing_attempts_of_one_send_let_exactly_one_call_the_provider(database: str) -> None:
    ledger = MessageLedger(get_engine(database))

    claims = race(lambda _: ledger.claim(sms("msg_race"), "twilio"))

    assert sorted(claim.state for claim in claims).count(ClaimState.SEND) == 1
    assert {claim.state for claim in claims} == {ClaimState.SEND, ClaimState.IN_DOUBT}
    entry = ledger.find("msg_race")
    assert entry is not None and entry.status == LedgerStatus.SENDING and entry.attempts == 1
    assert entry.recipients == ("+14155550100",)


def test_a_deferred_send_is_taken_again_by_one_attempt_only(database: str) -> None:
    ledger = MessageLedger(get_engine(database))
    ledger.claim(sms("msg_deferred"), "twilio")
    ledger.mark_deferred("msg_deferred", "429 Too Many Requests")

    claims = race(lambda _: ledger.claim(sms("msg_deferred"), "twilio"))

    assert [claim.state for claim in claims].count(ClaimState.SEND) == 1
    entry = ledger.find("msg_deferred")
    assert entry is not None and entry.status == LedgerStatus.SENDING and entry.attempts == 2


def test_ledger_times_are_the_utc_instants_stored_and_states_read_back(database: str) -> None:
    ledger = MessageLedger(get_engine(database))
    before = datetime.now(UTC)
    ledger.claim(sms("msg_times"), "twilio")
    ledger.mark_sent("msg_times", "twilio", "SM123")
    after = datetime.now(UTC)

    entry = ledger.find("msg_times")
    assert entry is not None
    assert entry.status == LedgerStatus.SENT and entry.provider_message_id == "SM123"
    for moment in (entry.created_at, entry.claimed_at, entry.updated_at, entry.sent_at):
        assert moment is not None and moment.utcoffset() == timedelta(0)
        assert before - timedelta(seconds=1) <= moment <= after + timedelta(seconds=1)
    assert [found.message_id for found in ledger.with_status(LedgerStatus.SENT)] == ["msg_times"]


def test_provider_evidence_is_recorded_once_even_when_webhooks_race(database: str) -> None:
    ledger = MessageLedger(get_engine(database))
    ledger.claim(sms("msg_evidence"), "twilio")

    known = race(lambda _: ledger.record_event("msg_evidence", "delivered"))

    assert known == [True] * RACERS
    entry = ledger.find("msg_evidence")
    assert entry is not None and entry.status == LedgerStatus.SENT and entry.evidence == ("delivered",)
    assert ledger.record_event("msg_unknown", "delivered") is False


def test_a_shared_phone_maps_back_to_every_customer_newest_first(database: str) -> None:
    ledger = MessageLedger(get_engine(database))
    ledger.claim(sms("msg_a", customer_id="cus_a"), "twilio")
    ledger.claim(sms("msg_b", customer_id="cus_b"), "twilio")

    assert ledger.find_customers_by_recipient("sms", " +14155550100 ") == ["cus_b", "cus_a"]
    assert ledger.find_customer_by_recipient("sms", "+14155550199") is None


# -- event log ---------------------------------------------------------------------------------


def test_api_processes_recording_overlapping_batches_at_once_record_each_id_once(database: str) -> None:
    log = EventLog(get_engine(database))
    ids = [f"evt_{n:04d}" for n in range(1000)]  # the largest batch the API takes

    def record(racer: int) -> list[str]:
        # Each racer holds the same ids in a different order, as separate API processes would.
        batch = ids[racer:] + ids[:racer] if racer % 2 else list(reversed(ids))
        return [forwarded.id for forwarded in log.record([event(event_id) for event_id in batch]).to_forward]

    forwarded = race(record)

    # Nobody has forwarded yet, so every racer forwards every id (the workflow dedupes by id).
    assert all(sorted(ids_forwarded) == ids for ids_forwarded in forwarded)
    with get_engine(database).connect() as connection:
        assert connection.execute(select(func.count()).select_from(ingested_events)).scalar_one() == len(ids)
    log.mark_forwarded(ids)
    again = log.record([event(event_id) for event_id in ids])
    assert again.to_forward == [] and again.duplicates == ids


def test_api_processes_marking_big_overlapping_batches_forwarded_at_once_do_not_deadlock(database: str) -> None:
    log = EventLog(get_engine(database))
    ids = [f"evt_{n:04d}" for n in range(1500)]  # several statements' worth of ids per transaction
    log.record([event(event_id) for event_id in ids])

    race(lambda racer: log.mark_forwarded(ids if racer % 2 else list(reversed(ids))), racers=4)

    assert log.unforwarded() == []
    assert log.record([event(ids[0])]).duplicates == [ids[0]]


def test_the_event_log_keeps_times_as_utc_instants(database: str) -> None:
    log = EventLog(get_engine(database))
    received = datetime(2026, 7, 2, 3, 15, tzinfo=UTC)
    log.record([event("evt_time")], received_at=received)

    logged = log.get("evt_time")
    assert logged is not None
    assert logged.timestamp == datetime(2026, 7, 1, 23, 30, tzinfo=UTC) and logged.timestamp.utcoffset() == timedelta(0)
    assert logged.received_at == received and logged.forwarded is False
    assert [pending.event_id for pending in log.unforwarded()] == ["evt_time"]


# -- discount codes ----------------------------------------------------------------------------


def test_racing_retries_issue_one_code_and_racing_checkouts_redeem_it_once(database: str) -> None:
    book = DiscountBook(get_engine(database), "secret")

    issued = race(lambda _: book.issue(customer_id="cus_1", message_id="msg_discount", percent=10))
    assert len({discount.code for discount in issued}) == 1
    code = issued[0].code
    assert issued[0].issued_at.utcoffset() == timedelta(0)

    redeemed = race(lambda racer: book.redeem(code.lower(), f"order_{racer}"))

    assert redeemed.count(True) == 1
    checked = book.check(code)
    assert checked is not None and checked.redeemed_at is not None and checked.redeemed_at.utcoffset() == timedelta(0)
    assert checked.order_id == f"order_{redeemed.index(True)}"
