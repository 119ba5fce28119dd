"""What crosses into a customer's workflow: its type name, its signals and updates, and their shapes.

This module is the workflow-facing contract, kept free of I/O so that the workflow sandbox can pass it
through (``workflows/sandbox.py``). The client side that sends these lives in ``omnicart.routing``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from omnicart.engine.state import CustomerState
from omnicart.events import Event
from omnicart.journey.model import JourneyBundle

CUSTOMER_WORKFLOW = "CustomerWorkflow"
EVENT_SIGNAL = "event"
FORGET_SIGNAL = "forget"
REPLAY_QUARANTINE_UPDATE = "replay_quarantine"
QUARANTINE_QUERY = "quarantine"
RECORD_QUARANTINE_ACTIVITY = "record_quarantine"
LOAD_JOURNEYS_ACTIVITY = "load_journeys"
RECORD_ANALYTICS_ACTIVITY = "record_analytics"
ANALYTICS_PATCH = "record-analytics"
"""Runs started before analytics existed replay without recording (``workflow.patched``)."""
TOPIC_CONSENT_PATCH = "topic-consent"
"""A ``consent_changed`` for a topic (``omnicart.consent``) is read as one only in histories that
recorded this patch; one an older worker handled replays as that worker read it (``workflow.patched``)."""

PACING_PATCH = "paced-send-queues"
"""Runs started before pacing existed schedule every send on the workflow's own queue
(``workflow.patched``); see ``omnicart/pacing.py``."""
LATE_FAILURE_PATCH = "late-failure-fallback"
"""Runs started before it replay without falling back on failures reported after acceptance."""
CATALOG_FOR_CONDITIONS_ACTIVITY = "catalog_for_conditions"
CATALOG_PATCH = "catalog-for-conditions"
"""Runs that reach a condition reading ``catalog`` ask the catalog first; histories from before
replay without asking (``workflow.patched``)."""
LINK_SIGNAL = "link"
MERGE_SIGNAL = "merge"
HAND_OVER_ACTIVITY = "hand_over"
IDENTITY_PATCH = "identity-merge"
"""Anonymous visitors hand their state to the known customer (``docs/IDENTITY.md``)."""
EXIT_JOURNEY_SIGNAL = "exit_journey"
PAUSE_EXIT_PATCH = "journey-pause-exit"
"""A journey paused with "runs under way exit" ends its runs (``omnicart.journey_exit``); histories
from before replay without handling the signal (``workflow.patched``)."""

STATE_BYTES_BUDGET = 512 * 1024
"""How large a customer's state may be when it is carried to the next run (continue-as-new).

Temporal refuses payloads over 2 MB and warns from 512 KB; the state sheds its oldest history-like
parts (recent events, journal) to stay under this, so continue-as-new can never fail on size.
"""


JourneyRef = str | JourneyBundle
"""A published journey by its version (content hash), as the ingest side sends it; or, in histories
written before journeys travelled by reference (and in tests without a registry), the whole bundle."""


class IncomingEvent(BaseModel):
    """An event plus the published journeys it may trigger.

    The ingest side attaches the journeys whose trigger is this event's type, as published at the
    moment the event arrived, by version: a few bytes each instead of the journey and its templates.
    The workflow fetches a version it has not seen from the journey registry (once; versions never
    change). A new run snapshots its journey from there, so publishing a change affects only runs
    that start afterwards.
    """

    event: Event
    journeys: list[JourneyRef] = Field(default_factory=list)
    send_queues: dict[str, str] = Field(
        default_factory=dict,
        description="The task queue of each paced channel's sends, as the ingest side's settings say "
        "(omnicart/pacing.py): the latest event's list is the one the workflow uses.",
    )


class CustomerWorkflowInput(BaseModel):
    """Start (or continue-as-new) input of a customer's workflow."""

    customer_id: str
    state: CustomerState | None = Field(default=None, description="Carried over by continue-as-new.")
    pending: list[IncomingEvent] = Field(default_factory=list, description="Events received but not yet handled.")
    max_history_events: int = 2000
    send_timeout_seconds: float = Field(default=60.0, gt=0, description="Start-to-close of one send attempt.")
    record_analytics: bool = Field(default=True, description="Store every journey action for the reports.")
    record_within_seconds: float = Field(
        default=3600.0,
        gt=0,
        description="How long journey actions may wait to ride along with a send before they are stored on "
        "their own: the report's freshness against one activity per action batch.",
    )
    send_queues: dict[str, str] = Field(
        default_factory=dict, description="Carried by continue-as-new: the paced channels' task queues."
    )
    registered_versions: list[str] = Field(
        default_factory=list,
        description="Journey versions known to be in the registry: their sends name the template instead of "
        "carrying it.",
    )


class Link(BaseModel):
    """Told to an anonymous visitor's workflow when an event first links its anonymous id to a customer."""

    customer_id: str
    event_id: str = Field(description="The event that linked them.")


class HandOver(BaseModel):
    """An anonymous visitor's state and unhandled events, for the known customer's workflow (``merge``).

    The ``hand_over`` activity delivers it by signal-with-start, because the known customer's
    workflow may not exist yet and workflow code cannot signal-with-start.
    """

    customer_id: str = Field(description="The known customer it goes to.")
    anonymous: CustomerState
    pending: list[IncomingEvent] = Field(default_factory=list)
    max_history_events: int = 2000
    send_timeout_seconds: float = 60.0
    record_analytics: bool = True


class LoadedJourneys(BaseModel):
    """What the registry holds of the versions asked for (``load_journeys``)."""

    bundles: list[JourneyBundle]
    missing: list[str] = Field(default_factory=list)


class QuarantineReport(BaseModel):
    """What a customer's workflow reports when it quarantines something: the new entries' summaries
    (``Quarantined.summary``: ids, types, errors), for the operators' list across customers."""

    workflow_id: str
    entries: list[dict[str, Any]]


class JourneyExit(BaseModel):
    """End this customer's runs of a journey (a pause with "runs under way exit").

    Only runs whose trigger happened by ``paused_at`` end, however late the workflow handles them
    (a backlog): the signal may be sent again, or arrive late, and must never end a run that a
    customer began after a resume.
    """

    journey: str
    reason: str = "journey_paused"
    paused_at: datetime
