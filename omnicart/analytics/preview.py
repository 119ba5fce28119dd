"""``omnicart report --simulate``: the report a timeline would produce, without a running system.

The timeline runs through ``omnicart.simulate`` (the interpreter the workflow drives); the actions
analytics keeps become rows as the workflow makes them, and the timeline's own ``message_*`` events
become the messages' outcomes. An open or click that names a ``step`` instead of a message (as
simulate timelines may) is joined to the message that step last sent that customer before it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from omnicart.analytics.outcomes import from_event
from omnicart.analytics.rows import JourneyActionRow, MessageOutcomeRow, records
from omnicart.events import Event
from omnicart.journey.model import JourneyBundle
from omnicart.simulate import STEP_REFERENCE, simulate


def preview_rows(
    journeys: JourneyBundle | Sequence[JourneyBundle], events: Sequence[Event]
) -> tuple[list[JourneyActionRow], list[MessageOutcomeRow]]:
    """The rows a timeline would record for these journeys (steps reached included)."""
    actions = [JourneyActionRow.from_action(action) for action in simulate(journeys, events, steps=True)
               if records(action)]
    return actions, timeline_outcomes(actions, events)


def timeline_outcomes(actions: Sequence[JourneyActionRow], events: Sequence[Event]) -> list[MessageOutcomeRow]:
    """The outcomes the timeline's events report about the messages the journey sent."""
    sent_at_step: dict[tuple[str, str], list[JourneyActionRow]] = defaultdict(list)
    for row in actions:
        if row.action == "send" and row.step is not None:
            sent_at_step[(row.customer_id, row.step)].append(row)
    rows: list[MessageOutcomeRow] = []
    for event in events:
        message_id = event.properties.get("message_id")
        step = event.properties.get("step")
        if step is not None and (not isinstance(message_id, str) or message_id.startswith(STEP_REFERENCE)):
            earlier = [row for row in sent_at_step.get((event.customer_id, str(step)), []) if row.at <= event.timestamp]
            if not earlier:
                continue  # that step sent this customer nothing (yet): the engagement counts for nothing
            event = event.model_copy(update={"properties": {**event.properties, "message_id": earlier[-1].message_id}})
        found = from_event(event)
        if found is not None:
            rows.append(found)
    return rows
