"""Everything a customer's journeys need to remember, in one serialisable value.

The customer workflow carries this across continue-as-new; ``omnicart simulate`` keeps one per
customer in memory. Plain dataclasses keep the interpreter fast (simulate runs tens of thousands of
customer-journeys a second) and round-trip through Temporal's pydantic data converter unchanged.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from omnicart.events import ANONYMOUS_PREFIX, Event
from omnicart.journey.model import JourneyBundle

Holdout = Literal["journey", "global"]
ActionKind = Literal["enter", "step", "send", "skip", "hold", "exit", "convert", "quarantine"]
"""``step`` marks a run reaching a step (analytics counts who waits where); the journal leaves it out."""
WakeAction = Literal["next", "timeout", "retry"]
QuarantineKind = Literal["event", "timer", "send_result"]

SEEN_EVENT_IDS = 2000
RECENT_EVENTS = 50
RUN_EVENTS = 50
JOURNAL = 200
CARTS = 20
PROFILE_ATTRIBUTES = 200
"""A profile keeps at most this many custom attributes (an event may carry 200 keys; many events with
new names would otherwise grow the state without bound). Known attributes keep updating."""
QUARANTINE = 20
HELD_TRIGGERS = 20
"""An anonymous visitor keeps at most this many journey triggers for when they become known."""
MERGED = 200
"""A customer remembers this many anonymous customers merged into it (a repeated merge is a no-op)."""


@dataclass(slots=True)
class Profile:
    """What we know of the customer; each field is last-writer-wins by event timestamp."""

    email: str | None = None
    phone: str | None = None
    timezone: str | None = None
    locale: str | None = None
    first_name: str | None = None
    consent: dict[str, bool] = field(default_factory=dict)
    push_tokens: list[str] = field(default_factory=list)
    attributes: dict[str, Any] = field(default_factory=dict)
    undeliverable: dict[str, str] = field(default_factory=dict)
    updated_at: dict[str, datetime] = field(default_factory=dict)
    last_event_at: dict[str, datetime] = field(default_factory=dict)
    """The time of the customer's latest event of each type: what an ``after`` trigger counts from."""
    inbound_at: dict[str, datetime] = field(default_factory=dict)
    """The time of the customer's latest message *to us* per channel: WhatsApp's 24-hour window."""


@dataclass(slots=True)
class Action:
    """One thing a journey did, as ``omnicart simulate`` prints it and the workflow journals it."""

    at: datetime
    customer_id: str
    journey: str
    action: ActionKind
    step: str | None = None
    channel: str | None = None
    template: str | None = None
    reason: str | None = None
    value: float | None = None
    message_id: str | None = None
    until: datetime | None = None  # a hold: when the message will go out
    # What analytics keys a row by; the journal line shows only variant and currency.
    currency: str | None = None
    variant: str | None = None
    experiment: str | None = None
    holdout: Holdout | None = None
    version: str | None = None
    run_id: str | None = None
    category: Literal["marketing", "transactional"] = "marketing"
    seq: int = 0  # the customer's action counter: with run_id, the action's id

    def as_json(self) -> dict[str, Any]:
        """The journal's line: at, customer_id, journey, action, then only the fields that apply.

        A send names its ``message_id``, so that an open or a click can be tied to it; a hold says
        ``until`` when the message will go out.
        """
        line: dict[str, Any] = {
            "at": self.at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "customer_id": self.customer_id,
            "journey": self.journey,
            "action": self.action,
        }
        for name in ("step", "channel", "template", "reason", "value", "currency", "message_id", "variant"):
            value = getattr(self, name)
            if value is not None:
                line[name] = value
        if self.until is not None:
            line["until"] = self.until.astimezone(UTC).isoformat().replace("+00:00", "Z")
        return line


@dataclass(slots=True)
class Deferred:
    """A fallback send waiting for a channel's quiet hours to end."""

    due: datetime
    pending: PendingSend


@dataclass(slots=True)
class PendingSend:
    """A send handed to the channel whose outcome is not known yet.

    It carries what a fallback needs even after its run has completed, because a permanent failure
    of the last message of a journey must still reach the customer on the next channel.
    """

    message_id: str
    run_id: str
    journey: str
    version: str
    key: str | None
    trigger: dict[str, Any]
    step_index: int
    option: int
    channel: str
    variant: str | None = None
    experiment: str | None = None
    holdout: Holdout | None = None
    free_form: bool = False  # WhatsApp: the interpreter chose free text (the window was open), not the template


