"""The single customer view: profile from the projection, consent with its provenance from the
consent history, runs from the customer's workflow, and one timeline of what they did (event log)
and what we sent (ledger, with what became of each message)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, select
from temporalio.client import Client
from temporalio.service import RPCError

from omnicart.analytics.store import message_outcomes
from omnicart.api.event_log import ingested_events
from omnicart.consent.history import ConsentChange, ConsentHistory
from omnicart.engine.state import CustomerState
from omnicart.journey.registry import JourneyRegistry
from omnicart.ledger import message_ledger
from omnicart.storage import utc

QUERY_TIMEOUT_SECONDS = 3.0
TIMELINE_LIMIT = 200
CONSENT_HISTORY_SHOWN = 5


@dataclass(frozen=True)
class TimelineEntry:
    """One line of the timeline: an event the customer's systems sent, or a message we sent."""

    at: datetime
    kind: str  # "event" or "message"
    channel: str
    what: str
    detail: str


@dataclass(frozen=True)
class RunView:
    journey: str
    run_id: str
    step: str
    entered_at: datetime
    wake_at: datetime | None
    variant: str | None


def timeline(engine: Engine, customer_id: str, limit: int = TIMELINE_LIMIT) -> list[TimelineEntry]:
    """Events and messages of one customer, newest first, across every channel."""
    events = select(ingested_events).where(ingested_events.c.customer_id == customer_id).order_by(
        ingested_events.c.timestamp.desc()).limit(limit)
    messages = select(message_ledger).where(message_ledger.c.customer_id == customer_id).order_by(
        message_ledger.c.created_at.desc()).limit(limit)
    with engine.connect() as connection:
        event_rows = connection.execute(events).all()
        message_rows = connection.execute(messages).all()
        ids = [row.message_id for row in message_rows]
        heard: dict[str, list[str]] = {}
        if ids:
            outcomes = select(message_outcomes.c.message_id, message_outcomes.c.outcome, message_outcomes.c.machine)\
                .where(message_outcomes.c.message_id.in_(ids)).order_by(message_outcomes.c.at)
            for row in connection.execute(outcomes):
                heard.setdefault(row.message_id, []).append(f"{row.outcome} (machine)" if row.machine else row.outcome)
    entries = [
        TimelineEntry(utc(row.timestamp), "event", _event_channel(row.type), row.type, f"event {row.event_id}")
        for row in event_rows
    ]
    entries += [
        TimelineEntry(
            utc(row.sent_at or row.created_at), "message", row.channel,
            f"{row.journey} · {row.step_id}: {row.template}",
            ", ".join([str(row.status), *heard.get(row.message_id, [])]),
        )
        for row in message_rows
    ]
    return sorted(entries, key=lambda entry: entry.at, reverse=True)[:limit]


@dataclass(frozen=True)
class ConsentProvenance:
    """Where a customer stands on one channel or topic, and how it got there: the latest change
    (by when the customer made it) and the few before it, newest first."""

    subject: str  # "email", or "topic: offers"
    changes: tuple[ConsentChange, ...]

    @property
    def current(self) -> ConsentChange:
        return self.changes[0]


def consent_provenance(history: ConsentHistory, customer_id: str,
                       shown: int = CONSENT_HISTORY_SHOWN) -> list[ConsentProvenance]:
    """Per channel, then per topic: the current state with its source and evidence, and a short history.

    The consent history is the record a regulator asks for (``omnicart.consent.history``); a marketer
    asking "why is this customer not getting SMS" reads the same rows here.
    """
    by_subject: dict[str, list[ConsentChange]] = {}
    for change in reversed(history.export(customer_id).history):  # newest first
        subject = f"topic: {change.topic}" if change.topic else str(change.channel)
        by_subject.setdefault(subject, []).append(change)
    order = sorted(by_subject, key=lambda subject: (subject.startswith("topic: "), subject))
    return [ConsentProvenance(subject, tuple(by_subject[subject][:shown])) for subject in order]


def _event_channel(event_type: str) -> str:
    """Where an event came from, as the timeline groups it: the channel of a message event, else 'web/app/store'."""
    for channel in ("email", "sms", "push"):
        if event_type.startswith(f"{channel}_"):
            return channel
    return "activity"


async def customer_state(client: Client | None, workflow_id: str) -> CustomerState | None:
    """The customer's workflow's ``state`` query; None without Temporal, or without a workflow."""
    if client is None:
        return None
    try:
        handle = client.get_workflow_handle(workflow_id)
        return await asyncio.wait_for(handle.query("state", result_type=CustomerState), QUERY_TIMEOUT_SECONDS)
    except (RPCError, TimeoutError):
        return None


def runs_of(state: CustomerState | None, engine: Engine) -> list[RunView]:
    """Every run under way, with the id of the step it is at (by its own version of the journey)."""
    if state is None:
        return []
    registry = JourneyRegistry(engine)
    views = []
    for run in state.runs:
        bundle = state.bundles.get(run.version) or registry.version(run.version)
        step = "?"
        if bundle is not None and 0 <= run.step < len(bundle.journey.steps):
            step = bundle.journey.step_id(run.step)
        views.append(RunView(run.journey, run.run_id, step, run.entered_at, run.wake_at, run.variant))
    return views


def carts_of(state: CustomerState | None) -> list[dict[str, Any]]:
    return [] if state is None else [{"cart_id": key, **value} for key, value in state.carts.items()]
