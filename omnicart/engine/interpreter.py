"""The journey interpreter: (state, event or timer or send result, now) -> (new state, sends).

This is the only place journey semantics live. The customer workflow, ``omnicart simulate`` and the
tests all drive these four functions, which is why the simulator can promise to agree with
production. They do no I/O, read no clock and draw no random numbers: ``now`` is an argument, ids are
hashes of their inputs, and every collection is walked in a fixed order. They update ``state`` in
place (copying it per event would cost more than the rest of the work) and return what to send.

Times: the trigger's own timestamp anchors a run (``after_trigger``, goal windows); a timer's
actions happen at its logical deadline, not at whenever the timer was delivered, so a run's
journal is the same on a real cluster, the time-skipping server and the simulator.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from omnicart.engine import context
from omnicart.engine.localtime import next_local_time, quiet_until, zone
from omnicart.engine.state import (
    CARTS,
    HELD_TRIGGERS,
    JOURNAL,
    PROFILE_ATTRIBUTES,
    QUARANTINE,
    RECENT_EVENTS,
    RUN_EVENTS,
    SEEN_EVENT_IDS,
    Action,
    CustomerState,
    Deferred,
    Delivering,
    GoalWatch,
    HeldTrigger,
    PendingSend,
    Profile,
    Quarantined,
    QuarantineKind,
    RunState,
    SentMark,
)
from omnicart.events import Channel, Event
from omnicart.journey import conditions
from omnicart.journey.durations import parse_duration, parse_local_time
from omnicart.journey.model import (
    DATE_REACHED,
    DEFAULT_IF_OUT_OF_STOCK,
    Fallback,
    FrequencyCap,
    Journey,
    JourneyBundle,
    OutOfStockPolicy,
    SendSpec,
    SplitSpec,
    Step,
    TemplateOutline,
    WaitSpec,
    percent,
)
from omnicart.messages import SendRequest, SendResult

# A run may take this many instant steps (send, branch) in a row before it must wait; more means a
# goto loop with no wait in it, which would otherwise spin forever.
MAX_INSTANT_STEPS = 100
TOUCHES = 10  # a goal window remembers this many of its run's messages, for attribution

WHATSAPP_WINDOW = timedelta(hours=24)
"""WhatsApp's customer-service window: free-form text only this long after the customer's last message."""
DELIVERY_REPORT_WAIT = timedelta(days=3)
"""How long an accepted message waits for its delivery report before it is forgotten."""
DELIVERING = 50
LATE_REPORTING_CHANNELS = frozenset({"email", "sms", "whatsapp"})
"""Channels whose providers report, after accepting a message, that it did not reach the customer
(SendGrid events, Twilio status callbacks): their accepted sends wait in ``state.delivering``."""
INBOUND = "message_received"
"""The event a customer's own message becomes (an inbound webhook): it opens WhatsApp's window."""

INTERNAL_ERROR = "internal_error"
"""The exit reason of a run whose wait could not be handled (the failure is in ``state.quarantine``)."""

ENGAGEMENT = {
    "message_delivered": "delivered",
    "message_opened": "opened",
    "message_clicked": "clicked",
    "message_bounced": "bounced",
    "message_failed": "failed",
}


@dataclass(slots=True)
class SendCommand:
    """A message the journey decided to send; ``send_request`` turns it into the activity's input."""

    message_id: str
    journey: str
    version: str
    run_id: str
    step_id: str
    channel: Channel
    template: str
    trigger: dict[str, Any]
    variant: str | None = None
    free_form: bool = False  # WhatsApp: send the template's free text, the customer's window is open


@dataclass(slots=True)
class Output:
    """What one call asks of its driver: messages to send, sends to cancel, and what happened.

    ``reached`` marks each step a run reached (analytics counts who waits where); it is kept apart
    from ``actions``, which are what the journal and ``omnicart simulate`` show.
    """

    sends: list[SendCommand] = field(default_factory=list)
    cancel: list[str] = field(default_factory=list)
    actions: list[Action] = field(default_factory=list)
    reached: list[Action] = field(default_factory=list)

    def extend(self, other: Output) -> None:
        """Append what followed. A send that what followed cancels is dropped, never started:
        its run ended (and may have forgotten its journey) before the driver saw the send."""
        if other.cancel and self.sends:
            cancelled = set(other.cancel)
            self.sends = [send for send in self.sends if send.message_id not in cancelled]
        self.sends.extend(other.sends)
        self.cancel.extend(other.cancel)
        self.actions.extend(other.actions)
        self.reached.extend(other.reached)


def next_wakeup(state: CustomerState) -> datetime | None:
    """The earliest moment a timer must call ``handle_timers``, or None when nothing waits."""
    earliest: datetime | None = None
    for run in state.runs:
        if run.wake_at is not None and (earliest is None or run.wake_at < earliest):
            earliest = run.wake_at
    for deferred in state.deferred:
        if earliest is None or deferred.due < earliest:
            earliest = deferred.due
    return earliest


def handle_timers(state: CustomerState, now: datetime, *, safe: bool = False) -> Output:
    """Resume every run whose wait is over by ``now``, earliest first, each at its own deadline.

    With ``safe``, a deadline whose handling fails is rolled back and quarantined (its run ends
    with reason ``internal_error``) instead of raising, so one bad run cannot stop the others.
    """
    out = Output()
    while (due := next_wakeup(state)) is not None and due <= now:
        if not safe:
            _fire(state, due, out, now)
            continue
        checkpoint = state.checkpoint()
        fired = Output()
        try:
            _fire(state, due, fired, now)
        except Exception as error:
            state.restore(checkpoint)
            fired = Output()
            _abandon_due(state, due, error, fired)
        out.extend(fired)
    _expire_goals(state, now)
    _journal(state, out)
    return out


def _fire(state: CustomerState, due: datetime, out: Output, now: datetime) -> None:
    """Handle the one wait (or held fallback) that is due at ``due``; ``now`` is when it is handled,
    later than ``due`` after an outage or for a run started from old events."""
    deferred = next((item for item in state.deferred if item.due == due), None) if state.deferred else None
    if deferred is not None:
        state.deferred.remove(deferred)
        _resend(state, deferred.pending, deferred.pending.option, due, out)
        return
    # Runs due at the same moment go in priority order: the journey that matters more speaks first,
    # and a frequency cap then holds back the other.
    run = _by_priority(state, [run for run in state.runs if run.wake_at == due])[0]
    at = max(due, run.entered_at)
    run.wake_at = None
    bundle = state.bundles[run.version]
    step = bundle.journey.steps[run.step]
    resumed = run.wake_action == "retry"
    if resumed:
        pass  # a send held by quiet hours or a frequency cap: run the same step again
    elif run.wake_action == "timeout" and step.wait_for is not None:
        run.step = _target(bundle.journey, run.step, step.wait_for.on_timeout)
    else:
        run.step = _target(bundle.journey, run.step, step.goto)
    _advance(state, run, at, out, due=due, now=now, resumed=resumed)


