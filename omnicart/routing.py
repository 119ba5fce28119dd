"""How an event finds its customer's workflow: one long-lived entity workflow per customer.

Producers never talk to journey runs directly. Every event for a customer goes to that customer's
workflow with signal-with-start, which creates it on the first event and signals it afterwards; the
workflow holds the customer's profile, consent, carts and engagement, and routes the event to every
journey run it concerns. That is what lets a click in one channel change at once what another does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy

from omnicart.events import Event
from omnicart.journey.model import JourneyBundle
from omnicart.signals import CUSTOMER_WORKFLOW, EVENT_SIGNAL, CustomerWorkflowInput, IncomingEvent


def customer_workflow_id(customer_id: str) -> str:
    return f"customer/{customer_id}"


async def deliver(
    client: Client,
    task_queue: str,
    customer_id: str,
    events: Sequence[Event],
    journeys_for: Callable[[str], Sequence[JourneyBundle]],
    max_history_events: int = 2000,
    send_timeout_seconds: float = 60.0,
) -> None:
    """Hand one customer's events, in the order given, to that customer's workflow.

    They travel in one signal: one history event however large the batch, and the workflow sees
    them together, in order. Each carries the published journeys its type can trigger.
    """
    batch = [IncomingEvent(event=event, journeys=list(journeys_for(event.type))) for event in events]
    await signal_customer(client, task_queue, customer_id, batch, max_history_events, send_timeout_seconds)


async def signal_customer(
    client: Client,
    task_queue: str,
    customer_id: str,
    batch: list[IncomingEvent],
    max_history_events: int = 2000,
    send_timeout_seconds: float = 60.0,
) -> None:
    """Create the customer's workflow if it does not exist, and hand it these events."""
    await client.start_workflow(
        CUSTOMER_WORKFLOW,
        CustomerWorkflowInput(
            customer_id=customer_id,
            max_history_events=max_history_events,
            send_timeout_seconds=send_timeout_seconds,
        ),
        id=customer_workflow_id(customer_id),
        task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        start_signal=EVENT_SIGNAL,
        start_signal_args=[batch],
    )
