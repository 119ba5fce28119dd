"""Saved histories of real journeys must replay on today's workflow code.

A customer's workflow lives for months; a deploy that changes what the workflow code does on replay
would break every journey in flight. Such a change must use ``workflow.patched`` or a new workflow
type, and this test fails CI until it does.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from omnicart.signals import ANALYTICS_PATCH, TOPIC_CONSENT_PATCH
from workflows.customer import CustomerWorkflow
from workflows.date_triggers import DateTriggersWorkflow
from workflows.sandbox import workflow_runner

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))


def test_there_are_saved_histories_of_both_journeys() -> None:
    names = {path.name.split("-")[0] for path in HISTORIES}
    assert names == {"abandoned_cart", "browse_abandonment", "win_back", "date_triggers"}


@pytest.mark.parametrize("path", HISTORIES, ids=lambda p: p.stem)
async def test_saved_history_replays_without_nondeterminism(path: Path) -> None:
    replayer = Replayer(workflows=[CustomerWorkflow, DateTriggersWorkflow], data_converter=pydantic_data_converter,
                        workflow_runner=workflow_runner())
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    await replayer.replay_workflow(history)


def _kinds(name: str) -> list[EventType.ValueType]:
    path = Path(__file__).parent / "histories" / f"abandoned_cart-{name}.json"
    return [event.event_type for event in WorkflowHistory.from_json(name, path.read_text()).events]


def test_saved_histories_cover_fallback_cancellation_quarantine_and_continue_as_new() -> None:
    """The histories that guard the risky paths must still contain them (re-recording could lose them)."""
    fallback = _kinds("sms_fails_falls_back_to_email")
    assert fallback.count(EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED) == 4  # email, failed sms, email, email

    cancelled = _kinds("order_cancels_send_in_flight")
    assert EventType.EVENT_TYPE_ACTIVITY_TASK_CANCEL_REQUESTED in cancelled

    quarantined = _kinds("poison_event_quarantined")
    assert quarantined[-1] == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW
    assert EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED not in quarantined

    in_flight = _kinds("continued_as_new_with_send_in_flight")
    assert in_flight[-1] == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW
    assert EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED in in_flight
    assert EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED not in in_flight


def test_the_saved_history_of_journeys_by_reference_fetches_each_version_once_and_sends_name_templates() -> None:
    """What production runs: events name the journey by version, the workflow fetches it once with a
    local activity (a marker in history), and sends carry the template's name, not the template."""
    path = Path(__file__).parent / "histories" / "abandoned_cart-journeys_by_reference.json"
    history = WorkflowHistory.from_json("by_reference", path.read_text())
    markers = [e for e in history.events if e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED]
    assert len(markers) == 1  # two checkouts, one fetch
    sends = [json.loads(e.activity_task_scheduled_event_attributes.input.payloads[0].data)
             for e in history.events if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED]
    assert sends and all(send["template"] is None and "trigger" not in send["context"] for send in sends)


def test_the_outlined_history_carries_the_journey_without_its_templates_words() -> None:
    """The registry's answer outlines the templates (the send activity reads the words by version), so
    the one fetch a run records is a fraction of the whole bundle's, and the sends still name them."""
    folder = Path(__file__).parent / "histories"

    def fetched(name: str) -> tuple[dict[str, Any], int]:
        history = WorkflowHistory.from_json(name, (folder / f"abandoned_cart-{name}.json").read_text())
        [marker] = [e.marker_recorded_event_attributes for e in history.events
                    if e.marker_recorded_event_attributes.marker_name == "core_local_activity"
                    and b'"activity_type":"load_journeys"' in e.marker_recorded_event_attributes.details["data"]
                    .payloads[0].data]
        result = json.loads(marker.details["result"].payloads[0].data)
        return result, len(marker.details["result"].payloads[0].data)

    whole, whole_size = fetched("journeys_by_reference")
    outlined, outlined_size = fetched("journeys_by_reference_outlined")
    [bundle] = outlined["bundles"]
    assert bundle["templates"] == {} and bundle["outlines"]["cart_reminder_1"] == {
        "channel": "email", "reads_trigger": False, "free_text": False}
    assert bundle["journey"]["name"] == whole["bundles"][0]["journey"]["name"] and bundle["journey"]["steps"]
    assert outlined_size * 2 < whole_size  # and the whole one was recorded before the flagship grew
    history = WorkflowHistory.from_json("outlined", (folder / "abandoned_cart-journeys_by_reference_outlined.json")
                                        .read_text())
    sends = [json.loads(e.activity_task_scheduled_event_attributes.input.payloads[0].data)
             for e in history.events if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
             and e.activity_task_scheduled_event_attributes.activity_type.name == "send_message"]
    assert sends and all(send["template"] is None and send["template_name"] for send in sends)