def _abandon_due(state: CustomerState, due: datetime, error: Exception, out: Output) -> None:
    """Set aside the deadline that failed: drop a held fallback, or end the run that was waiting."""
    deferred = next((item for item in state.deferred if item.due == due), None)
    if deferred is not None:
        state.deferred.remove(deferred)
        _quarantine(state, due, "timer", error, out, run_id=deferred.pending.run_id, journey=deferred.pending.journey)
        return
    run = next(run for run in state.runs if run.wake_at == due)
    _quarantine(state, due, "timer", error, out, run_id=run.run_id, journey=run.journey)
    _end(state, run, due, INTERNAL_ERROR, out)


def _quarantine(
    state: CustomerState,
    at: datetime,
    kind: QuarantineKind,
    error: Exception,
    out: Output,
    **where: Any,
) -> None:
    state.quarantined_total += 1
    entry = Quarantined(at=at, kind=kind, error=describe_failure(error), seq=state.quarantined_total, **where)
    state.quarantine.append(entry)
    del state.quarantine[:-QUARANTINE]
    out.actions.append(_action(state, entry.journey or "", at, "quarantine", reason=entry.error))


def describe_failure(error: BaseException) -> str:
    """The error as an operator reads it: its type and message, cut short (it is kept in state)."""
    text = f"{type(error).__name__}: {error}"
    return text if len(text) <= 500 else text[:497] + "..."


def handle_event(
    state: CustomerState,
    event: Event,
    journeys: list[JourneyBundle],
    now: datetime,
    *,
    safe: bool = False,
    late_fallback: bool = True,
) -> Output:
    """Apply one event: profile and carts, engagement, goals, exits, awaited events, then triggers.

    ``journeys`` are the published journeys this event's type may trigger; a run that starts takes
    its own copy, so a journey edited later never changes a run under way.

    With ``safe``, an event whose handling fails is rolled back and quarantined with its error
    (``state.quarantine``, replayable with :func:`replay_quarantined`) instead of raising: the
    customer's other journeys go on. The workflow always runs safe; ``omnicart simulate`` runs fast
    and replays a customer safe only when something failed, which gives the same result.

    With ``late_fallback``, a ``message_bounced`` or ``message_failed`` about a message the provider
    had accepted (an email bounce or drop, an SMS undelivered) starts the step's fallback, as a
    failure at send time does. The workflow turns it off for runs started before it existed.
    """
    due = next_wakeup(state)
    out = handle_timers(state, now, safe=safe) if due is not None and due <= now else Output()
    if event.id in state.seen:
        return out
    if not safe:
        out.extend(_apply_event(state, event, journeys, now, late_fallback))
        return out
    checkpoint = state.checkpoint()
    try:
        out.extend(_apply_event(state, event, journeys, now, late_fallback))
    except Exception as error:
        state.restore(checkpoint)
        _remember_seen(state, event.id)  # a redelivery must not fail again; a replay forgets this
        failed = Output()
        _quarantine(state, now, "event", error, failed, event=event, journeys=list(journeys))
        _journal(state, failed)
        out.extend(failed)
    return out


def replay_quarantined(state: CustomerState, now: datetime, *, late_fallback: bool = True) -> Output:
    """Try every quarantined event again (after a fix was deployed), in the order they came.

    Each is handled safely, so one that still fails goes back into quarantine with its new error.
    Quarantined timers and send outcomes are not replayed: their runs were ended.
    """
    events = [
        entry for entry in state.quarantine
        if entry.kind == "event" and entry.event is not None and not entry.journey_refs  # refs: still unfetched
    ]
    state.quarantine = [entry for entry in state.quarantine if entry not in events]
    out = Output()
    for entry in events:
        assert entry.event is not None
        if entry.event.id in state.seen:
            state.seen.remove(entry.event.id)
        out.extend(handle_event(state, entry.event, entry.journeys, now, safe=True, late_fallback=late_fallback))
    return out


def exit_journey(state: CustomerState, journey: str, reason: str, paused_at: datetime, now: datetime) -> Output:
    """End every run of ``journey`` whose trigger happened by ``paused_at``, as an exit with
    ``reason`` (a journey paused with "runs under way exit"): its sends in flight are cancelled, as
    for any exit, and goal windows already counting go on. A run triggered later (after a resume)
    is left alone; one the workflow enters late from an older trigger (a backlog) is not."""
    out = Output()
    for run in [run for run in state.runs if run.journey == journey and run.started_at <= paused_at]:
        _end(state, run, now, reason, out)
    _journal(state, out)
    return out


def quarantine_event(state: CustomerState, event: Event, now: datetime, error: Exception, **where: Any) -> Output:
    """Set an event aside without handling it (its driver could not prepare it), as a failure would."""
    out = Output()
    _remember_seen(state, event.id)
    _quarantine(state, now, "event", error, out, event=event, **where)
    _journal(state, out)
    return out


def _hold(state: CustomerState, event: Event, journeys: list[JourneyBundle]) -> None:
    """Keep an anonymous visitor's trigger, with its journeys, for when the visitor becomes known."""
    if any(bundle.journey.enabled and not bundle.journey.trigger.is_date for bundle in journeys):
        state.held.append(HeldTrigger(event, list(journeys)))
        del state.held[:-HELD_TRIGGERS]


def _remember_seen(state: CustomerState, event_id: str) -> None:
    state.seen.append(event_id)
    del state.seen[:-SEEN_EVENT_IDS]


def _apply_event(
    state: CustomerState, event: Event, journeys: list[JourneyBundle], now: datetime, late_fallback: bool = True
) -> Output:
    _remember_seen(state, event.id)
    new = Output()
    ctx_event = event.context()
    _learn(state, event, ctx_event)
    _delivery_report(state, event, now, new, late_fallback)
    for run in state.runs:
        if event.timestamp >= run.started_at:
            run.events.append(ctx_event)
            del run.events[:-RUN_EVENTS]
    _convert_goals(state, event, ctx_event, now, new)
    _apply_exits(state, event, ctx_event, now, new)
    _restart_clocks(state, event, now, new)
    _resume_waiting(state, event, ctx_event, now, new)
    if state.is_anonymous:
        _hold(state, event, journeys)
        journeys = []  # nobody to send to yet: the known customer's state starts them (engine.merge)
    # The journey with the higher priority starts (and sends) first when one event triggers several.
    for bundle in sorted(journeys, key=lambda bundle: -bundle.journey.priority):
        _maybe_trigger(state, bundle, event, ctx_event, now, new)
    state.recent.append(ctx_event)
    del state.recent[:-RECENT_EVENTS]
    _journal(state, new)
    return new


