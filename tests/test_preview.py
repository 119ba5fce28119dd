"""``omnicart simulate`` as a preview of what will really be sent: content, failures, clicks, imports."""

from __future__ import annotations

import json
from pathlib import Path

from tests.test_simulate_cli import ROOT, run

SAMPLE = (ROOT / "examples" / "events.jsonl").read_text().splitlines()


def lines_of(*args: str) -> list[dict[str, object]]:
    result = run("simulate", "journeys/abandoned_cart.yaml", *args)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def ada(lines: list[dict[str, object]]) -> list[str]:
    return [" ".join(str(line[k]) for k in ("action", "template", "reason") if k in line)
            for line in lines if line["customer_id"] == "cus_ada"]


def test_show_content_prints_each_message_as_rendered_for_that_customer() -> None:
    lines = lines_of("--events", "examples/events.jsonl", "--show-content")
    first = next(line for line in lines if line["customer_id"] == "cus_ada" and line["action"] == "send")
    content = first["content"]
    assert isinstance(content, dict)
    assert content["subject"] == "Ada, your cart is saved for you"
    assert "Still thinking it over, Ada?" in content["text"] and "Return to my cart" in content["text"]
    assert isinstance(first["message_id"], str) and first["message_id"].startswith("msg_")
    sms = next(line for line in lines if line["customer_id"] == "cus_ada" and line.get("channel") == "sms")
    assert "STOP" in sms["content"]["body"]  # type: ignore[index]


def test_a_template_that_fails_for_this_customer_is_a_failed_send_as_the_worker_reports_it(tmp_path: Path) -> None:
    # A shop sends "free" as an item's price (the plan allows text prices); the money filter refuses it.
    events = tmp_path / "events.jsonl"
    events.write_text("\n".join(line.replace('"price": 49.5', '"price": "free"') for line in SAMPLE) + "\n")
    lines = lines_of("--events", str(events))
    assert ada(lines)[:3] == ["enter", "send cart_reminder_1", "skip cart_reminder_1 email_failed"]


def test_a_click_named_by_its_step_previews_the_engagement_branch(tmp_path: Path) -> None:
    checkout = json.loads(next(line for line in SAMPLE if '"cus_ada"' in line and "checkout_started" in line))
    click = {"id": "evt_click", "type": "message_clicked", "customer_id": "cus_ada", "source": "email",
             "timestamp": checkout["timestamp"].replace("T10:", "T12:"), "properties": {"step": "first_reminder"}}
    events = tmp_path / "events.jsonl"
    events.write_text("\n".join(SAMPLE) + "\n" + json.dumps(click) + "\n")
    assert "skip cart_reminder_sms clicked_earlier_reminder" in ada(lines_of("--events", str(events)))


def test_an_import_of_old_events_starts_nothing_and_says_why() -> None:
    lines = lines_of("--events", "examples/events.jsonl", "--imported-at", "2027-02-01T00:00:00")
    assert {line["action"] for line in lines} == {"skip"}
    assert {(line["reason"], line["at"]) for line in lines} == {("too_old", "2027-02-01T00:00:00Z")}
