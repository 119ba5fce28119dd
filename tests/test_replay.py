"""Saved histories of real journeys must replay on today's workflow code.

A customer's workflow lives for months; a deploy that changes what the workflow code does on replay
would break every journey in flight. Such a change must use ``workflow.patched`` or a new workflow
type, and this test fails CI until it does.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from workflows.customer import CustomerWorkflow
from workflows.sandbox import workflow_runner

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))


def test_there_are_saved_histories_of_both_journeys() -> None:
    names = {path.name.split("-")[0] for path in HISTORIES}
    assert names == {"abandoned_cart", "browse_abandonment"}


@pytest.mark.parametrize("path", HISTORIES, ids=lambda p: p.stem)
async def test_saved_history_replays_without_nondeterminism(path: Path) -> None:
    replayer = Replayer(workflows=[CustomerWorkflow], data_converter=pydantic_data_converter,
                        workflow_runner=workflow_runner())
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    await replayer.replay_workflow(history)