def handle_send_result(state: CustomerState, result: SendResult, now: datetime, *, safe: bool = False) -> Output:
    """Learn from a send's outcome; a permanent failure moves to the step's next channel.

    With ``safe``, an outcome whose handling fails is rolled back and quarantined; the send is
    settled all the same, so it is not asked for again.
    """
    if not safe:
        return _apply_send_result(state, result, now)
    checkpoint = state.checkpoint()
    try:
        return _apply_send_result(state, result, now)
    except Exception as error:
        state.restore(checkpoint)
        pending = _settle(state, result.message_id)
        out = Output()
        where = {"run_id": pending.run_id, "journey": pending.journey} if pending is not None else {}
        _quarantine(state, now, "send_result", error, out, **where)
        _forget_unused_bundles(state)
        _journal(state, out)
        return out


def _apply_send_result(state: CustomerState, result: SendResult, now: datetime) -> Output:
    out = Output()
    pending = _settle(state, result.message_id)
    if pending is None:
        return out
    profile = state.profile
    if result.dead_push_tokens:
        profile.push_tokens = [t for t in profile.push_tokens if t not in result.dead_push_tokens]
    if result.outcome == "skipped":
        _skipped_at_send(state, pending, result, now, out)
    elif result.outcome == "failed":
        _never_received(state, result.message_id)
        if result.revoke_consent:
            profile.consent[result.channel] = False
            profile.updated_at[f"consent.{result.channel}"] = now
        if result.invalid_address:
            address = context.address(profile, result.channel)
            if address:
                profile.undeliverable[result.channel] = ",".join(address)
        _fall_back(state, pending, now, out)
    elif pending.channel in LATE_REPORTING_CHANNELS:  # accepted; the provider may still report it lost
        state.delivering = [d for d in state.delivering if d.accepted_at > now - DELIVERY_REPORT_WAIT]
        state.delivering.append(Delivering(now, pending))
        del state.delivering[:-DELIVERING]
    # Only now: the fallback above may still need the journey the failed send came from.
    _forget_unused_bundles(state)
    _journal(state, out)
    return out


def _never_received(state: CustomerState, message_id: str) -> None:
    """A reserved place under a frequency cap goes back, and no conversion is credited to the
    message: the customer never got it."""
    state.sent = [mark for mark in state.sent if mark.message_id != message_id]
    for watch in state.goals:
        watch.touches = [touch for touch in watch.touches if touch[0] != message_id]


def _skipped_at_send(state: CustomerState, pending: PendingSend, result: SendResult, now: datetime,
                     out: Output) -> None:
    """The send chose not to go out (what it advertises sold out while the run waited): journalled
    as a skip with its reason. Its place under a frequency cap goes back and no conversion is
    credited to it; no fallback is tried, since another channel would advertise the same items."""
    _never_received(state, result.message_id)
    run = state.run(pending.run_id)
    if run is not None and run.engagement.get("sent", 0) > 0:
        run.engagement["sent"] -= 1
    journey = state.bundles[pending.version].journey
    step = journey.steps[pending.step_index]
    template = _options(step.send)[pending.option].template if step.send else None
    out.actions.append(
        _action(state, pending.journey, now, "skip", of=pending, step=_step_id(journey, pending.step_index),
                channel=pending.channel, template=template, reason=result.skip_reason or "skipped_at_send",
                message_id=result.message_id)
    )


def handle_sent(state: CustomerState, message_id: str) -> None:
    """A send the channel accepted: nothing follows from it but forgetting it was pending."""
    if _settle(state, message_id) is not None:
        _forget_unused_bundles(state)


def _delivery_report(state: CustomerState, event: Event, now: datetime, out: Output, late_fallback: bool) -> None:
    """A delivery report about an accepted message: one that did not reach the customer moves to the
    step's next channel, as a refusal at send time would (once per message: a second report finds
    nothing to do).

    WhatsApp refuses some messages only after Twilio accepted them (Meta holding back a marketing
    template, 63049; free text outside the window, 63016): its webhook marks those ``fallback``, and
    such a report may overtake the send's own result (the message is then still pending, and settled
    here). An email bounce or drop, or an SMS undelivered, falls back too, in runs that recorded
    ``LATE_FAILURE_PATCH`` (``late_fallback``); older histories replay without it.
    """
    props = event.properties
    channel = props.get("channel")
    if channel not in LATE_REPORTING_CHANNELS or not event.type.startswith("message_"):
        return
    whatsapp = channel == "whatsapp"
    lost = event.type == "message_bounced" or (
        event.type == "message_failed" and (props.get("fallback") is True or not whatsapp))
    if not whatsapp and not late_fallback:
        return
    message_id = props.get("message_id")
    state.delivering = [d for d in state.delivering if d.accepted_at > now - DELIVERY_REPORT_WAIT]
    found = next((d for d in state.delivering
                  if d.pending.message_id == message_id and d.pending.channel == channel), None)
    if found is not None:
        if event.type not in ("message_delivered", "message_failed", "message_bounced"):
            return  # an open or a click: the report that settles it is still to come
        state.delivering.remove(found)
        pending: PendingSend | None = found.pending
    elif whatsapp and lost:
        pending = _settle(state, str(message_id))
    else:
        return
    if pending is None or not lost:
        return
    _never_received(state, str(message_id))
    if whatsapp and props.get("invalid_address") is True and state.profile.phone:
        state.profile.undeliverable["whatsapp"] = state.profile.phone
    _fall_back(state, pending, now, out)


def _settle(state: CustomerState, message_id: str) -> PendingSend | None:
    for index, item in enumerate(state.pending):
        if item.message_id == message_id:
            del state.pending[index]
            return item
    return None


def _fall_back(state: CustomerState, pending: PendingSend, now: datetime, out: Output) -> None:
    """Say the failed channel was skipped, and try the step's next channel."""
    journey = state.bundles[pending.version].journey
    step = journey.steps[pending.step_index]
    template = _options(step.send)[pending.option].template if step.send else None
    out.actions.append(
        _action(state, pending.journey, now, "skip", of=pending, step=_step_id(journey, pending.step_index),
                channel=pending.channel, template=template, reason=f"{pending.channel}_failed")
    )
    _resend(state, pending, pending.option + 1, now, out)


def sends_in_flight(state: CustomerState) -> list[SendCommand]:
    """Every send handed to a channel whose outcome is not known yet, as the command that started it.

    A new run after continue-as-new starts these again: the message ids are the same, so the
    ledger makes a send that had in fact gone out report ``already_sent`` instead of sending twice.
    """
    commands = []
    for pending in state.pending:
        bundle = state.bundles[pending.version]
        step = bundle.journey.steps[pending.step_index]
        assert step.send is not None
        option = _options(step.send)[pending.option]
        commands.append(
            SendCommand(pending.message_id, pending.journey, pending.version, pending.run_id,
                        _step_id(bundle.journey, pending.step_index), cast(Channel, pending.channel),
                        option.template, pending.trigger, pending.variant, pending.free_form)
        )
    return commands


