"""What became of a message, from each place the product hears it: one ``MessageOutcomeRow`` each.

Pure translations (the callers store the rows with ``omnicart.analytics.store.record_outcomes``):

* an event about a message: ``message_delivered``/``opened``/``clicked``/``bounced``/``failed``
  posted to ``/v1/events`` (a push open from the app) or built by the Twilio status callback, and a
  ``consent_changed`` withdrawal that names the message it came from (our unsubscribe link); an
  open with ``machine: true`` is a machine open;
* one item of SendGrid's Event Webhook, which says more than our event does: an open by Apple
  Mail's privacy proxy (``sg_machine_open``) is a machine open, not a person;
* the send activity itself: a send that failed for good, and an acceptance by a channel whose
  acceptance is all we will ever hear (the dev outbox, FCM: see docs/ANALYTICS.md).

Every row's id joins the message, the outcome and the provider's own event id, so a webhook the
provider delivers twice is stored once while two real opens of one message are two rows.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from omnicart.analytics.rows import MessageOutcomeRow, Outcome, outcome_id
from omnicart.events import Event

EVENT_OUTCOMES: dict[str, Outcome] = {
    "message_delivered": "delivered",
    "message_opened": "opened",
    "message_clicked": "clicked",
    "message_bounced": "bounced",
    "message_failed": "failed",
}

SENDGRID_OUTCOMES: dict[str, Outcome] = {
    "delivered": "delivered",
    "open": "opened",
    "click": "clicked",
    "bounce": "bounced",
    "dropped": "failed",  # SendGrid never tried (suppressed, invalid): as our message_failed event says
    "unsubscribe": "unsubscribed",
    "group_unsubscribe": "unsubscribed",
    "spamreport": "unsubscribed",
}

CHANNEL_ACCEPTED = "accepted"
"""The source of a ``delivered`` that is the channel's acceptance (no delivery report will come)."""

SEND_FAILED = "send_failed"
"""The source of a ``failed`` the send activity records when a send fails for good."""


def outcome(message_id: str, kind: Outcome, at: datetime, source: str, *, channel: str | None = None,
            machine: bool = False) -> MessageOutcomeRow:
    """The row for one outcome of one message, as told by ``source`` (a provider's event id)."""
    return MessageOutcomeRow(
        outcome_id=outcome_id(message_id, kind, source),
        message_id=message_id,
        outcome=kind,
        machine=machine,
        at=at,
        channel=channel,
    )


def from_event(event: Event) -> MessageOutcomeRow | None:
    """The outcome an event reports about a message it names, or None when it reports none."""
    message_id = event.properties.get("message_id")
    if not isinstance(message_id, str) or not message_id:
        return None
    kind = EVENT_OUTCOMES.get(event.type)
    if kind is None and event.type == "consent_changed" and event.properties.get("granted") is False:
        kind = "unsubscribed"
    if kind is None:
        return None
    channel = event.properties.get("channel")
    machine = kind == "opened" and event.properties.get("machine") is True
    return outcome(message_id, kind, event.timestamp, event.id,
                   channel=channel if isinstance(channel, str) else None, machine=machine)


def outcomes_of(events: list[Event]) -> list[MessageOutcomeRow]:
    """The outcomes a batch of events reports."""
    return [row for row in map(from_event, events) if row is not None]


def from_sendgrid(item: dict[str, Any], message_id: str, at: datetime) -> MessageOutcomeRow | None:
    """The outcome of one SendGrid webhook event about ``message_id``; None for the ones we do not
    count (processed, deferred, group_resubscribe) or one without ``sg_event_id``."""
    kind = SENDGRID_OUTCOMES.get(str(item.get("event")))
    source = item.get("sg_event_id")
    if kind is None or not isinstance(source, str) or not source:
        return None
    machine = kind == "opened" and item.get("sg_machine_open") is True
    return outcome(message_id, kind, at, f"sg_{source}", channel="email", machine=machine)
