"""An anonymous visitor who becomes known: their state joins the known customer's, exactly once.

Most abandoned carts begin anonymous (a cookie, a device). An anonymous visitor's state learns
carts, views and profile fields like anyone's, but starts no journey run: nobody can be reached at
an anonymous id, so the triggers wait in ``state.held`` with their journeys. When an event links
the anonymous id to a customer, the known customer's state takes everything in (:func:`merge`):

* profile fields and consent: last writer wins by event time, as for events (the known value on a tie);
* carts: every cart joins, the newer version of a cart both know wins; so no cart is lost;
* recent events (views), the latest time of each event type, and the event ids seen;
* held triggers are handled as events of the known customer, so a journey marked ``once`` (a
  welcome) the customer already had starts no second run; and a journey already running for the
  same key (the same cart; without a key, any run) is left alone, whatever its ``on_retrigger``:
  an older anonymous trigger neither doubles nor restarts it.

Goals and analytics count once because only the known customer's state ever ran the journeys.
Merging the same anonymous customer again changes nothing (``state.merged``). Pure, like the
interpreter: the customer workflow and ``omnicart simulate`` both call it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from omnicart.engine import interpreter
from omnicart.engine.state import CARTS, MERGED, RECENT_EVENTS, SEEN_EVENT_IDS, CustomerState, Profile
from omnicart.events import Event, event_sort_key
from omnicart.journey.model import JourneyBundle

_PROFILE_FIELDS = ("email", "phone", "timezone", "locale", "first_name", "push_tokens")


def merge(state: CustomerState, anonymous: CustomerState, now: datetime, *, safe: bool = False) -> interpreter.Output:
    """Take an anonymous customer's state into ``state`` (the known customer's); what to send.

    ``safe`` as for :func:`interpreter.handle_event`: a held trigger that fails is quarantined in
    the known customer's state, the rest of the merge goes on.
    """
    out = interpreter.Output()
    if anonymous.customer_id in state.merged or anonymous.customer_id == state.customer_id:
        return out  # a retried or repeated hand-over
    state.merged.append(anonymous.customer_id)
    del state.merged[:-MERGED]
    _join_profile(state.profile, anonymous.profile)
    _join_carts(state, anonymous)
    for held in sorted(anonymous.held, key=lambda held: event_sort_key(held.event)):
        event = held.event.model_copy(update={"customer_id": state.customer_id})
        journeys = [bundle for bundle in held.journeys if not _already_under_way(state, bundle, event)]
        out.extend(interpreter.handle_event(state, event, journeys, now, safe=safe))
    _join_history(state, anonymous)
    return out


def _already_under_way(state: CustomerState, bundle: JourneyBundle, event: Event) -> bool:
    """Whether the known customer already has what this journey would start: a run for the same key
    (without a key: any run), which an older anonymous trigger must neither double nor restart, or,
    for a journey run ``once`` per customer, any run ever (the interpreter checks ``state.entered``;
    the journal also covers runs from before that was kept)."""
    journey = bundle.journey
    trigger = journey.trigger
    if trigger.once and any(a.journey == journey.name and a.action == "enter" for a in state.journal):
        return True
    key = None if trigger.key is None else str(event.properties.get(trigger.key))
    return any(run.journey == journey.name and run.key == key for run in state.runs)


def _join_profile(profile: Profile, anonymous: Profile) -> None:
    """Each field the anonymous visitor set later than the known customer (strictly) wins."""
    for name, at in anonymous.updated_at.items():
        known = profile.updated_at.get(name)
        if known is not None and known >= at:
            continue
        if name.startswith("consent."):
            channel = name.removeprefix("consent.")
            if channel not in anonymous.consent:
                continue
            profile.consent[channel] = anonymous.consent[channel]
        elif name in _PROFILE_FIELDS:
            value: Any = getattr(anonymous, name)
            setattr(profile, name, list(value) if isinstance(value, list) else value)
        elif name in anonymous.attributes:
            profile.attributes[name] = anonymous.attributes[name]
        else:
            continue
        profile.updated_at[name] = at
    for event_type, at in anonymous.last_event_at.items():
        latest = profile.last_event_at.get(event_type)
        if latest is None or latest < at:
            profile.last_event_at[event_type] = at


def _join_carts(state: CustomerState, anonymous: CustomerState) -> None:
    for cart_id, cart in anonymous.carts.items():
        known = state.carts.get(cart_id)
        if known is None or _when(known["_at"]) < _when(cart["_at"]):
            state.carts.pop(cart_id, None)
            state.carts[cart_id] = dict(cart)
    while len(state.carts) > CARTS:
        state.carts.pop(next(iter(state.carts)))


def _join_history(state: CustomerState, anonymous: CustomerState) -> None:
    """Recent events (what was viewed) in time order, and the event ids seen, so a redelivered
    anonymous event is still recognised."""
    ids = {event["id"] for event in state.recent}
    joined = state.recent + [event for event in anonymous.recent if event["id"] not in ids]
    joined.sort(key=lambda event: (_when(event["timestamp"]), event["id"]))
    state.recent = joined[-RECENT_EVENTS:]
    seen = set(state.seen)
    state.seen.extend(event_id for event_id in anonymous.seen if event_id not in seen)
    del state.seen[:-SEEN_EVENT_IDS]


def _when(timestamp: str) -> datetime:
    return datetime.fromisoformat(timestamp)