def catalog_wanted(
    state: CustomerState, now: datetime, event: Event | None = None, journeys: Sequence[JourneyBundle] = ()
) -> list[str]:
    """The skus whose stock a condition may read when ``now``'s due timers (and ``event``, offered
    ``journeys``) are handled: those of the carts of runs about to reach a branch or ``skip_if``
    that reads ``catalog``. Empty for everything else, so only such journeys cost a catalog read.

    The interpreter cannot read the database; its driver asks the catalog for these skus (the
    workflow by an activity, ``omnicart simulate`` from its timeline) and hands the answer to
    :func:`learn_catalog` before the input, so (definition, state, input) stays pure.
    """
    skus: list[str] = []
    for run in state.runs:
        journey = state.bundles[run.version].journey
        awaited = journey.steps[run.step].wait_for if run.step < len(journey.steps) else None
        due = run.wake_at is not None and run.wake_at <= now
        resumed = event is not None and awaited is not None and awaited.event == event.type
        if (due or resumed) and _reads_catalog(journey, run.step, started=False):
            skus.extend(_skus(context.cart(state, run.trigger)))
            if resumed and event is not None:
                skus.extend(_skus(event.properties))
    if event is not None:
        for bundle in journeys:
            if bundle.journey.trigger.event_type == event.type and _reads_catalog(bundle.journey, 0, started=True):
                skus.extend(_skus(event.properties))
    return list(dict.fromkeys(skus))


def learn_catalog(state: CustomerState, view: Mapping[str, dict[str, Any]]) -> None:
    """What the catalog says now of the skus :func:`catalog_wanted` named: ``catalog`` in conditions."""
    state.catalog = dict(view)


def _reads_catalog(journey: Journey, index: int, *, started: bool) -> bool:
    """Whether a run at step ``index`` may evaluate a condition reading ``catalog`` before it next
    waits: from the trigger (``started``: step ``index`` runs first), or waking from a wait there.
    A journey never changes, so the answer is kept with it (journeys are few, runs many)."""
    known = _READS_CATALOG.get(id(journey))
    if known is None or known[0] is not journey:
        if len(_READS_CATALOG) >= 256:  # a worker deserialises journeys again and again: stay bounded
            _READS_CATALOG.clear()
        known = _READS_CATALOG[id(journey)] = (journey, {})
    key = (index, started)
    if key not in known[1]:
        known[1][key] = _walk_for_catalog(journey, index, started=started)
    return known[1][key]


_READS_CATALOG: dict[int, tuple[Journey, dict[tuple[int, bool], bool]]] = {}


def _walk_for_catalog(journey: Journey, index: int, *, started: bool) -> bool:
    seen: set[int] = set()
    todo = [index] if started else _successors(journey, index)
    while todo:
        at = todo.pop()
        if at in seen or at >= len(journey.steps):
            continue
        seen.add(at)
        step = journey.steps[at]
        if step.wait is not None or step.wait_for is not None:
            continue
        reads = [case.if_ for case in step.branch or []]
        if step.send is not None:
            reads.append(step.send.skip_if)
        if any(expression is not None and _CATALOG.search(expression) for expression in reads):
            return True
        todo.extend(_successors(journey, at))
    return False


def _successors(journey: Journey, index: int) -> list[int]:
    """Every step a run may go to from step ``index`` (a held send stays at ``index``)."""
    step = journey.steps[index]
    found = [index + 1] if step.exit is None else []
    if step.send is not None:
        found.append(index)
    if step.goto is not None:
        found.append(journey.step_index(step.goto))
    if step.wait_for is not None:
        found.extend(_target(journey, index, goto) for goto in (step.wait_for.on_timeout, step.wait_for.on_event))
    for case in step.branch or []:
        found.append(_target(journey, index, case.else_ if case.else_ is not None else case.goto))
    if step.split is not None:
        found.extend(_target(journey, index, variant.goto) for variant in step.split.variants.values())
    return found


_CATALOG = re.compile(r"(?<![\w.])catalog\b")


def _skus(properties: Mapping[str, Any]) -> list[str]:
    """The skus of a cart (or of a cart event's properties)."""
    items = properties.get("items")
    if not isinstance(items, list):
        return []
    return [item["sku"] for item in items if isinstance(item, dict) and isinstance(item.get("sku"), str)]


def new_state(customer_id: str) -> CustomerState:
    return CustomerState(customer_id=customer_id)


def send_request(state: CustomerState, command: SendCommand, *, by_reference: bool = False) -> SendRequest:
    """The send activity's input, with the profile and cart as they are right after the decision.

    Built on demand because only a real channel needs it: the simulator sends nothing. With
    ``by_reference`` (the journey version is in the registry) it names the template instead of
    carrying it, and leaves out the trigger event unless the template reads it: the few values the
    message needs, not the whole context.
    """
    bundle = state.bundles[command.version]
    template = bundle.templates.get(command.template)
    by_reference = by_reference or template is None  # an outlined bundle came from the registry
    message = context.message(state, command.trigger, command.journey, command.run_id, command.step_id)
    if by_reference and not bundle.outline(command.template).reads_trigger:
        del message["trigger"]
    return SendRequest(
        message_id=command.message_id,
        customer_id=state.customer_id,
        journey=command.journey,
        journey_version=command.version,
        run_id=command.run_id,
        step_id=command.step_id,
        channel=command.channel,
        template_name=command.template,
        template=None if by_reference else template,
        to=context.address(state.profile, command.channel),
        context=message,
        variant=command.variant,
        free_form=command.free_form,
        if_out_of_stock=out_of_stock_policy(bundle, command.step_id),
    )


def out_of_stock_policy(bundle: JourneyBundle, step_id: str) -> OutOfStockPolicy:
    """What a send step does when what its message advertises sold out (checked at send time)."""
    step = bundle.journey.steps[bundle.journey.step_index(step_id)]
    chosen = step.send.if_out_of_stock if step.send is not None else None
    return chosen or DEFAULT_IF_OUT_OF_STOCK


# --- profile, carts and engagement ---------------------------------------------------------------


