"""The console's page load times on the embedded default (SQLite) with a seeded demo: 10,000
customers and a month of analytics (``omnicart.console.demo``). Target: every page under 300 ms.

    .venv/bin/python -m benchmarks.console_pages --customers 10000

Each page is asked ``--repeat`` times through the console app in this process (server time: what
the database and rendering cost, without a browser's own work); the median and the slowest are
printed. Customers' runs need Temporal and are left out (the page shows it is not connected).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from fastapi.testclient import TestClient
from pydantic import SecretStr

from omnicart.console.app import create_console_app
from omnicart.console.demo import seed_demo
from omnicart.console.users import ConsoleUsers
from omnicart.settings import Settings
from omnicart.storage import get_engine
from tests.console_support import CSRF, PASSWORD

ROOT = Path(__file__).resolve().parent.parent
TARGET_MS = 300.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--keep", type=Path, help="Seed into this folder once and reuse it on later runs.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        folder = args.keep or Path(scratch)
        settings = Settings(_env_file=None, data_dir=folder, journeys_dir=ROOT / "journeys",
                            signing_secret=SecretStr("benchmark"))
        if not (folder / "seeded").exists():
            started = time.perf_counter()
            demo = seed_demo(settings, customers=args.customers)
            print(f"seeded {args.customers:,} customers, {len(demo.events):,} events in "
                  f"{time.perf_counter() - started:.1f} s")
            ConsoleUsers(get_engine(settings.database())).create("bench", PASSWORD, "viewer")
            (folder / "seeded").touch()
        with TestClient(create_console_app(settings), follow_redirects=False) as client:  # starts as served
            token = CSRF.search(client.get("/login").text)
            assert token is not None
            client.post("/login", data={"username": "bench", "password": PASSWORD, "csrf_token": token.group(1)})
            time_pages(client, args.customers, args.repeat)


def time_pages(client: TestClient, customers: int, repeat: int) -> None:
    """Each page ``repeat`` times, in the order a marketer opens them after the console started."""
    someone = f"cus_{customers // 2:05d}"
    pages = ["/", "/journeys/abandoned_cart", "/journeys/win_back", "/journeys/browse_abandonment",
             f"/customers?q={someone[:-1]}", f"/customers?q={someone}@example.com", f"/customers/{someone}",
             "/preview"]
    print(f"{'page':<40} {'first ms':>10} {'median ms':>10} {'max ms':>10}")
    for page in pages:
        times = []
        for _ in range(repeat):
            begun = time.perf_counter()
            answer = client.get(page)
            times.append((time.perf_counter() - begun) * 1000)
            assert answer.status_code == 200, (page, answer.status_code)
        flag = "" if statistics.median(times) < TARGET_MS else "  over target"
        print(f"{page:<40} {times[0]:>10.1f} {statistics.median(times):>10.1f} {max(times):>10.1f}{flag}")
    print("first: the first request after the console started (it computes what its start-up warm-up has not "
          "yet); median, max: later requests, served by the console's caches as every view within a minute")


if __name__ == "__main__":
    main()
