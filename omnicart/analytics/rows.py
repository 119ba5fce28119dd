"""What analytics records: one row per journey action, one per message outcome.

This is the contract between the three places that produce rows (the customer workflow, the
webhooks that hear of opens and clicks, ``omnicart simulate``) and the one that reads them (the
report). It is pure, so the workflow sandbox passes it through: the workflow turns the
interpreter's actions into rows without I/O, and an activity stores them.

Every row has an id derived from what it records, never from when it was stored, so a retried
activity, a replayed workflow or a redelivered webhook writes the same row again, which the store
ignores: each fact is counted exactly once.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from omnicart.engine.state import Action

RecordedAction = Literal["enter", "step", "send", "skip", "hold", "exit", "convert"]
Outcome = Literal["delivered", "opened", "clicked", "bounced", "failed", "unsubscribed"]
Holdout = Literal["journey", "global"]


class JourneyActionRow(BaseModel):
    """One thing a journey did for one customer, keyed for every way the report groups it."""

    action_id: str
    at: datetime
    customer_id: str = Field(description="As the workflow knows it; the store keeps only a pseudonym.")
    journey: str
    version: str
    run_id: str | None = None
    category: Literal["marketing", "transactional"] = "marketing"
    action: RecordedAction
    step: str | None = None
    channel: str | None = None
    template: str | None = None
    reason: str | None = None
    value: float | None = None
    currency: str | None = None
    message_id: str | None = Field(
        default=None, description="A send's own message; a conversion's credited message (None: no message)."
    )
    experiment: str | None = None
    variant: str | None = None
    holdout: Holdout | None = None

    @classmethod
    def from_action(cls, action: Action) -> JourneyActionRow:
        """The row for an interpreter action (which must be one analytics records)."""
        return cls(
            action_id=action_id(action.customer_id, action.run_id or "", action.seq),
            at=action.at,
            customer_id=action.customer_id,
            journey=action.journey,
            version=action.version or "",
            run_id=action.run_id,
            category=action.category,
            action=action.action,
            step=action.step,
            channel=action.channel,
            template=action.template,
            reason=action.reason,
            value=action.value,
            currency=action.currency,
            message_id=action.message_id,
            experiment=action.experiment,
            variant=action.variant,
            holdout=action.holdout,
        )


class MessageOutcomeRow(BaseModel):
    """What became of one message, as its provider (or the customer's app) reported it."""

    outcome_id: str
    message_id: str
    outcome: Outcome
    machine: bool = Field(
        default=False, description="An open by a mail client's privacy proxy (e.g. Apple Mail), not by a person."
    )
    at: datetime
    channel: str | None = None


RECORDED_ACTIONS: frozenset[str] = frozenset(RecordedAction.__args__)  # type: ignore[attr-defined]


def records(action: Action) -> bool:
    """Whether analytics keeps this action (a quarantine is for operators, not for the report)."""
    return action.action in RECORDED_ACTIONS


def action_id(customer_id: str, run_id: str, seq: int) -> str:
    """The same action always gets the same id: the customer's own action counter, never a clock."""
    return "act_" + hashlib.sha256(f"{customer_id}\x1f{run_id}\x1f{seq}".encode()).hexdigest()[:24]


def outcome_id(message_id: str, outcome: str, source_event: str = "") -> str:
    """One id per (message, outcome, provider event): a webhook delivered twice is stored once."""
    return "out_" + hashlib.sha256(f"{message_id}\x1f{outcome}\x1f{source_event}".encode()).hexdigest()[:24]