def _learn(state: CustomerState, event: Event, ctx_event: dict[str, Any]) -> None:
    props = event.properties
    profile = state.profile
    latest = profile.last_event_at.get(event.type)
    if event.type != DATE_REACHED and (latest is None or latest < event.timestamp):
        profile.last_event_at[event.type] = event.timestamp
    if event.type == "customer_updated":
        for name, value in props.items():
            if name == "consent" and isinstance(value, dict):
                for channel, granted in value.items():
                    if granted is not None:
                        _set_consent(state, channel, bool(granted), event.timestamp)
            elif _newer(profile.updated_at, name, event.timestamp):
                if name in ("email", "phone", "timezone", "locale", "first_name"):
                    setattr(profile, name, value or None)
                elif name == "push_tokens":
                    profile.push_tokens = [str(token) for token in value or []]
                elif name in profile.attributes or len(profile.attributes) < PROFILE_ATTRIBUTES:
                    profile.attributes[name] = value
    elif event.type == "consent_changed":
        topic = props.get("topic")
        subject = topic_consent_key(str(topic)) if topic else str(props.get("channel"))
        _set_consent(state, subject, bool(props.get("granted")), event.timestamp)
    elif event.type == INBOUND:
        channel = str(props.get("channel"))
        latest = profile.inbound_at.get(channel)
        if latest is None or latest < event.timestamp:
            profile.inbound_at[channel] = event.timestamp
    elif event.type in ("cart_updated", "checkout_started"):
        cart_id = str(props.get("cart_id"))
        known = state.carts.get(cart_id)
        if known is None or _when(known["_at"]) <= event.timestamp:
            state.carts.pop(cart_id, None)
            state.carts[cart_id] = {**props, "_at": ctx_event["timestamp"]}
            while len(state.carts) > CARTS:
                state.carts.pop(next(iter(state.carts)))
    elif event.type in ENGAGEMENT:
        kind = ENGAGEMENT[event.type]
        message_id = props.get("message_id")
        owners = [run for run in state.runs if message_id in run.messages]
        if not owners:
            # An app reporting a push open may know the journey but not our message id.
            owners = [run for run in state.runs if run.journey == props.get("journey")]
        for run in owners:
            run.engagement[kind] = run.engagement.get(kind, 0) + 1
        if kind == "bounced":
            address = context.address(profile, str(props.get("channel")))
            if address:
                profile.undeliverable[str(props.get("channel"))] = ",".join(address)


def topic_consent_key(topic: str) -> str:
    """Where a topic's consent lives in ``profile.consent``, beside the channels': ``topic:<name>``."""
    return f"topic:{topic}"


def _set_consent(state: CustomerState, channel: str, granted: bool, at: datetime) -> None:
    if _newer(state.profile.updated_at, f"consent.{channel}", at):
        state.profile.consent[channel] = granted


def _newer(updated_at: dict[str, datetime], name: str, at: datetime) -> bool:
    """Last writer wins by event time, so a late, older update cannot undo a newer one."""
    previous = updated_at.get(name)
    if previous is not None and previous > at:
        return False
    updated_at[name] = at
    return True


# --- goals, exits and awaited events -------------------------------------------------------------


def _convert_goals(
    state: CustomerState, event: Event, ctx_event: dict[str, Any], now: datetime, out: Output
) -> None:
    for watch in list(state.goals):
        bundle = state.bundles.get(watch.version)
        goal = bundle.journey.goal if bundle else None
        if goal is None or goal.event != event.type or not watch.counting:
            continue
        if not (watch.started_at <= event.timestamp <= watch.until):
            continue
        scope = context.conditions(state, watch.trigger, ctx_event, state.run(watch.run_id))
        if not conditions.holds(goal.if_, scope):
            continue
        value = _goal_value(goal.value, scope)
        state.goals.remove(watch)
        # Last touch: the last message this run sent before the conversion. A conversion with no
        # message (a holdout, an order before the first reminder) is recorded all the same: it is
        # what lift is measured against.
        in_flight = {pending.message_id for pending in state.pending}
        received = [touch for touch in watch.touches if touch[0] not in in_flight]
        credited = received[-1] if received and goal.attribution == "last_touch" else (None, None, None)
        out.actions.append(
            _action(state, watch.journey, now, "convert", of=watch, value=value,
                    currency=_goal_currency(goal.currency, scope) if value is not None else None,
                    message_id=credited[0], step=credited[1], channel=credited[2])
        )


def _goal_value(expression: str | None, scope: Mapping[str, Any]) -> float | None:
    if expression is None:
        return None
    try:
        value = conditions.evaluate(expression, scope)
    except conditions.ConditionError:
        return None
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _goal_currency(expression: str | None, scope: Mapping[str, Any]) -> str | None:
    """The conversion's currency: the goal's expression, else the event's ``currency`` property."""
    if expression is None:
        value = scope["event"]["properties"].get("currency")
    else:
        try:
            value = conditions.evaluate(expression, scope)
        except conditions.ConditionError:
            return None
    return value.upper() if isinstance(value, str) and value else None


def _apply_exits(
    state: CustomerState, event: Event, ctx_event: dict[str, Any], now: datetime, out: Output
) -> None:
    for run in list(state.runs):
        if event.timestamp < run.started_at:
            continue  # it happened before this run began
        reason = _exit_reason(state, run, ctx_event)
        if reason is not None:
            _end(state, run, now, reason, out)


def _exit_reason(state: CustomerState, run: RunState, ctx_event: dict[str, Any]) -> str | None:
    journey = state.bundles[run.version].journey
    for rule in journey.exit_when:
        if rule.event != ctx_event["type"]:
            continue
        if conditions.holds(rule.if_, context.conditions(state, run.trigger, ctx_event, run)):
            return rule.reason or rule.event
    return None


def _resume_waiting(
    state: CustomerState, event: Event, ctx_event: dict[str, Any], now: datetime, out: Output
) -> None:
    for run in list(state.runs):
        if run.wake_action != "timeout" or run.wake_at is None or event.timestamp < run.started_at:
            continue
        journey = state.bundles[run.version].journey
        awaited = journey.steps[run.step].wait_for
        if awaited is None or awaited.event != event.type:
            continue
        if conditions.holds(awaited.if_, context.conditions(state, run.trigger, ctx_event, run)):
            run.wake_at = None
            run.step = _target(journey, run.step, awaited.on_event)
            _advance(state, run, now, out, due=now, now=now)


# --- starting runs -------------------------------------------------------------------------------


def _date_reached_applies(state: CustomerState, journey: Journey, event: Event) -> bool:
    """A ``date_reached`` starts only the journey it names; for an ``after`` trigger, only if no
    newer event of that type came since the one its due moment was computed from (the projection
    can lag behind the workflow, and an order may arrive while the schedule works)."""
    if event.properties.get("journey") != journey.name:
        return False
    after = journey.trigger.after
    if after is None:
        return True
    anchor = event.properties.get("anchor")
    latest = state.profile.last_event_at.get(after.event)
    return latest is None or not isinstance(anchor, str) or latest <= _when(anchor)


def _restart_clocks(state: CustomerState, event: Event, now: datetime, out: Output) -> None:
    """A new event of the type an ``after`` trigger counts from restarts its clock: a run it started
    ends (reason ``restarted``), and the schedule counts the days again from this event."""
    for run in list(state.runs):
        after = state.bundles[run.version].journey.trigger.after
        if after is not None and after.event == event.type and event.timestamp >= run.started_at:
            _end(state, run, now, "restarted", out)