def test_the_saved_history_of_the_win_back_split_records_analytics_on_sends_and_once_alone() -> None:
    """Analytics came in through ``workflow.patched``: older histories above replay without it; this
    one guards the path with it. The sends carry the journey's rows; the conversion (no send due)
    is stored by a record_analytics activity; the offer went to the same arm both times."""
    path = Path(__file__).parent / "histories" / "win_back-split_holdout_and_analytics.json"
    history = WorkflowHistory.from_json("win_back", path.read_text())
    patches = [e for e in history.events if e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED
               and e.marker_recorded_event_attributes.marker_name == "core_patch"]
    assert len(patches) == 1
    scheduled = [e.activity_task_scheduled_event_attributes for e in history.events
                 if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED]
    kinds = [attributes.activity_type.name for attributes in scheduled]
    # Stored alone: the entry (the offer is 60 days off), the conversion with the restart, the last exit
    # (14 days after the second offer); every other row rode on one of the two sends.
    assert kinds == ["record_analytics", "send_message", "record_analytics", "send_message", "record_analytics"]
    sends = [json.loads(a.input.payloads[0].data) for a in scheduled if a.activity_type.name == "send_message"]
    assert [(send["template_name"], send["variant"]) for send in sends] == [("win_back_20", "twenty_percent")] * 2
    assert all(send["analytics"] for send in sends)  # the rows so far ride along
    stored = [json.loads(a.input.payloads[0].data) for a in scheduled if a.activity_type.name == "record_analytics"]
    assert "convert" in [row["action"] for batch in stored for row in batch]


def test_the_topic_opt_out_history_records_its_patch_and_sends_only_the_first_reminder() -> None:
    """The history that guards ``TOPIC_CONSENT_PATCH``: a topic opt-out after the first reminder
    recorded the patch, and no later touch was sent (a re-recording that lost either would not guard it)."""
    path = Path(__file__).parent / "histories" / "abandoned_cart-topic_opt_out_after_first_reminder.json"
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    patches = [
        json.loads(payload.data)["id"]
        for event in history.events
        if event.HasField("marker_recorded_event_attributes")
        for payload in event.marker_recorded_event_attributes.details["patch-data"].payloads
    ]
    assert patches == [ANALYTICS_PATCH, TOPIC_CONSENT_PATCH]
    sends = [event for event in history.events if event.HasField("activity_task_scheduled_event_attributes")
             and event.activity_task_scheduled_event_attributes.activity_type.name == "send_message"]
    assert len(sends) == 1


def test_the_paced_history_schedules_each_paced_channels_sends_on_its_own_queue() -> None:
    """The pacing change is behind a patch: its history holds the marker and the per-channel queues."""
    path = Path(__file__).parent / "histories" / "abandoned_cart-paced_send_queues.json"
    events = WorkflowHistory.from_json("paced", path.read_text()).events
    assert EventType.EVENT_TYPE_MARKER_RECORDED in [event.event_type for event in events]
    queues = [
        event.activity_task_scheduled_event_attributes.task_queue.name
        for event in events
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
        and event.activity_task_scheduled_event_attributes.activity_type.name == "send_message"
    ]
    assert queues and all(queue.rsplit("-send-", 1)[-1] in ("email", "sms") for queue in queues), queues


def test_the_late_fallback_history_sends_the_steps_email_after_the_sms_bounced() -> None:
    """Recorded with ``LATE_FAILURE_PATCH``: Twilio's 30006 report, after acceptance, starts the fallback."""
    late = _kinds("sms_bounced_later_falls_back_to_email")
    assert EventType.EVENT_TYPE_MARKER_RECORDED in late
    # first email, analytics, the SMS, its fallback email after the report, the last-chance email
    assert late.count(EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED) == 5


