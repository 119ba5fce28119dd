"""``omnicart simulate`` over several journeys at once, as production runs them for one customer.

Each event of a timeline is offered to every journey it triggers (the selection ingest uses), and
all of one customer's journeys share that customer's state: the preview of a folder is what the
customer would get from all of its journeys, not one journey at a time.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from omnicart.events import Event
from omnicart.journey.loader import load_journey
from omnicart.journey.model import JourneyBundle
from omnicart.simulate import simulate
from tests.support.bundles import JOURNEYS, browse, flagship
from tests.support.timelines import HOUR, Timeline, cart, describe, order, profile, viewed

ROOT = Path(__file__).resolve().parent.parent
START = datetime(2026, 6, 1, 15, tzinfo=UTC)  # 11:00 in New York, the customers' zone: no quiet hours

LOOKED_THEN_CAME_BACK = Timeline("looked_then_came_back", [
    (-HOUR, "customer_updated", "api", profile()),
    (timedelta(0), "product_viewed", "web", viewed()),
    (24 * HOUR, "checkout_started", "web", cart()),
    (110 * HOUR, "order_placed", "web", order()),
])
LOOKED_THEN_CHECKED_OUT = Timeline("looked_then_checked_out", [
    (-HOUR, "customer_updated", "api", profile()),
    (timedelta(0), "product_viewed", "web", viewed()),
    (HOUR, "checkout_started", "web", cart()),
])


def timeline() -> list[Event]:
    return [*LOOKED_THEN_CAME_BACK.events(START, "cus_late"), *LOOKED_THEN_CHECKED_OUT.events(START, "cus_quick")]


def story(lines: list[dict[str, Any]], customer_id: str) -> list[str]:
    """One customer's preview as a marketer reads it: hours after the first view, journey, action."""
    told = []
    for line in lines:
        if line["customer_id"] == customer_id:
            hours = (datetime.fromisoformat(line["at"].replace("Z", "+00:00")) - START) / HOUR
            told.append(f"{hours:g}h {line['journey']}: {describe(line)}")
    return told


def preview(journeys: JourneyBundle | list[JourneyBundle], events: list[Event]) -> list[dict[str, Any]]:
    return [action.as_json() for action in simulate(journeys, events)]


def test_two_journeys_together_preview_the_union_of_each_one_alone_in_time_order() -> None:
    events = timeline()
    both = preview([flagship(), browse()], events)

    alone = preview(flagship(), events) + preview(browse(), events)
    assert sorted(both, key=json.dumps) == sorted(alone, key=json.dumps)
    assert [line["at"] for line in both] == sorted(line["at"] for line in both)
    assert story(both, "cus_late") == [
        "0h browse_abandonment: enter",
        "2h browse_abandonment: send email browse_email",
        "2h browse_abandonment: exit completed",
        "24h abandoned_cart: enter",
        "25h abandoned_cart: send email cart_reminder_1",
        "48h abandoned_cart: send sms cart_reminder_sms",
        "96h abandoned_cart: send email cart_last_chance",
        "96h abandoned_cart: exit completed",
        "110h abandoned_cart: convert 79.5 USD via email",
    ]
    # The checkout ends the browse run (its exit_when) and starts the cart's, at the same moment.
    assert story(both, "cus_quick") == [
        "0h browse_abandonment: enter",
        "1h browse_abandonment: exit checkout_started",
        "1h abandoned_cart: enter",
        "2h abandoned_cart: send email cart_reminder_1",
        "25h abandoned_cart: send sms cart_reminder_sms",
        "73h abandoned_cart: send email cart_last_chance",
        "73h abandoned_cart: exit completed",
    ]


def test_a_disabled_journey_is_offered_no_event_as_ingest_offers_it_none() -> None:
    shipped = browse()
    disabled = JourneyBundle(
        journey=shipped.journey.model_copy(update={"enabled": False}), templates=shipped.templates,
        policies=shipped.policies,
    )
    events = timeline()
    assert preview([flagship(), disabled], events) == preview(flagship(), events)
    assert {line["journey"] for line in preview([flagship(), shipped], events)} == {
        "abandoned_cart", "browse_abandonment"}


def test_several_journeys_give_the_same_preview_on_every_core() -> None:
    events = [
        event
        for number in range(150)
        for event in [*LOOKED_THEN_CAME_BACK.events(START, f"cus_{number}"),
                      *LOOKED_THEN_CHECKED_OUT.events(START, f"cus_q{number}")]
    ]
    one_core = [a.as_json() for a in simulate([flagship(), browse()], events, workers=1)]
    two_cores = [a.as_json() for a in simulate([flagship(), browse()], events, workers=2)]
    assert len(one_core) == 150 * (9 + 7)
    assert one_core == two_cores


# --- the command -----------------------------------------------------------------------------


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "omnicart.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)


def _events_file(folder: Path) -> Path:
    path = folder / "events.jsonl"
    path.write_text("".join(event.model_dump_json() + "\n" for event in timeline()))
    return path


def test_simulate_a_folder_runs_every_journey_in_it_with_its_policies(tmp_path: Path) -> None:
    events = _events_file(tmp_path)
    result = run("simulate", "journeys/", str(events))
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert story(lines, "cus_late")[:4] == [
        "0h browse_abandonment: enter",
        "2h browse_abandonment: send email browse_email",
        "2h browse_abandonment: exit completed",
        "24h abandoned_cart: enter",
    ]
    assert lines == preview([flagship(), browse(), load_journey(JOURNEYS / "win_back.yaml")], timeline())

    named = run("simulate", "journeys/browse_abandonment.yaml", "journeys/abandoned_cart.yaml",
                "journeys/win_back.yaml", "--events", str(events))
    assert named.returncode == 0 and named.stdout == result.stdout


def test_simulate_a_folder_whose_policies_are_broken_previews_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "journeys"
    shutil.copytree(JOURNEYS, folder)
    policies = folder / "policies.yaml"
    policies.write_text(policies.read_text().replace("at_most: 2", "at_most: two"))
    line = policies.read_text().splitlines().index("    at_most: two") + 1

    result = run("simulate", str(folder), str(_events_file(tmp_path)))
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.splitlines() == [f"{policies}:{line}:14: 'at_most' must be a whole number, not the text 'two'"]


def test_simulate_needs_a_timeline() -> None:
    result = run("simulate", "journeys/")
    assert result.returncode == 2
    assert "name the events file" in result.stderr
