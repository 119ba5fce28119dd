"""The console's page load times on the embedded default (SQLite) with a seeded demo: 10,000
customers and a month of analytics (``omnicart.console.demo``). Target: every page under 300 ms.

    .venv/bin/python -m benchmarks.console_pages --customers 10000

After the seed, the analytics rows are folded into the report tables once, as a running console
would have done (the time is printed). Then each page is asked:

* cold: once, as the first request of a fresh console in a fresh process, one process per page,
  once the console's start-up work is over (its first fold, checking the journeys' files, reading
  each journey's numbers once to compile statements and templates: a few seconds); no number is
  kept in memory: every request reads the report tables;
* warm: ``--repeat`` times through one console app in this process; the first, the median and the
  slowest are printed.

Server time (what the database and rendering cost, without a browser's own work). Customers' runs
need Temporal and are left out (the page shows it is not connected).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from fastapi.testclient import TestClient
from pydantic import SecretStr

from omnicart.analytics.rollups import fold
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
    parser.add_argument("--cold-page", help=argparse.SUPPRESS)  # one cold request, in a process of its own
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        folder = args.keep or Path(scratch)
        settings = Settings(_env_file=None, data_dir=folder, journeys_dir=ROOT / "journeys",
                            signing_secret=SecretStr("benchmark"))
        if args.cold_page:
            with logged_in(settings) as client:
                print(f"{timed(client, args.cold_page):.1f}")
            return
        if not (folder / "seeded").exists():
            started = time.perf_counter()
            demo = seed_demo(settings, customers=args.customers)
            print(f"seeded {args.customers:,} customers, {len(demo.events):,} events in "
                  f"{time.perf_counter() - started:.1f} s")
            ConsoleUsers(get_engine(settings.database())).create("bench", PASSWORD, "viewer")
            (folder / "seeded").touch()
        started = time.perf_counter()
        folded = fold(get_engine(settings.database()))
        print(f"folded {folded:,} analytics rows into the report tables in {time.perf_counter() - started:.1f} s")
        pages = page_paths(args.customers)
        cold = {page: cold_request(folder, args.customers, page) for page in pages}
        with logged_in(settings) as client:
            time_pages(client, pages, cold, args.repeat)


@contextlib.contextmanager
def logged_in(settings: Settings) -> Iterator[TestClient]:
    """A console app for the seeded database, started as served (its lifespan runs), logged in, its
    start-up work over."""
    with TestClient(create_console_app(settings), follow_redirects=False) as client:
        token = CSRF.search(client.get("/login").text)
        assert token is not None
        client.post("/login", data={"username": "bench", "password": PASSWORD, "csrf_token": token.group(1)})
        while not client.app.state.started.done():  # type: ignore[attr-defined]
            time.sleep(0.05)  # a running console has checked its journeys' files by now
        yield client


def page_paths(customers: int) -> list[str]:
    """The pages, in the order a marketer opens them after the console started."""
    someone = f"cus_{customers // 2:05d}"
    return ["/", "/journeys/abandoned_cart", "/journeys/win_back", "/journeys/browse_abandonment",
            f"/customers?q={someone[:-1]}", f"/customers?q={someone}@example.com", f"/customers/{someone}",
            "/preview"]


def cold_request(folder: Path, customers: int, page: str) -> float:
    """The page's first request in a fresh process's fresh console, in ms."""
    command = [sys.executable, "-m", "benchmarks.console_pages", "--keep", str(folder),
               "--customers", str(customers), "--cold-page", page]
    answer = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True)
    return float(answer.stdout.split()[-1])


def timed(client: TestClient, page: str) -> float:
    begun = time.perf_counter()
    answer = client.get(page)
    elapsed = (time.perf_counter() - begun) * 1000
    assert answer.status_code == 200, (page, answer.status_code)
    return elapsed


def time_pages(client: TestClient, pages: list[str], cold: dict[str, float], repeat: int) -> None:
    """Each page ``repeat`` times in one app, beside its cold time."""
    print(f"{'page':<40} {'cold ms':>10} {'first ms':>10} {'median ms':>10} {'max ms':>10}")
    for page in pages:
        times = [timed(client, page) for _ in range(repeat)]
        flag = "" if max(cold[page], statistics.median(times)) < TARGET_MS else "  over target"
        print(f"{page:<40} {cold[page]:>10.1f} {times[0]:>10.1f} {statistics.median(times):>10.1f} "
              f"{max(times):>10.1f}{flag}")
    print("cold: the first request of a fresh console in a fresh process, after the seed and one fold; first, "
          "median, max: requests to one console, in the order above")


if __name__ == "__main__":
    main()