def test_the_saved_history_of_the_low_stock_branch_asks_the_catalog_once_behind_its_patch() -> None:
    """The catalog read came in through ``workflow.patched``: older flagship histories above replay
    without it. In this one the run asks the catalog (a local activity: a marker) just before its
    branch, once, with the cart's skus, and the answer (two left) chooses the low-stock reminder."""
    path = Path(__file__).parent / "histories" / "abandoned_cart-low_stock_branch_asks_the_catalog.json"
    history = WorkflowHistory.from_json("low_stock", path.read_text())
    markers = [e.marker_recorded_event_attributes for e in history.events
               if e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED]
    patches = [json.loads(m.details["patch-data"].payloads[0].data)["id"] for m in markers
               if m.marker_name == "core_patch"]
    assert "catalog-for-conditions" in patches
    asked = [json.loads(m.details["result"].payloads[0].data) for m in markers
             if m.marker_name == "core_local_activity"
             and json.loads(m.details["data"].payloads[0].data)["activity_type"] == "catalog_for_conditions"]
    assert [sorted(answer) for answer in asked] == [["SKU-1", "SKU-2"]]
    assert asked[0]["SKU-1"]["stock"]["total"] == 2
    sends = [json.loads(e.activity_task_scheduled_event_attributes.input.payloads[0].data)
             for e in history.events if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
             and e.activity_task_scheduled_event_attributes.activity_type.name == "send_message"]
    assert sends[0]["template_name"] == "cart_reminder_low_stock"


def test_the_saved_histories_of_an_identity_merge_hand_over_once_and_merge_behind_the_patch() -> None:
    """Identity came in through ``workflow.patched``: the visitor's workflow runs the hand_over
    activity once and completes; the known customer's marks the patch, merges, and sends the
    flagship's reminders to the address it knows."""
    def history(name: str) -> WorkflowHistory:
        path = Path(__file__).parent / "histories" / f"abandoned_cart-{name}.json"
        return WorkflowHistory.from_json(name, path.read_text())

    def scheduled(events: WorkflowHistory) -> list[str]:
        return [e.activity_task_scheduled_event_attributes.activity_type.name for e in events.events
                if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED]

    def patched(events: WorkflowHistory) -> bool:
        return any(e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED
                   and e.marker_recorded_event_attributes.marker_name == "core_patch"
                   and b"identity-merge" in e.marker_recorded_event_attributes.details["patch-data"].payloads[0].data
                   for e in events.events)

    visitor = history("identity_anonymous_visitor_hands_over")
    assert scheduled(visitor) == ["hand_over"] and patched(visitor)
    assert visitor.events[-1].event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED
    known = history("identity_known_customer_merges")
    signals = [e.workflow_execution_signaled_event_attributes.signal_name for e in known.events
               if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED]
    assert "merge" in signals and patched(known)
    assert [kind for kind in scheduled(known) if kind == "send_message"] == ["send_message"] * 3


def test_the_saved_history_of_a_pause_with_runs_exiting_ends_the_run_behind_its_patch() -> None:
    """Pausing with "runs under way exit" came in through ``workflow.patched``: in this history the
    ``exit_journey`` signal arrives after the first reminder, the patch is marked, the run ends
    (the record_analytics batch stores its exit with reason journey_paused), and no later touch is sent."""
    path = Path(__file__).parent / "histories" / "abandoned_cart-paused_with_runs_exiting.json"
    events = WorkflowHistory.from_json("paused", path.read_text()).events
    signals = [e.workflow_execution_signaled_event_attributes.signal_name for e in events
               if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED]
    assert signals[-1] == "exit_journey"
    patches = [json.loads(payload.data)["id"] for e in events if e.HasField("marker_recorded_event_attributes")
               for payload in e.marker_recorded_event_attributes.details["patch-data"].payloads]
    assert "journey-pause-exit" in patches
    scheduled = [e.activity_task_scheduled_event_attributes for e in events
                 if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED]
    assert [a.activity_type.name for a in scheduled].count("send_message") == 1
    stored = [row for a in scheduled if a.activity_type.name == "record_analytics"
              for row in json.loads(a.input.payloads[0].data)]
    assert ("exit", "journey_paused") in [(row["action"], row.get("reason")) for row in stored]