@dataclass(slots=True)
class Delivering:
    """A message the provider accepted whose delivery report is still owed.

    Some messages are refused only after the provider accepted them (an email bounce or drop, an SMS
    to a landline, WhatsApp holding back a marketing template): the webhook is the first to know,
    so the step's fallback must still be reachable from it.
    """

    accepted_at: datetime
    pending: PendingSend


@dataclass(slots=True)
class SentMark:
    """A marketing message sent (or in flight: reserved) that frequency caps count."""

    at: datetime
    channel: str
    message_id: str


@dataclass(slots=True)
class RunState:
    """One customer's run through one journey."""

    run_id: str
    journey: str
    version: str
    key: str | None
    trigger: dict[str, Any]
    started_at: datetime
    entered_at: datetime
    step: int = 0
    wake_at: datetime | None = None
    wake_action: WakeAction = "next"
    option: int = 0
    sends: int = 0
    engagement: dict[str, int] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)
    variant: str | None = None  # the split variant this run took, if it passed a split
    experiment: str | None = None
    holdout: Holdout | None = None  # in a holdout: the run walks its steps but sends nothing
    held_since: datetime | None = None  # a send held by a frequency cap: since when (for max_hold)


@dataclass(slots=True)
class GoalWatch:
    """A run's conversion window; outlives the run, so an order on day five still counts."""

    run_id: str
    journey: str
    version: str
    trigger: dict[str, Any]
    started_at: datetime
    until: datetime
    counting: bool = True  # False until the run reaches the goal's ``after`` step
    # The run's messages as (message_id, step, channel), oldest first: a conversion is credited to the
    # last one the customer received (not one still in flight, not one that failed).
    touches: list[tuple[str, str, str]] = field(default_factory=list)
    variant: str | None = None
    experiment: str | None = None
    holdout: Holdout | None = None


@dataclass(slots=True)
class Quarantined:
    """Something the interpreter failed on, set aside so the customer's other journeys go on.

    An event keeps what it needs to be replayed after a fix (the event and the journeys it could
    trigger); a timer or a send outcome keeps which run it belonged to, because that run is ended.
    """

    at: datetime
    kind: QuarantineKind
    error: str
    seq: int = 0  # numbered per customer (``quarantined_total``), so every entry has its own key
    event: Event | None = None
    journeys: list[JourneyBundle] = field(default_factory=list)
    run_id: str | None = None
    journey: str | None = None
    journey_refs: list[str] = field(default_factory=list)  # versions still to fetch before a replay

    def summary(self) -> dict[str, Any]:
        """What an operator is shown: ids, types and the error, never the event's properties."""
        return {
            "seq": self.seq,
            "at": self.at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "kind": self.kind,
            "event_id": self.event.id if self.event is not None else None,
            "event_type": self.event.type if self.event is not None else None,
            "run_id": self.run_id,
            "journey": self.journey,
            "error": self.error,
        }


@dataclass(slots=True)
class HeldTrigger:
    """An event an anonymous visitor's journeys would have started from, with those journeys.

    Nobody can be reached at an anonymous id, so no run starts there; when the visitor becomes known
    the known customer's state handles the event as if it had come in then (``engine.merge``).
    """

    event: Event
    journeys: list[JourneyBundle] = field(default_factory=list)


