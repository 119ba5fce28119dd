"""How an event finds its customer's workflow: one long-lived entity workflow per customer.

Producers never talk to journey runs directly. Every event for a customer goes to that customer's
workflow with signal-with-start, which creates it on the first event and signals it afterwards; the
workflow holds the customer's profile, consent, carts and engagement, and routes the event to every
journey run it concerns. That is what lets a click in one channel change at once what another does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TypeVar

from pydantic_core import to_json
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.service import RPCError, RPCStatusCode

from omnicart.events import Event
from omnicart.journey.model import JourneyBundle
from omnicart.limits import SIGNAL_BUDGET_BYTES
from omnicart.security.pseudonym import customer_ref
from omnicart.signals import (
    CUSTOMER_WORKFLOW,
    EVENT_SIGNAL,
    LINK_SIGNAL,
    MERGE_SIGNAL,
    CustomerWorkflowInput,
    HandOver,
    IncomingEvent,
    Link,
)

T = TypeVar("T")


def customer_workflow_id(customer_id: str) -> str:
    """``customer/<id>``; an id that is an email or phone number appears only as its keyed hash.

    Workflow ids are shown in the Temporal UI and kept in its visibility store, outside what the
    payload codec encrypts (``docs/PRIVACY.md``).
    """
    return f"customer/{customer_ref(customer_id)}"


async def deliver(
    client: Client,
    task_queue: str,
    customer_id: str,
    events: Sequence[Event],
    journeys_for: Callable[[str], Sequence[JourneyBundle]],
    max_history_events: int = 2000,
    send_timeout_seconds: float = 60.0,
    on_signalled: Callable[[Sequence[Event]], None] | None = None,
    by_reference: bool = False,
    record_analytics: bool = True,
    send_queues: Mapping[str, str] | None = None,
) -> None:
    """Hand one customer's events, in the order given, to that customer's workflow.

    Each carries the published journeys its type can trigger: by version when they come from the
    journey registry (``by_reference``; the workflow fetches a version once), else whole (a folder of
    files in tests and benchmarks). They travel in as few signals as keep
    each under ``SIGNAL_BUDGET_BYTES`` (see ``split_by_size``), one after another, so the workflow
    sees them in order. ``on_signalled`` hears each part once Temporal has it: if a later part fails,
    the caller knows which events already arrived.
    """
    batch = [
        IncomingEvent(
            event=event,
            journeys=[bundle.version if by_reference else bundle for bundle in journeys_for(event.type)],
            send_queues=dict(send_queues or {}),
        )
        for event in events
    ]
    for part in split_by_size(batch, SIGNAL_BUDGET_BYTES):
        await signal_customer(client, task_queue, customer_id, part, max_history_events, send_timeout_seconds,
                              record_analytics=record_analytics)
        if on_signalled is not None:
            on_signalled([incoming.event for incoming in part])


def split_by_size(items: Sequence[T], budget: int) -> Iterator[list[T]]:
    """Consecutive runs of ``items`` whose JSON list, as the pydantic data converter encodes it
    (``pydantic_core.to_json``), stays within ``budget`` bytes.

    One item over the budget on its own still travels alone: the budget keeps signals well under
    Temporal's hard limit, and the envelope limits (``omnicart.limits``) bound a single item.
    """
    part: list[T] = []
    size = 2  # the list's brackets
    for item in items:
        cost = len(to_json(item)) + (1 if part else 0)  # a comma before every item but the first
        if part and size + cost > budget:
            yield part
            part, size, cost = [], 2, cost - 1
        part.append(item)
        size += cost
    if part:
        yield part


async def signal_customer(
    client: Client,
    task_queue: str,
    customer_id: str,
    batch: list[IncomingEvent],
    max_history_events: int = 2000,
    send_timeout_seconds: float = 60.0,
    *,
    record_analytics: bool = True,
) -> None:
    """Create the customer's workflow if it does not exist, and hand it these events."""
    await _signal_with_start(client, task_queue, customer_id, EVENT_SIGNAL, batch,
                             CustomerWorkflowInput(customer_id=customer_id, max_history_events=max_history_events,
                                                   send_timeout_seconds=send_timeout_seconds,
                                                   record_analytics=record_analytics))


async def tell_link(client: Client, anonymous_customer_id: str, link: Link) -> None:
    """Tell an anonymous visitor's workflow it became ``link.customer_id``; nothing when it has none
    (a visitor whose first event is the link) or has already ended."""
    try:
        await client.get_workflow_handle(customer_workflow_id(anonymous_customer_id)).signal(LINK_SIGNAL, link)
    except RPCError as error:
        if error.status != RPCStatusCode.NOT_FOUND:
            raise


async def hand_over(client: Client, task_queue: str, hand_over: HandOver) -> None:
    """Give an anonymous visitor's state to the known customer's workflow, creating it if need be."""
    await _signal_with_start(client, task_queue, hand_over.customer_id, MERGE_SIGNAL, hand_over,
                             CustomerWorkflowInput(customer_id=hand_over.customer_id,
                                                   max_history_events=hand_over.max_history_events,
                                                   send_timeout_seconds=hand_over.send_timeout_seconds,
                                                   record_analytics=hand_over.record_analytics))


async def _signal_with_start(
    client: Client, task_queue: str, customer_id: str, signal: str, argument: object, start: CustomerWorkflowInput
) -> None:
    await client.start_workflow(
        CUSTOMER_WORKFLOW,
        start,
        id=customer_workflow_id(customer_id),
        task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        start_signal=signal,
        start_signal_args=[argument],
    )
