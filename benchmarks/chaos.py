"""The chaos run: journeys keep their promise while workers die and the servers restart.

    .venv/bin/python -m benchmarks.chaos                      # 1,000 journeys, 20 worker kills
    .venv/bin/python -m benchmarks.chaos --journeys 100 --kills 5

Outside the CI test command (it takes minutes). It starts what production runs, as OS processes:
a durable PostgreSQL (commits survive a crash), a Temporal dev server on a file database (its state
survives a restart), two ``python worker.py`` and one API under uvicorn. It posts N flagship
journeys (hours played as seconds: each lasts about 72 s) through the API, retrying as a producer
must on 5xx or a refused connection, and meanwhile:

- SIGKILLs a worker every few seconds (``--kills`` times in all) and starts it again;
- kills the Temporal server (SIGKILL) once and restarts it on the same database;
- restarts PostgreSQL once, immediately (as a crash would: no checkpoint).

What every customer should receive comes from ``omnicart simulate`` on the same events (the
interpreter the workflows run). At the end the outbox (one line per message the provider accepted)
is compared with it: each expected message exactly once, 0 lost, 0 doubled, nothing unexpected.
Exit status 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import signal
import time
from collections import Counter
from datetime import UTC, datetime

import httpx

from benchmarks.deployment import deployed, post_until_taken
from benchmarks.simulate_speed import customer_events
from omnicart.channels.outbox import read_outbox
from omnicart.dev import TemporalDevServer
from omnicart.events import Event
from omnicart.journey.loader import load_journey
from omnicart.simulate import simulate
from tests.support.postgres import PostgresServer
from tests.support.processes import Processes

QUIET_AFTER = 15.0  # once every expected message is out, how long nothing more may arrive
BATCH = 25


class Chaos:
    """What goes wrong during the run, and when."""

    def __init__(self, processes: Processes, workers: list[str], temporal: TemporalDevServer,
                 postgres: PostgresServer, kills: int, every: float) -> None:
        self.processes, self.workers, self.temporal, self.postgres = processes, workers, temporal, postgres
        self.kills_wanted, self.every = kills, every
        self.kills = self.temporal_restarts = self.postgres_restarts = 0
        self.random = random.Random(7)

    async def run(self) -> None:
        temporal_at, postgres_at = self.kills_wanted // 3, 2 * self.kills_wanted // 3
        while self.kills < self.kills_wanted:
            await asyncio.sleep(self.every * self.random.uniform(0.5, 1.5))
            name = self.random.choice(self.workers)
            self.processes.kill(name)
            self.kills += 1
            await asyncio.sleep(self.random.uniform(0.2, 2.0))
            self.processes.restart(name)
            if self.kills == temporal_at:
                await self.restart_temporal()
            if self.kills == postgres_at:
                await asyncio.to_thread(self.postgres.restart)
                self.postgres_restarts += 1
            print(f"  chaos: {self.kills} worker kills, {self.temporal_restarts} Temporal and "
                  f"{self.postgres_restarts} PostgreSQL restarts", flush=True)

    async def restart_temporal(self) -> None:
        process = self.temporal.process
        assert process is not None
        process.send_signal(signal.SIGKILL)
        await process.wait()
        await asyncio.sleep(3)  # down for a moment: the API answers 503, workers retry their polls
        await self.temporal.start()
        self.temporal_restarts += 1


async def run(journeys: int, kills: int, every: float, timeout: float) -> bool:
    started = time.monotonic()
    async with deployed("chaos", workers=2) as product:
        now = datetime.now(UTC)
        customers = [f"chaos-{n:05d}" for n in range(journeys)]
        events = {c: customer_events(c, now) for c in customers}
        expected = Counter((action.customer_id, action.template) for action in simulate(
            load_journey(product.flagship), [Event.parse(e) for c in customers for e in events[c]])
            if action.action == "send")
        print(f"{journeys} journeys, {sum(expected.values())} messages expected (simulate); "
              f"{kills} worker kills, one Temporal and one PostgreSQL restart", flush=True)

        async with httpx.AsyncClient(timeout=30) as http:
            chaos = Chaos(product.processes, product.workers, product.temporal, product.postgres, kills, every)
            chaotic = asyncio.create_task(chaos.run())
            attempts = 0
            for start in range(0, journeys, BATCH):
                batch = [e for c in customers[start:start + BATCH] for e in events[c]]
                attempts += await post_until_taken(http, product.url, batch)
            print(f"  posted {journeys} journeys in {time.monotonic() - started:.0f}s "
                  f"({attempts} requests for {-(-journeys // BATCH)} batches)", flush=True)
            deadline = time.monotonic() + timeout
            while not chaotic.done() or len(read_outbox(product.outbox)) < sum(expected.values()):
                if time.monotonic() > deadline:
                    break
                await asyncio.sleep(1)
            await chaotic
            await asyncio.sleep(QUIET_AFTER)  # a double would land now
        sent = read_outbox(product.outbox)
        got = Counter((line["customer_id"], line["template"]) for line in sent)
        lost = sum((expected - got).values())
        doubled = sum(count - 1 for key, count in got.items() if count > 1 and key in expected)
        unexpected = sum(count for key, count in got.items() if key not in expected)
        ids_doubled = len(sent) - len({line["message_id"] for line in sent})
        print(f"after {time.monotonic() - started:.0f}s: {chaos.kills} worker SIGKILLs, "
              f"{chaos.temporal_restarts} Temporal restart, {chaos.postgres_restarts} PostgreSQL restart")
        print(f"  messages expected {sum(expected.values())}, sent {len(sent)}: lost {lost}, doubled {doubled} "
              f"(message ids sent twice: {ids_doubled}), unexpected {unexpected}")
        ok = lost == doubled == unexpected == ids_doubled == 0
        if not ok:
            print(product.processes.logs()[-6000:])
        return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--journeys", type=int, default=1000)
    parser.add_argument("--kills", type=int, default=20, help="worker SIGKILLs (at least)")
    parser.add_argument("--every", type=float, default=5.0, help="mean seconds between two kills")
    parser.add_argument("--timeout", type=float, default=1200.0, help="seconds to wait for every message")
    args = parser.parse_args()
    ok = asyncio.run(run(args.journeys, args.kills, args.every, args.timeout))
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
