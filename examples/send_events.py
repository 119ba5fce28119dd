"""Post the sample events to a running ``omnicart dev``, as if the checkouts happened this morning.

    python examples/send_events.py                 # the API at OMNICART_API_HOST:OMNICART_API_PORT
    python examples/send_events.py --ago 23h59m    # how long ago the last checkout happened

Timestamps are shifted so the last checkout lies ``--ago`` (59 minutes) in the past: the flagship's
first reminder (1 hour after each checkout) is due at once for the earlier customers and a minute
later for the last one, so the outbox fills while you watch. With ``--ago 23h59m`` the reminders are
too late instead (skipped, ``late_after``) and the 24-hour touch comes a minute later (or is held
for quiet hours): the journal shows both.
"""

from __future__ import annotations

import argparse
import json
import os
from datetime import UTC, datetime
from pathlib import Path

import httpx

from omnicart.journey.durations import parse_duration
from omnicart.settings import Settings

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    settings = Settings()  # the same OMNICART_API_HOST / OMNICART_API_PORT the API listens on
    default_api = os.environ.get("OMNICART_API_URL", f"http://{settings.api_host}:{settings.api_port}")
    parser.add_argument("--api", default=default_api, help=f"the ingest API (default {default_api})")
    parser.add_argument("--ago", default="59m", help="age of the last checkout (default 59m)")
    parser.add_argument("--events", type=Path, default=HERE / "events.jsonl")
    parser.add_argument("--only", help="send only this customer's events")
    args = parser.parse_args()

    events = [json.loads(line) for line in args.events.read_text().splitlines() if line.strip()]
    last_checkout = max(
        datetime.fromisoformat(e["timestamp"]) for e in events if e["type"] == "checkout_started"
    )
    shift = datetime.now(UTC) - parse_duration(args.ago) - last_checkout
    run = datetime.now(UTC).strftime("%H%M%S")
    shifted = []
    for event in events:
        if args.only and event["customer_id"] != args.only:
            continue
        when = datetime.fromisoformat(event["timestamp"]) + shift
        shifted.append({**event, "id": f"{event['id']}_{run}", "timestamp": when.isoformat()})
    headers = {}
    if token := os.environ.get("OMNICART_API_TOKEN"):
        headers["Authorization"] = f"Bearer {token}"
    # Events that happened after now are held back: post only what has happened already.
    due = [e for e in shifted if datetime.fromisoformat(e["timestamp"]) <= datetime.now(UTC)]
    response = httpx.post(f"{args.api}/v1/events", json={"events": due}, headers=headers, timeout=30)
    print(response.status_code, response.text)
    later = len(shifted) - len(due)
    if later:
        print(f"{later} later event(s) in the file lie in the future after the shift and were not sent.")


if __name__ == "__main__":
    main()
