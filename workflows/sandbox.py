"""The workflow sandbox, told which modules are safe to share across workflow runs.

Only pure code passes through: the interpreter, the journey language's models, conditions and
durations, and the workflow-facing contracts (events, signals, send request/result), plus the
libraries they use. Everything else the workflow might import by accident (the API, the database,
channels, logging handlers) is re-imported inside the sandbox, where its I/O is refused loudly.
"""

from __future__ import annotations

from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

PASSTHROUGH = (
    "omnicart.engine",
    "omnicart.events",
    "omnicart.journey.conditions",
    "omnicart.journey.durations",
    "omnicart.journey.model",
    "omnicart.limits",
    "omnicart.messages",
    "omnicart.analytics.rows",
    "omnicart.signals",
    "omnicart.date_schedule",
    "omnicart.fanout",
    "cel",
    "pydantic",
    "pydantic_core",
    "annotated_types",
    "zoneinfo",
)


def workflow_runner() -> SandboxedWorkflowRunner:
    return SandboxedWorkflowRunner(restrictions=SandboxRestrictions.default.with_passthrough_modules(*PASSTHROUGH))
