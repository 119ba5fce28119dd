"""The fuzz suite, short form: generated bodies against the real API, worker and dev server.

The full run is ``python -m tests.fuzz --requests 10000``; this one keeps the normal test command
quick while still going through every attack class and schemathesis' bodies.
"""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from omnicart.api.app import Rejected, parse_events
from omnicart.limits import MAX_EVENT_BYTES
from omnicart.signals import IncomingEvent
from tests.fuzz.connectors import fuzz_connectors
from tests.fuzz.harness import PROMISED, fuzz
from tests.fuzz.strategies import bodies

SHORT_RUN_REQUESTS = 150
SHORT_CONNECTOR_RUN = 120


async def test_fuzzing_the_api_leaves_no_5xx_no_wedged_customer_no_half_applied_batch_no_lost_event(
    dev_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    report = await fuzz(dev_env.client, tmp_path, SHORT_RUN_REQUESTS, seed_value=None)

    print("\n".join(report.lines()))
    assert set(report.statuses) <= PROMISED
    assert report.server_errors == 0
    assert report.wedged == []
    assert report.half_applied == []
    assert report.lost == []
    assert report.statuses[202] > 0 and report.statuses[422] > 0, "the fuzz reached both sides of the door"


async def test_forged_replayed_and_malformed_connector_requests_accept_nothing_and_never_5xx(
    dev_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    report = await fuzz_connectors(dev_env.client, tmp_path, SHORT_CONNECTOR_RUN)

    print("\n".join(report.lines()))
    assert report.server_errors == 0
    assert sum(report.accepted.values()) == 0, report.accepted
    assert set(report.attacks) == {"forged", "replayed", "malformed"}, "every attack class was sent"
    assert report.statuses[401] > 0 and report.statuses[200] > 0


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(bodies("prop"))
def test_any_body_is_refused_with_problems_or_gives_events_the_worker_can_decode(body: bytes) -> None:
    try:
        events = parse_events(body, max_events=1000)
    except Rejected as refusal:
        assert refusal.status in (413, 422)
        assert refusal.problems
        return
    converter = pydantic_data_converter.payload_converter
    for event in events:
        incoming = IncomingEvent(event=event)
        [payload] = converter.to_payloads([incoming])
        assert len(payload.data) <= MAX_EVENT_BYTES + 100
        assert converter.from_payloads([payload], [IncomingEvent]) == [incoming]


@given(st.binary(max_size=500))
def test_arbitrary_bytes_never_escape_as_anything_but_a_refusal(body: bytes) -> None:
    try:
        parse_events(body, max_events=1000)
    except Rejected as refusal:
        assert refusal.status == 422