@dataclass(slots=True)
class CustomerState:
    """The whole durable picture of one customer."""

    customer_id: str
    profile: Profile = field(default_factory=Profile)
    carts: dict[str, dict[str, Any]] = field(default_factory=dict)
    runs: list[RunState] = field(default_factory=list)
    bundles: dict[str, JourneyBundle] = field(default_factory=dict)
    goals: list[GoalWatch] = field(default_factory=list)
    pending: list[PendingSend] = field(default_factory=list)
    deferred: list[Deferred] = field(default_factory=list)
    seen: list[str] = field(default_factory=list)
    recent: list[dict[str, Any]] = field(default_factory=list)
    journal: list[Action] = field(default_factory=list)
    quarantine: list[Quarantined] = field(default_factory=list)
    quarantined_total: int = 0
    runs_started: int = 0
    assignments: dict[str, str] = field(default_factory=dict)  # experiment (or holdout) -> arm, for good
    sent: list[SentMark] = field(default_factory=list)  # what frequency caps count
    actions_total: int = 0  # numbers every action, so analytics rows have stable ids
    unrecorded: list[Action] = field(default_factory=list)  # analytics rows not yet stored
    # Sends a provider accepted but may still report lost (an email bounce, an SMS undelivered, WhatsApp
    # holding a template back), newest last: the report can still start the step's fallback.
    delivering: list[Delivering] = field(default_factory=list)
    # What the catalog said of the skus of this customer's carts when a condition last needed it
    # (``catalog`` in conditions): fed in by the driver (``interpreter.learn_catalog``), never read here.
    catalog: dict[str, dict[str, Any]] = field(default_factory=dict)
    held: list[HeldTrigger] = field(default_factory=list)  # an anonymous visitor's triggers, until known
    merged: list[str] = field(default_factory=list)  # anonymous customers merged into this one
    entered: list[str] = field(default_factory=list)  # every journey a run of this customer ever entered

    @property
    def is_anonymous(self) -> bool:
        """A visitor known only by an anonymous id: nobody to send to, so journeys wait (``held``)."""
        return self.customer_id.startswith(ANONYMOUS_PREFIX)

    def run(self, run_id: str) -> RunState | None:
        return next((run for run in self.runs if run.run_id == run_id), None)

    def goal(self, run_id: str) -> GoalWatch | None:
        """The conversion window a run opened (a run opens at most one), while it is open."""
        return next((watch for watch in self.goals if watch.run_id == run_id), None)

    def is_idle(self) -> bool:
        """Nothing under way: no run, no send in flight, no goal window open."""
        return not (self.runs or self.pending or self.deferred or self.goals)

    def shed(self) -> bool:
        """Drop the older half of what is kept only as history (recent events, journal, each run's
        events, old carts); False once nothing is left to drop. Journeys under way keep working."""
        shed = False
        histories: list[list[Any]] = [self.recent, self.journal, *(run.events for run in self.runs)]
        for items in histories:
            if items:
                del items[: max(1, len(items) // 2)]
                shed = True
        if len(self.carts) > 1:
            for cart_id in list(self.carts)[: len(self.carts) // 2]:
                del self.carts[cart_id]
            shed = True
        return shed

    def checkpoint(self) -> CustomerState:
        """A copy to roll back to if handling one input fails half-way.

        The interpreter updates state in place, so a failure would otherwise leave it half-changed.
        Only what the interpreter mutates is copied: journey bundles are frozen and shared, events
        and actions are replaced rather than changed. That keeps a checkpoint to a few microseconds.
        """
        profile = self.profile
        return dataclasses.replace(
            self,
            profile=dataclasses.replace(
                profile,
                consent=dict(profile.consent),
                push_tokens=list(profile.push_tokens),
                attributes=dict(profile.attributes),
                undeliverable=dict(profile.undeliverable),
                updated_at=dict(profile.updated_at),
                inbound_at=dict(profile.inbound_at),
            ),
            carts=dict(self.carts),
            runs=[
                dataclasses.replace(
                    run, engagement=dict(run.engagement), events=list(run.events), messages=list(run.messages)
                )
                for run in self.runs
            ],
            bundles=dict(self.bundles),
            goals=[dataclasses.replace(watch, touches=list(watch.touches)) for watch in self.goals],
            assignments=dict(self.assignments),
            sent=list(self.sent),
            unrecorded=list(self.unrecorded),
            pending=list(self.pending),
            deferred=list(self.deferred),
            delivering=list(self.delivering),
            seen=list(self.seen),
            recent=list(self.recent),
            journal=list(self.journal),
            quarantine=list(self.quarantine),
            held=list(self.held),
            merged=list(self.merged),
            entered=list(self.entered),
        )

    def restore(self, checkpoint: CustomerState) -> None:
        """Roll back, in place, to a checkpoint taken by :meth:`checkpoint`."""
        for item in dataclasses.fields(self):
            setattr(self, item.name, getattr(checkpoint, item.name))
