"""The yardstick: the smallest hand-written Temporal workflow that does the flagship's job.

It receives the same event signals as omnicart's customer workflow (through the same data converter
and codecs), then sleeps and sends three times with the same send activity, passing only ids: the
message id, the customer, the journey version and the template's name. No profile, no consent, no
exits, no journey language. The benchmark compares omnicart's history and speed against it.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel
from temporalio import workflow

from omnicart.messages import SEND_RETRY_POLICY, SEND_START_TO_CLOSE, SendRequest, SendResult
from omnicart.signals import EVENT_SIGNAL, IncomingEvent

STEPS = ((1.0, "cart_reminder_1"), (24.0, "cart_reminder_2"), (72.0, "cart_last_chance"))
"""Seconds after the checkout, and the template: the flagship with hours played as seconds."""


EMPTY_CART: dict[str, object] = {"cart_id": None, "items": [], "total": None, "currency": None, "restore_url": None}
"""No values, only the names the templates expect: the yardstick passes ids, not content."""


class MinimalCartInput(BaseModel):
    customer_id: str
    journey_version: str
    email: str


@workflow.defn
class MinimalCartWorkflow:
    def __init__(self) -> None:
        self._events: list[IncomingEvent] = []

    @workflow.signal(name=EVENT_SIGNAL)
    def event(self, batch: list[IncomingEvent]) -> None:
        self._events.extend(batch)

    @workflow.run
    async def run(self, input: MinimalCartInput) -> int:
        start = workflow.now()
        for offset, template in STEPS:
            delay = (start + timedelta(seconds=offset) - workflow.now()).total_seconds()
            if delay > 0:
                await workflow.sleep(delay)
            request = SendRequest(
                message_id=f"{input.customer_id}-{template}", customer_id=input.customer_id, journey="minimal",
                journey_version=input.journey_version, run_id=input.customer_id, step_id=template,
                channel="email", template_name=template, to=[input.email],
                context={"customer": {"id": input.customer_id}, "cart": dict(EMPTY_CART)},
            )
            await workflow.execute_activity(
                "send_message", request, result_type=SendResult,
                start_to_close_timeout=SEND_START_TO_CLOSE, retry_policy=SEND_RETRY_POLICY,
            )
        return len(STEPS)