def _maybe_trigger(
    state: CustomerState,
    bundle: JourneyBundle,
    event: Event,
    ctx_event: dict[str, Any],
    now: datetime,
    out: Output,
) -> None:
    journey = bundle.journey
    trigger = journey.trigger
    if not journey.enabled or trigger.event_type != event.type:
        return
    if trigger.once and journey.name in state.entered:
        return  # once per customer (a welcome): never a second run
    if trigger.is_date and not _date_reached_applies(state, journey, event):
        return
    key: str | None = None
    if trigger.key is not None:
        raw = event.properties.get(trigger.key)
        if raw is None or raw == "":
            return
        key = str(raw)
    if not conditions.holds(trigger.if_, context.conditions(state, ctx_event, ctx_event, None)):
        return
    if trigger.max_age is not None and now - event.timestamp > parse_duration(trigger.max_age):
        # An old event (a backfill, a late batch) still taught the profile and goals; it starts nothing.
        out.actions.append(_action(state, journey.name, now, "skip", version=bundle.version, reason="too_old"))
        return
    running = next((r for r in state.runs if r.journey == journey.name and r.key == key), None)
    if running is not None:
        if trigger.on_retrigger == "ignore":
            return
        _end(state, running, now, "restarted", out)

    started_at = min(event.timestamp, now)
    state.runs_started += 1
    run = RunState(
        run_id=_digest("run", state.customer_id, journey.name, key or "", event.id),
        journey=journey.name,
        version=bundle.version,
        key=key,
        trigger=ctx_event,
        started_at=started_at,
        entered_at=now,
        holdout=_holdout(state, bundle),
    )
    state.bundles.setdefault(bundle.version, bundle)
    state.runs.append(run)
    if journey.name not in state.entered:
        state.entered.append(journey.name)
    out.actions.append(_action(state, journey.name, now, "enter", of=run))
    if journey.goal is not None:
        # A goal counted from a later step (``after``) opens its window when the run gets there.
        state.goals.append(
            GoalWatch(run.run_id, journey.name, bundle.version, ctx_event, started_at,
                      started_at + parse_duration(journey.goal.within), counting=journey.goal.after is None,
                      holdout=run.holdout)
        )
    # Events that arrived before the trigger but happened after it (out of order) still count.
    for earlier in state.recent:
        if _when(earlier["timestamp"]) >= event.timestamp:
            late = Event.model_validate(earlier)
            _convert_goals(state, late, earlier, now, out)
            reason = _exit_reason(state, run, earlier)
            if reason is not None:
                _end(state, run, now, reason, out)
                return
    # Waits count from when the checkout happened, not from when we heard of it.
    _advance(state, run, started_at, out, due=started_at, now=now)


# --- running steps -------------------------------------------------------------------------------


def _advance(
    state: CustomerState,
    run: RunState,
    at: datetime,
    out: Output,
    *,
    due: datetime | None = None,
    now: datetime | None = None,
    resumed: bool = False,
) -> None:
    """Run instant steps from ``run.step`` until the run waits or ends.

    ``due`` is when the current step was planned to happen and ``now`` when it is really handled:
    a send with ``late_after`` compares the two (a wait already over moves ``due`` to its end).
    ``resumed``: the run is back at a step it already reached (a held send), which is not marked again.
    """
    bundle = state.bundles[run.version]
    journey = bundle.journey
    lateness = (now - due) if now is not None and due is not None else None
    for _ in range(MAX_INSTANT_STEPS):
        if run.step >= len(journey.steps):
            _end(state, run, at, "completed", out)
            return
        step = journey.steps[run.step]
        if not resumed:
            _reach(state, run, journey, at, out)
        resumed = False
        if step.wait is not None:
            deadline = _wait_deadline(state, run, journey, step.wait, at)
            if deadline > at:
                _sleep(run, deadline, "next")
                return
            if lateness is not None and now is not None:
                lateness = min(lateness, now - deadline)
            run.step = _target(journey, run.step, step.goto)
        elif step.send is not None:
            held_until = _send_step(state, run, bundle, step, step.send, at, out, lateness)
            if held_until is not None:
                _sleep(run, held_until, "retry")
                return
            run.option = 0
            run.step = _target(journey, run.step, step.goto)
        elif step.wait_for is not None:
            _sleep(run, at + parse_duration(step.wait_for.timeout), "timeout")
            return
        elif step.branch is not None:
            run.step = _branch(state, run, journey, step, at)
        elif step.split is not None:
            run.step = _split(state, run, journey, step.split, at, out)
        else:
            _end(state, run, at, step.exit or "completed", out)
            return
    _end(state, run, at, "loop_without_wait", out)


def _reach(state: CustomerState, run: RunState, journey: Journey, at: datetime, out: Output) -> None:
    """Mark the run reaching its current step, and open a goal window that starts there."""
    step_id = _step_id(journey, run.step)
    if journey.steps[run.step].split is None:  # a split's mark carries the variant it assigns (``_split``)
        out.reached.append(_action(state, journey.name, _seen(run, at), "step", of=run, step=step_id))
    goal = journey.goal
    if goal is not None and goal.after == step_id:
        watch = state.goal(run.run_id)
        if watch is not None and not watch.counting:
            watch.counting = True
            watch.started_at = _seen(run, at)
            watch.until = watch.started_at + parse_duration(goal.within)


def _split(state: CustomerState, run: RunState, journey: Journey, split: SplitSpec, at: datetime, out: Output) -> int:
    """Assign the customer a variant, for good, and go down its branch.

    The first exposure hashes (experiment, customer): the same customer lands in the same variant in
    every run, in ``simulate`` and in the workflow. The assignment is then remembered, so changing
    the weights later does not move customers already assigned (only a removed variant does).
    """
    step_id = _step_id(journey, run.step)
    experiment = split.experiment or f"{journey.name}_{step_id}"
    variant = state.assignments.get(experiment)
    if variant not in split.variants:
        variant = assign_variant(experiment, state.customer_id, {name: v.weight for name, v in split.variants.items()})
        state.assignments[experiment] = variant
    run.experiment, run.variant = experiment, variant
    watch = state.goal(run.run_id)
    if watch is not None:
        watch.experiment, watch.variant = experiment, variant
    out.reached.append(_action(state, journey.name, _seen(run, at), "step", of=run, step=step_id))
    return _target(journey, run.step, split.variants[variant].goto)


def assign_variant(experiment: str, customer_id: str, weights: Mapping[str, float]) -> str:
    """A variant drawn by hash, in proportion to ``weights`` (in the order they were written)."""
    point = _unit_hash("split", experiment, customer_id) * sum(weights.values())
    for name, weight in weights.items():
        if point < weight:
            return name
        point -= weight
    return next(reversed(list(weights)))


