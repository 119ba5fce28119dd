"""The workflow sandbox, told which modules are safe to share across workflow runs."""

from __future__ import annotations

from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

# The interpreter and the libraries it uses are deterministic and side-effect free; passing them
# through keeps them imported once per worker process instead of once per workflow run.
PASSTHROUGH = ("omnicart", "cel", "liquid", "pydantic", "pydantic_core", "ruamel", "zoneinfo")


def workflow_runner() -> SandboxedWorkflowRunner:
    return SandboxedWorkflowRunner(restrictions=SandboxRestrictions.default.with_passthrough_modules(*PASSTHROUGH))
