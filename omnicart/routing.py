"""How an event finds its customer's workflow: one long-lived entity workflow per customer.

Producers never talk to journey runs directly. Every event for a customer goes to that customer's
workflow with signal-with-start, which creates it on the first event and signals it afterwards; the
workflow holds the customer's profile, consent, carts and engagement, and routes the event to every
journey run it concerns. That is what lets a click in one channel change at once what another does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from pydantic import BaseModel, Field
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy

from omnicart.engine.state import CustomerState
from omnicart.events import Event
from omnicart.journey.model import JourneyBundle
from omnicart.security.pseudonym import customer_ref

CUSTOMER_WORKFLOW = "CustomerWorkflow"
EVENT_SIGNAL = "event"
FORGET_SIGNAL = "forget"


def customer_workflow_id(customer_id: str) -> str:
    """``customer/<id>``; an id that is an email or phone number appears only as its keyed hash.

    Workflow ids are shown in the Temporal UI and kept in its visibility store, outside what the
    payload codec encrypts (``docs/PRIVACY.md``).
    """
    return f"customer/{customer_ref(customer_id)}"


class IncomingEvent(BaseModel):
    """An event plus the published journeys it may trigger.

    The ingest side attaches the journeys whose trigger is this event's type, as published at the
    moment the event arrived. A new run snapshots its journey from here, so publishing a changed
    file affects only runs that start afterwards, and the workflow never reads files.
    """

    event: Event
    journeys: list[JourneyBundle] = Field(default_factory=list)


class CustomerWorkflowInput(BaseModel):
    """Start (or continue-as-new) input of a customer's workflow."""

    customer_id: str
    state: CustomerState | None = Field(default=None, description="Carried over by continue-as-new.")
    pending: list[IncomingEvent] = Field(default_factory=list, description="Events received but not yet handled.")
    max_history_events: int = 2000
    send_timeout_seconds: float = Field(default=60.0, gt=0, description="Start-to-close of one send attempt.")


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
