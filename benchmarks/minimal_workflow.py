"""The yardstick: the smallest hand-written Temporal workflow that does the flagship's job.

It sleeps and sends three times with the same send activity and nothing else: no profile, no
consent, no exits, no journey language. The benchmark compares omnicart against it.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel
from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from omnicart.messages import SEND_RETRY_POLICY, SEND_START_TO_CLOSE, SendRequest, SendResult


class MinimalCartInput(BaseModel):
    """Everything decided up front: when to send, and what."""

    sends: list[tuple[float, SendRequest]]  # (seconds after start, request)


@workflow.defn
class MinimalCartWorkflow:
    @workflow.run
    async def run(self, input: MinimalCartInput) -> int:
        start = workflow.now()
        for offset, request in input.sends:
            delay = (start + timedelta(seconds=offset) - workflow.now()).total_seconds()
            if delay > 0:
                await workflow.sleep(delay)
            await workflow.execute_activity(
                "send_message", request, result_type=SendResult,
                start_to_close_timeout=SEND_START_TO_CLOSE, retry_policy=SEND_RETRY_POLICY,
            )
        return len(input.sends)