def _holdout(state: CustomerState, bundle: JourneyBundle) -> Any:
    """Whether this run is held out (it will send nothing): the global holdout, for marketing
    journeys, then the journey's own. Hashed with their own salts, so a holdout never lines up with
    a split's variants; remembered at first exposure, so a later change of share moves nobody."""
    journey = bundle.journey
    global_share = bundle.policies.global_holdout
    marketing = journey.category == "marketing"
    if marketing and global_share is not None and _held_out(state, "global", "holdout:*", percent(global_share)):
        return "global"
    own_share = journey.holdout
    if own_share is not None and _held_out(state, journey.name, f"holdout:{journey.name}", percent(own_share)):
        return "journey"
    return None


def _held_out(state: CustomerState, salt: str, key: str, share: float) -> bool:
    known = state.assignments.get(key)
    if known is None:
        known = "holdout" if held_out_by_hash(salt, state.customer_id, share) else "treated"
        state.assignments[key] = known
    return known == "holdout"


def held_out_by_hash(salt: str, customer_id: str, share: float) -> bool:
    """Whether a customer falls in a holdout of this share at first exposure (salt: the journey's
    name, or ``global``)."""
    return _unit_hash("holdout", salt, customer_id) < share


def _unit_hash(*parts: str) -> float:
    """A number in [0, 1) fixed by ``parts``: a reproducible coin, the same on every machine."""
    return int(hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:15], 16) / float(16**15)


def _by_priority(state: CustomerState, runs: list[RunState]) -> list[RunState]:
    return sorted(runs, key=lambda run: -state.bundles[run.version].journey.priority)


def _sleep(run: RunState, until: datetime, action: Any) -> None:
    run.wake_at = until
    run.wake_action = action


def _wait_deadline(
    state: CustomerState, run: RunState, journey: Journey, wait: str | WaitSpec, at: datetime
) -> datetime:
    if isinstance(wait, str):
        return at + parse_duration(wait)
    if wait.after_trigger is not None:
        return run.started_at + parse_duration(wait.after_trigger)
    tz = zone(state.profile.timezone, journey.default_timezone)
    return next_local_time(at, tz, parse_local_time(wait.until or "00:00"))


def _branch(state: CustomerState, run: RunState, journey: Journey, step: Step, at: datetime) -> int:
    scope = context.conditions(state, run.trigger, None, run)
    for case in step.branch or []:
        if case.else_ is not None:
            return _target(journey, run.step, case.else_)
        if conditions.holds(case.if_, scope):
            return _target(journey, run.step, case.goto)
    return run.step + 1


def _send_step(
    state: CustomerState,
    run: RunState,
    bundle: JourneyBundle,
    step: Step,
    send: SendSpec,
    at: datetime,
    out: Output,
    lateness: timedelta | None = None,
) -> datetime | None:
    """Send on the first channel that can take the message now; returns when quiet hours end if held.

    A message due longer ago than the step's ``late_after`` is skipped (``too_late``): after a
    backfill or an outage, a reminder about yesterday's cart would only confuse.
    """
    journey = bundle.journey
    step_id = _step_id(journey, run.step)
    options = _options(send)
    first = options[0]
    reason = None
    if run.holdout is not None:
        reason = "holdout"  # counted, never messaged: what the journey's lift is measured against
    elif send.late_after is not None and lateness is not None and lateness > parse_duration(send.late_after):
        reason = "too_late"
    elif run.option == 0 and send.skip_if is not None and conditions.holds(
        send.skip_if, context.conditions(state, run.trigger, None, run)
    ):
        reason = send.skip_reason or "skip_if"
    if reason is not None:
        out.actions.append(
            _action(state, journey.name, _seen(run, at), "skip", of=run, step=step_id,
                    channel=_channel(bundle, first), template=first.template, reason=reason)
        )
        run.held_since = None
        return None
    pending = PendingSend("", run.run_id, journey.name, run.version, run.key, run.trigger, run.step, 0, "",
                          run.variant, run.experiment, run.holdout)
    held = _try_options(state, pending, run.option, at, out, run)
    if held is not None:
        run.option = held[0]
        return held[1]
    run.held_since = None
    return None


def _resend(state: CustomerState, pending: PendingSend, option: int, at: datetime, out: Output) -> None:
    """Send a fallback for a pending send that failed for good, or whose quiet hours ended."""
    held = _try_options(state, pending, option, at, out, state.run(pending.run_id))
    if held is not None:
        state.deferred.append(Deferred(held[1], dataclasses.replace(pending, option=held[0])))


def _try_options(
    state: CustomerState,
    base: PendingSend,
    first_option: int,
    at: datetime,
    out: Output,
    run: RunState | None,
) -> tuple[int, datetime] | None:
    """Walk the step's channels from ``first_option``: skip, hold for quiet hours, or send one."""
    at = _seen(run, at)
    bundle = state.bundles[base.version]
    journey = bundle.journey
    step = journey.steps[base.step_index]
    step_id = _step_id(journey, base.step_index)
    assert step.send is not None
    options = _options(step.send)
    profile = state.profile
    for index in range(first_option, len(options)):
        option = options[index]
        channel = _channel(bundle, option)
        reason = None
        if profile.consent.get(channel) is not True:
            reason = f"no_{channel}_consent"
        elif profile.consent.get(topic_consent_key(journey.effective_topic)) is False:
            reason = "topic_opt_out"  # only an explicit opt-out: a topic nobody chose is allowed
        elif not context.address(profile, channel):
            reason = f"no_{channel}_address"
        if reason is not None:
            out.actions.append(
                _action(state, journey.name, at, "skip", of=base, step=step_id, channel=channel,
                        template=option.template, reason=reason)
            )
            continue
        marketing = journey.category == "marketing"
        quiet = journey.quiet_hours.get(cast(Channel, channel))
        if quiet is None and marketing:
            quiet = bundle.policies.quiet_hours.get(cast(Channel, channel))
        if quiet is not None:
            tz = zone(profile.timezone, journey.default_timezone)
            until = quiet_until(at, tz, parse_local_time(quiet.start), parse_local_time(quiet.end))
            if until is not None:
                out.actions.append(
                    _action(state, journey.name, at, "hold", of=base, step=step_id, channel=channel,
                            template=option.template, reason="quiet_hours", until=until)
                )
                return index, until
        if marketing and bundle.policies.frequency_caps:
            capped = _capped(state, bundle.policies.frequency_caps, channel, at)
            if capped is not None:
                cap, frees_at = capped
                since = run.held_since if run is not None and run.held_since is not None else at
                hold = (step.send.when_capped or cap.when_capped) == "hold"
                if hold and frees_at - since <= parse_duration(cap.max_hold):
                    if run is not None:
                        run.held_since = since
                    out.actions.append(
                        _action(state, journey.name, at, "hold", of=base, step=step_id, channel=channel,
                                template=option.template, reason="frequency_capped", until=frees_at)
                    )
                    return index, frees_at
                out.actions.append(
                    _action(state, journey.name, at, "skip", of=base, step=step_id, channel=channel,
                            template=option.template, reason="frequency_capped")
                )
                continue
        free_form = channel == "whatsapp" and _whatsapp_free_form(profile, bundle.outline(option.template), at)
        # A first send is numbered by the run's send count; a fallback by the message it replaces.
        seed = base.message_id or str(run.sends if run is not None else 0)
        message_id = _digest("msg", state.customer_id, base.run_id, step_id, seed, str(index))
        if run is not None:
            run.sends += 1
            run.messages.append(message_id)
            run.engagement["sent"] = run.engagement.get("sent", 0) + 1
        state.pending.append(
            PendingSend(message_id, base.run_id, base.journey, base.version, base.key, base.trigger,
                        base.step_index, index, channel, base.variant, base.experiment, base.holdout, free_form)
        )
        if marketing:
            state.sent.append(SentMark(at, channel, message_id))  # reserved now, released if it fails
        watch = state.goal(base.run_id)
        if watch is not None and watch.until >= at:
            watch.touches.append((message_id, step_id, channel))
            del watch.touches[:-TOUCHES]
        out.sends.append(
            SendCommand(message_id, journey.name, base.version, base.run_id, step_id, cast(Channel, channel),
                        option.template, base.trigger, base.variant, free_form)
        )
        out.actions.append(
            _action(state, journey.name, at, "send", of=base, step=step_id, channel=channel,
                    template=option.template, message_id=message_id)
        )
        return None
    return None


