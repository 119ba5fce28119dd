"""``omnicart simulate`` as a marketer runs it: a journey file, a timeline file, JSON lines out."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from benchmarks.simulate_speed import customer_events
from omnicart.events import Event
from omnicart.simulate import simulate
from tests.support.bundles import flagship

ROOT = Path(__file__).resolve().parent.parent
OMNICART = [sys.executable, "-m", "omnicart.cli"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*OMNICART, *args], cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_the_sample_timeline_previews_every_customer_in_time_order() -> None:
    result = run("simulate", "journeys/abandoned_cart.yaml", "--events", "examples/events.jsonl")
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    times = [line["at"] for line in lines]
    assert times == sorted(times) and all(t.endswith("Z") for t in times)
    by_customer: dict[str, list[str]] = {}
    for line in lines:
        words = [line["action"], *(str(line[k]) for k in ("channel", "template", "reason", "value") if k in line)]
        by_customer.setdefault(line["customer_id"], []).append(" ".join(words))
    # Ada buys the shirt in the London store after her SMS: a conversion credited to the SMS (the last
    # message she received), and nothing more is sent.
    assert by_customer["cus_ada"] == [
        "enter", "send email cart_reminder_1", "send sms cart_reminder_sms", "convert sms 49.5", "exit order_placed",
    ]
    # Grace never gave SMS consent: her second touch is the second email.
    assert by_customer["cus_grace"][2:4] == ["skip sms cart_reminder_sms no_sms_consent", "send email cart_reminder_2"]
    # Linus replied STOP before the second touch.
    assert "skip sms cart_reminder_sms no_sms_consent" in by_customer["cus_linus"]
    assert by_customer["cus_linus"][-1] == "exit completed"


def test_a_bad_line_in_the_timeline_is_named_and_nothing_is_printed(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    good = (ROOT / "examples" / "events.jsonl").read_text().splitlines()[0]
    events.write_text(good + "\n" + good.replace('"+447700900123"', '"07700 900123"') + "\n")
    result = run("simulate", "journeys/abandoned_cart.yaml", "--events", str(events))
    assert result.returncode == 1
    assert result.stdout == ""
    assert f"{events}:2:1: bad event: properties.phone" in result.stderr


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"id": "e1", "total": ' + "9" * 5000 + "}", "integer"),
        ("[" * 2000 + "]" * 2000, "nested deeper than"),
        ('{"id": "e1", "type": "cart_updated", "properties": {"total": NaN}}', "finite"),
    ],
    ids=["huge integer", "deep nesting", "NaN"],
)
def test_what_the_api_refuses_simulate_names_by_line_without_a_traceback(
    tmp_path: Path, line: str, message: str
) -> None:
    events = tmp_path / "events.jsonl"
    good = (ROOT / "examples" / "events.jsonl").read_text().splitlines()[0]
    events.write_text(good + "\n" + line + "\n")
    result = run("simulate", "journeys/abandoned_cart.yaml", "--events", str(events))
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.startswith(f"{events}:2:1: ") and message in result.stderr
    assert "Traceback" not in result.stderr


def test_a_broken_journey_is_reported_with_its_line(tmp_path: Path) -> None:
    journey = tmp_path / "abandoned_cart.yaml"
    text = (ROOT / "journeys" / "abandoned_cart.yaml").read_text().replace("wait: 1h", "wait: 1 hour")
    journey.write_text(text)
    (tmp_path / "templates").symlink_to(ROOT / "journeys" / "templates")
    result = run("simulate", str(journey), "--events", "examples/events.jsonl")
    assert result.returncode == 1
    assert f"{journey}:" in result.stderr and "1 hour" in result.stderr


def test_a_large_timeline_gives_the_same_preview_on_every_core() -> None:
    start = datetime(2026, 11, 22, 10, tzinfo=UTC)
    events = [Event.parse(raw) for i in range(400) for raw in customer_events(f"cus_{i}", start)]
    one_core = [a.as_json() for a in simulate(flagship(), events, workers=1)]
    two_cores = [a.as_json() for a in simulate(flagship(), events, workers=2)]
    assert len(one_core) == 400 * 6  # enter, three sends, the SMS skipped (email only), exit
    assert one_core == two_cores
