"""Storage throughput and size per row, on SQLite and on a throwaway PostgreSQL: for sizing.

    .venv/bin/python -m benchmarks.storage --sends 2000 --events 5000 --threads 8

Each send is what the send activity does around a provider call (claim, then mark sent); events
are recorded in batches of 10 and marked forwarded, as the ingest API does. PostgreSQL runs with
fsync off (a test server), so its numbers are an upper bound for a real one with durable commits.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import text

from omnicart.api.event_log import EventLog
from omnicart.events import Event
from omnicart.journey.model import EmailTemplate
from omnicart.ledger import MessageLedger
from omnicart.messages import SendRequest
from omnicart.storage import get_engine, upgrade
from tests.support.postgres import PostgresServer

TEMPLATE = EmailTemplate(channel="email", subject="s", html="<a href='{{ unsubscribe_url }}'>u</a>")


def request(n: int) -> SendRequest:
    return SendRequest(
        message_id=f"msg_cus{n:07d}_run_{n:07d}_reminder_1", customer_id=f"cus{n:07d}", journey="abandoned_cart",
        journey_version="v1", run_id=f"run_{n:07d}", step_id="reminder_1", channel="email",
        template_name="cart_reminder_1", template=TEMPLATE, to=[f"customer{n}@example.com"], context={},
    )


def event(n: int) -> Event:
    return Event(id=f"evt_{n:09d}", type="checkout_started", customer_id=f"cus{n % 1000:07d}",
                 timestamp=datetime.now(UTC), source="web")


def bench(url: str, sends: int, events: int, threads: int) -> None:
    upgrade(url)
    engine = get_engine(url)
    ledger, log = MessageLedger(engine), EventLog(engine)

    def send(n: int) -> None:
        ledger.claim(request(n), "sendgrid")
        ledger.mark_sent(request(n).message_id, "sendgrid", f"sg-{n}")

    def ingest(start: int) -> None:
        batch = [event(n) for n in range(start, min(start + 10, events))]
        log.record(batch)
        log.mark_forwarded([e.id for e in batch])

    with ThreadPoolExecutor(threads) as pool:
        began = time.perf_counter()
        list(pool.map(send, range(sends)))
        send_seconds = time.perf_counter() - began
        began = time.perf_counter()
        list(pool.map(ingest, range(0, events, 10)))
        event_seconds = time.perf_counter() - began
    print(f"{engine.dialect.name:>10}: {sends / send_seconds:8.0f} sends/s   {events / event_seconds:8.0f} events/s"
          f"   ({threads} threads)")
    if engine.dialect.name == "postgresql":
        with engine.connect() as connection:
            for table, rows in (("message_ledger", sends), ("message_recipients", sends), ("ingested_events", events)):
                size = connection.execute(text("SELECT pg_total_relation_size(:t)"), {"t": table}).scalar_one()
                print(f"{'':>10}  {table}: {size / rows:6.0f} bytes per row, indexes included")
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sends", type=int, default=2000)
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        bench(f"sqlite:///{Path(scratch) / 'bench.db'}", args.sends, args.events, args.threads)
    server = PostgresServer()
    server.start()
    try:
        bench(server.create_database(), args.sends, args.events, args.threads)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