def _whatsapp_free_form(profile: Profile, template: TemplateOutline, at: datetime) -> bool:
    """Free text instead of the approved template: only when the template has some and the customer
    wrote to us on WhatsApp within the last 24 hours (at the decision's time)."""
    if not template.free_text:
        return False
    last = profile.inbound_at.get("whatsapp")
    return last is not None and at - last < WHATSAPP_WINDOW


def _capped(
    state: CustomerState, caps: list[FrequencyCap], channel: str, at: datetime
) -> tuple[FrequencyCap, datetime] | None:
    """The cap a marketing message on ``channel`` at ``at`` would break, and when it next allows one.

    Messages in flight count as sent (they are reserved when the send starts): two journeys deciding
    at the same moment cannot both slip under a cap. Marks older than every cap's window are dropped.
    """
    longest = max(parse_duration(cap.per) for cap in caps)
    state.sent = [mark for mark in state.sent if mark.at > at - longest]
    worst: tuple[FrequencyCap, datetime] | None = None
    for cap in caps:
        per = parse_duration(cap.per)
        counted = [mark.at for mark in state.sent
                   if mark.at > at - per and (cap.channel == "any" or mark.channel == cap.channel)]
        if cap.channel not in ("any", channel) or len(counted) < cap.at_most:
            continue
        # The cap allows another message once enough of the counted ones have left its window.
        frees_at = sorted(counted)[len(counted) - cap.at_most] + per
        if worst is None or frees_at > worst[1]:
            worst = (cap, frees_at)
    return worst


def _end(state: CustomerState, run: RunState, at: datetime, reason: str, out: Output) -> None:
    """Finish a run. An exit event also cancels its sends in flight; completion lets them land."""
    at = _seen(run, at)
    state.runs.remove(run)
    if reason != "completed":
        cancelled = [p for p in state.pending if p.run_id == run.run_id]
        out.cancel.extend(p.message_id for p in cancelled)
        state.pending = [p for p in state.pending if p.run_id != run.run_id]
        state.deferred = [d for d in state.deferred if d.pending.run_id != run.run_id]
        # Nor does a refusal reported after the exit send its fallback.
        state.delivering = [d for d in state.delivering if d.pending.run_id != run.run_id]
    # A goal counted from a step the run never reached has no window to count in.
    state.goals = [watch for watch in state.goals if watch.counting or watch.run_id != run.run_id]
    out.actions.append(_action(state, run.journey, at, "exit", of=run, reason=reason))
    _forget_unused_bundles(state)


def _expire_goals(state: CustomerState, now: datetime) -> None:
    for watch in state.goals:
        if watch.counting and watch.until < now:
            state.goals = [watch for watch in state.goals if not watch.counting or watch.until >= now]
            _forget_unused_bundles(state)
            return


def _forget_unused_bundles(state: CustomerState) -> None:
    if len(state.bundles) == 1 and not state.is_idle():
        return  # the one journey snapshot is still in use
    used = {run.version for run in state.runs}
    used.update(watch.version for watch in state.goals)
    used.update(pending.version for pending in state.pending)
    used.update(deferred.pending.version for deferred in state.deferred)
    used.update(delivering.pending.version for delivering in state.delivering)
    for version in [v for v in state.bundles if v not in used]:
        del state.bundles[version]


# --- small helpers -------------------------------------------------------------------------------


def _options(send: SendSpec) -> list[SendSpec | Fallback]:
    return [send, *send.fallback]


def _channel(bundle: JourneyBundle, option: SendSpec | Fallback) -> str:
    return option.channel or bundle.outline(option.template).channel


def _target(journey: Journey, index: int, goto: str | None) -> int:
    if goto is None:
        return index + 1
    return journey.step_index(goto)


def _step_id(journey: Journey, index: int) -> str:
    return journey.step_id(index)


def _seen(run: RunState | None, at: datetime) -> datetime:
    """An action happens at its logical time, but never before the run learned of its trigger."""
    return at if run is None or at >= run.entered_at else run.entered_at


def _when(timestamp: str) -> datetime:
    return datetime.fromisoformat(timestamp)


def _digest(prefix: str, *parts: str) -> str:
    return f"{prefix}_" + hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:24]


def _action(
    state: CustomerState, journey: str, at: datetime, kind: Any, *, of: Any = None, **fields: Any
) -> Action:
    """An action, numbered for the customer; ``of`` (a run, a send in flight or a goal window) gives
    the run, version, variant and holdout that analytics groups it by."""
    state.actions_total += 1
    action = Action(at, state.customer_id, journey, kind, **fields)
    action.seq = state.actions_total
    if of is not None:
        action.run_id, action.version, action.variant = of.run_id, of.version, of.variant
        action.experiment, action.holdout = of.experiment, of.holdout
    if action.version is not None:
        bundle = state.bundles.get(action.version)
        if bundle is not None:
            action.category = bundle.journey.category
    return action


def _journal(state: CustomerState, out: Output) -> None:
    if out.actions:
        state.journal.extend(out.actions)
        del state.journal[:-JOURNAL]
