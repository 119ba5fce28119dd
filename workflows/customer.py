"""The customer workflow: one durable entity per customer, running all of that customer's journeys.

It owns no journey logic. It feeds the interpreter what happens (signalled events, fired timers,
send outcomes) and carries out what the interpreter asks (send activities, cancellations). One timer
is armed at a time, for the earliest deadline of any run, so a three-step journey costs the same
history as a hand-written workflow that sleeps and sends three times.

Nothing a customer sends can wedge it: the interpreter runs in safe mode, so an input it fails on
is rolled back and quarantined (the ``quarantine`` query shows it, the ``replay_quarantine`` update
retries it after a fix) while every other run goes on. A quarantine asks for a fresh run soon
(continue-as-new), so the failing input is not replayed from history by a fixed worker: it lives on
only as data in the state.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError, CancelledError

from omnicart.analytics import rows
from omnicart.analytics.rows import JourneyActionRow
from omnicart.engine import interpreter, merge
from omnicart.engine.state import Action, CustomerState
from omnicart.events import Event
from omnicart.journey.model import JourneyBundle
from omnicart.messages import SEND_HEARTBEAT_TIMEOUT, SEND_RETRY_POLICY, SendRequest, SendResult
from omnicart.signals import (
    ANALYTICS_PATCH,
    CATALOG_FOR_CONDITIONS_ACTIVITY,
    CATALOG_PATCH,
    CUSTOMER_WORKFLOW,
    EVENT_SIGNAL,
    EXIT_JOURNEY_SIGNAL,
    FORGET_SIGNAL,
    HAND_OVER_ACTIVITY,
    IDENTITY_PATCH,
    LATE_FAILURE_PATCH,
    LINK_SIGNAL,
    LOAD_JOURNEYS_ACTIVITY,
    MERGE_SIGNAL,
    PACING_PATCH,
    PAUSE_EXIT_PATCH,
    QUARANTINE_QUERY,
    RECORD_ANALYTICS_ACTIVITY,
    RECORD_QUARANTINE_ACTIVITY,
    REPLAY_QUARANTINE_UPDATE,
    STATE_BYTES_BUDGET,
    TOPIC_CONSENT_PATCH,
    CustomerWorkflowInput,
    HandOver,
    IncomingEvent,
    JourneyExit,
    JourneyRef,
    Link,
    LoadedJourneys,
    QuarantineReport,
)


@workflow.defn(name=CUSTOMER_WORKFLOW)
class CustomerWorkflow:
    @workflow.init
    def __init__(self, input: CustomerWorkflowInput) -> None:
        self._state: CustomerState = input.state or interpreter.new_state(input.customer_id)
        self._inbox: list[IncomingEvent] = list(input.pending)
        self._in_flight: dict[str, asyncio.Task[None]] = {}
        self._send_timeout = timedelta(seconds=input.send_timeout_seconds)
        self._quarantined_before = self._state.quarantined_total
        self._recorded_total = self._state.quarantined_total  # a run continues-as-new only once recorded
        self._recording: asyncio.Task[None] | None = None
        self._forgotten = False
        # Journey versions seen by this run, and those known to be in the registry (their sends name the
        # template instead of carrying it): events bring versions, the registry their content.
        self._journeys: dict[str, JourneyBundle] = dict(self._state.bundles)
        self._registered: set[str] = set(input.registered_versions)
        # Analytics: journey actions wait in ``state.unrecorded`` until an activity stores them. A send
        # carries them for free; only when none is due soon does ``record_analytics`` run on its own.
        self._analytics = False  # decided in run(): histories from before analytics replay without it
        self._late_fallback = False  # decided in run(), likewise (LATE_FAILURE_PATCH)
        self._record_within = timedelta(seconds=input.record_within_seconds)
        self._carried: dict[str, set[int]] = {}  # in flight, by the send or flush carrying them: their seqs
        self._unrecorded_since: datetime | None = None
        self._flushing: asyncio.Task[None] | None = None  # held so the running flush is not collected
        # Pacing: each paced channel's sends go to its own rate-limited task queue (omnicart/pacing.py);
        # the latest event says which, so a change of settings reaches running customers.
        self._send_queues: dict[str, str] = dict(input.send_queues)
        # Identity (docs/IDENTITY.md): an anonymous visitor's workflow is told its link, hands its state
        # over and ends; the known customer's workflow merges what it is handed.
        self._link: Link | None = None
        self._merges: list[HandOver] = []
        # Journeys paused with "runs under way exit" (omnicart/journey_exit.py): their runs end.
        self._exits: list[JourneyExit] = []
        self._input = input

    @workflow.signal(name=EVENT_SIGNAL)
    def event(self, batch: list[IncomingEvent]) -> None:
        """Events for this customer, in the order the ingest side received them."""
        self._inbox.extend(batch)

    @workflow.signal(name=LINK_SIGNAL)
    def link(self, link: Link) -> None:
        """This anonymous visitor became a known customer: hand everything over, then end."""
        if self._state.is_anonymous:
            self._link = self._link or link  # the first link wins (docs/IDENTITY.md)

    @workflow.signal(name=MERGE_SIGNAL)
    def merge_in(self, hand_over: HandOver) -> None:
        """An anonymous visitor's state, to join this customer's (once: a repeat changes nothing)."""
        self._merges.append(hand_over)

    @workflow.signal(name=EXIT_JOURNEY_SIGNAL)
    def exit_journey(self, request: JourneyExit) -> None:
        """A journey was paused with "runs under way exit": end this customer's runs of it."""
        self._exits.append(request)

    @workflow.signal(name=FORGET_SIGNAL)
    def forget(self) -> None:
        """Erase this customer (``omnicart forget``): drop everything held, cancel sends, end the run."""
        self._forgotten = True
        self._inbox.clear()
        self._state = interpreter.new_state(self._state.customer_id)
        for task in self._in_flight.values():
            task.cancel()

    @workflow.query
    def journal(self) -> list[dict[str, object]]:
        """What this customer's journeys did, most recent last (as ``omnicart simulate`` prints it)."""
        return [action.as_json() for action in self._state.journal]

    @workflow.query
    def state(self) -> CustomerState:
        """The whole picture: profile, consent, carts, runs under way."""
        return self._state

    @workflow.query(name=QUARANTINE_QUERY)
    def quarantine(self) -> list[dict[str, Any]]:
        """What the interpreter failed on and set aside: ids, types and errors, no event contents."""
        return [entry.summary() for entry in self._state.quarantine]

    @workflow.update(name=REPLAY_QUARANTINE_UPDATE)
    async def replay_quarantine(self) -> list[dict[str, Any]]:
        """Try the quarantined events again (after a fix); answers what is still quarantined."""
        for entry in self._state.quarantine:
            if entry.journey_refs:
                bundles, missing = await self._journeys_for(list(entry.journey_refs))
                if not missing:
                    entry.journeys, entry.journey_refs = bundles, []
        self._carry_out(
            interpreter.replay_quarantined(self._state, workflow.now(), late_fallback=self._late_fallback)
        )
        return self.quarantine()

    @workflow.run
    async def run(self, input: CustomerWorkflowInput) -> None:
        state = self._state
        self._analytics = input.record_analytics and workflow.patched(ANALYTICS_PATCH)
        self._late_fallback = workflow.patched(LATE_FAILURE_PATCH)
        if state.unrecorded:
            self._unrecorded_since = workflow.now()
        # Sends still in flight when the previous run continued-as-new: the same message ids go out
        # again, and the ledger turns any that had already reached the customer into already_sent.
        self._start_sends(interpreter.sends_in_flight(state))
        while True:
            await self._until_something_to_do(input)
            if self._forgotten:
                return
            self._take_exits()  # before due timers: a paused journey's reminder due now must not go out
            await self._learn_catalog(interpreter.catalog_wanted(state, workflow.now()))
            self._carry_out(interpreter.handle_timers(state, workflow.now(), safe=True))
            self._take_merges()
            while self._inbox:
                incoming = self._inbox.pop(0)
                self._send_queues = dict(incoming.send_queues)
                journeys = await self._resolve(incoming)
                if journeys is None:
                    continue  # quarantined: a version the registry does not have
                event = self._as_handled_then(incoming.event)
                await self._learn_catalog(interpreter.catalog_wanted(state, workflow.now(), event, journeys))
                self._carry_out(
                    interpreter.handle_event(
                        state, event, journeys, workflow.now(), safe=True, late_fallback=self._late_fallback
                    )
                )
            self._take_exits(done=True)  # and runs the events before the signal just started
            self._record_quarantine()
            self._record_analytics()
            if self._link is not None and workflow.patched(IDENTITY_PATCH):
                await self._hand_over(self._link)
                return
            if self._should_continue_as_new(input):
                self._fit_state(state)
                workflow.continue_as_new(
                    CustomerWorkflowInput(
                        customer_id=state.customer_id,
                        state=state,
                        pending=self._inbox,
                        max_history_events=input.max_history_events,
                        send_timeout_seconds=input.send_timeout_seconds,
                        send_queues=self._send_queues,
                        registered_versions=sorted(self._registered & set(state.bundles)),
                    )
                )

    async def _learn_catalog(self, skus: list[str]) -> None:
        """Ask the catalog for the stock a condition is about to read (a low-stock branch), and
        give the answer to the interpreter as an input. Nothing to ask for most runs."""
        if not skus or not workflow.patched(CATALOG_PATCH):
            return
        view = await workflow.execute_local_activity(
            CATALOG_FOR_CONDITIONS_ACTIVITY, skus, result_type=dict[str, dict[str, Any]],
            start_to_close_timeout=timedelta(seconds=30),
        )
        interpreter.learn_catalog(self._state, view)

    async def _until_something_to_do(self, input: CustomerWorkflowInput) -> None:
        """Sleep until an event arrives, the earliest deadline passes, or it is time to continue-as-new."""
        if (self._inbox or self._forgotten or self._merges or self._exits or self._link
                or self._should_continue_as_new(input)):
            return
        deadline = interpreter.next_wakeup(self._state)
        timeout = None if deadline is None else (deadline - workflow.now()).total_seconds()
        if timeout is not None and timeout <= 0:
            return
        with contextlib.suppress(TimeoutError):
            await workflow.wait_condition(
                lambda: bool(self._inbox)
                or self._forgotten
                or bool(self._merges)
                or bool(self._exits)
                or self._link is not None
                or interpreter.next_wakeup(self._state) != deadline
                or self._should_continue_as_new(input)
                or self._unrecorded()
                or self._analytics_due(),
                timeout=timeout,
            )

    def _should_continue_as_new(self, input: CustomerWorkflowInput) -> bool:
        """Start a fresh history once it grows large, or once something was quarantined.

        Sends in flight do not hold it back: the next run starts them again by message id.
        """
        if not workflow.all_handlers_finished() or self._recording is not None or self._unrecorded():
            return False
        if self._merges or self._link is not None:
            return False  # a hand-over first: it ends this workflow, or joins this customer's state
        if RECORD_ANALYTICS_ACTIVITY in self._carried:
            return False  # let the flush finish: starting it again in the next run would cost another
        if self._state.quarantined_total > self._quarantined_before:
            return True
        info = workflow.info()
        return info.is_continue_as_new_suggested() or info.get_current_history_length() >= input.max_history_events

    def _take_merges(self) -> None:
        """Merge what anonymous visitors handed over, then handle the events they had not handled yet."""
        while self._merges:
            hand_over = self._merges.pop(0)
            if workflow.patched(IDENTITY_PATCH):
                self._carry_out(merge.merge(self._state, hand_over.anonymous, workflow.now(), safe=True))
            self._inbox.extend(  # the visitor's events, now this customer's
                incoming.model_copy(update={"event": incoming.event.model_copy(
                    update={"customer_id": self._state.customer_id})})
                for incoming in hand_over.pending
            )

    def _take_exits(self, *, done: bool = False) -> None:
        """End the runs of journeys paused with "runs under way exit": before due timers (a reminder
        due now must not go out), and again after the inbox (``done``), whose events were signalled
        before the pause's signal and may start a run of it. A repeat ends nothing more."""
        for request in self._exits:
            if workflow.patched(PAUSE_EXIT_PATCH):
                self._carry_out(interpreter.exit_journey(
                    self._state, request.journey, request.reason, request.paused_at, workflow.now()))
        if done:
            self._exits.clear()

    async def _hand_over(self, link: Link) -> None:
        """Give this anonymous visitor's state to the known customer; events that arrive meanwhile
        follow in a second hand-over (whose state the merge recognises and skips)."""
        while True:
            pending, self._inbox = self._inbox, []
            await workflow.execute_activity(
                HAND_OVER_ACTIVITY,
                HandOver(customer_id=link.customer_id, anonymous=self._state, pending=pending,
                         max_history_events=self._input.max_history_events,
                         send_timeout_seconds=self._input.send_timeout_seconds,
                         record_analytics=self._input.record_analytics),
                start_to_close_timeout=timedelta(seconds=30),
            )
            if not self._inbox:
                return

    async def _resolve(self, incoming: IncomingEvent) -> list[JourneyBundle] | None:
        """The journeys an event may trigger; a version the registry lacks quarantines the event
        (with the versions, so a replay fetches them once they are there)."""
        bundles, missing = await self._journeys_for(incoming.journeys)
        if not missing:
            return bundles
        error = LookupError(f"journey versions not in the registry: {', '.join(missing)}")
        refs = [ref if isinstance(ref, str) else ref.version for ref in incoming.journeys]
        self._carry_out(
            interpreter.quarantine_event(self._state, incoming.event, workflow.now(), error, journey_refs=refs)
        )
        return None

    async def _journeys_for(self, refs: list[JourneyRef]) -> tuple[list[JourneyBundle], list[str]]:
        """Bundles for these references, fetching versions this run has not seen from the registry.

        Older histories (and tests without a registry) carry whole bundles, used as they are.
        """
        wanted = [ref for ref in refs if isinstance(ref, str) and ref not in self._journeys]
        missing: list[str] = []
        if wanted:
            loaded = await workflow.execute_local_activity(
                LOAD_JOURNEYS_ACTIVITY, wanted, result_type=LoadedJourneys,
                start_to_close_timeout=timedelta(seconds=30),
            )
            for bundle in loaded.bundles:
                self._journeys[bundle.version] = bundle
                self._registered.add(bundle.version)
            missing = loaded.missing
        bundles = []
        for ref in refs:
            if not isinstance(ref, str):
                self._journeys.setdefault(ref.version, ref)
                bundles.append(ref)
            elif ref in self._journeys:
                bundles.append(self._journeys[ref])
        return bundles, missing

    def _unrecorded(self) -> bool:
        return self._recording is None and self._state.quarantined_total > self._recorded_total

    def _record_quarantine(self) -> None:
        """Put new quarantine entries on the operators' list (``omnicart quarantine list``)."""
        if not self._unrecorded():
            return
        entries = [entry.summary() for entry in self._state.quarantine if entry.seq > self._recorded_total]
        total = self._state.quarantined_total
        self._recording = asyncio.create_task(self._report(QuarantineReport(workflow_id=workflow.info().workflow_id,
                                                                            entries=entries), total))

    async def _report(self, report: QuarantineReport, total: int) -> None:
        try:
            await workflow.execute_activity(
                RECORD_QUARANTINE_ACTIVITY, report, start_to_close_timeout=timedelta(seconds=30), result_type=int
            )
            self._recorded_total = total
        finally:
            self._recording = None

    def _waiting_rows(self) -> list[Action]:
        """Journey actions not stored yet and not on their way in a send or a flush."""
        carried = set().union(*self._carried.values()) if self._carried else set()
        return [action for action in self._state.unrecorded if action.seq not in carried]

    def _analytics_due(self) -> bool:
        """Whether waiting rows must be stored on their own now: nothing will wake this customer (and
        so carry them) within ``record_within``, or they have waited that long already."""
        if RECORD_ANALYTICS_ACTIVITY in self._carried or not self._waiting_rows():
            return False
        wake = interpreter.next_wakeup(self._state)
        since = self._unrecorded_since or workflow.now()
        return wake is None or wake > since + self._record_within or workflow.now() >= since + self._record_within

    def _record_analytics(self) -> None:
        if self._analytics_due():
            waiting = self._waiting_rows()
            self._carry_rows(RECORD_ANALYTICS_ACTIVITY, waiting)
            self._flushing = asyncio.create_task(self._store_rows(waiting))

    async def _store_rows(self, actions: list[Action]) -> None:
        batch = [JourneyActionRow.from_action(action) for action in actions]
        try:
            await workflow.execute_activity(
                RECORD_ANALYTICS_ACTIVITY, batch, start_to_close_timeout=timedelta(seconds=30), result_type=int
            )
            self._rows_stored(RECORD_ANALYTICS_ACTIVITY)
        finally:
            self._carried.pop(RECORD_ANALYTICS_ACTIVITY, None)

    def _carry_rows(self, carrier: str, actions: list[Action]) -> None:
        self._carried[carrier] = {action.seq for action in actions}

    def _rows_stored(self, carrier: str) -> None:
        stored = self._carried.pop(carrier, set())
        self._state.unrecorded = [action for action in self._state.unrecorded if action.seq not in stored]
        if not self._waiting_rows():
            self._unrecorded_since = None

    def _fit_state(self, state: CustomerState) -> None:
        """Shed the oldest history-like parts of the state until it fits one payload comfortably."""
        converter = workflow.payload_converter()
        while len(converter.to_payloads([state])[0].data) > STATE_BYTES_BUDGET and state.shed():
            pass

    @staticmethod
    def _as_handled_then(event: Event) -> Event:
        """A topic's consent change, as this history handled it: a worker from before topics read
        only its ``channel`` (``TOPIC_CONSENT_PATCH``), so its replay must too."""
        if event.type != "consent_changed" or "topic" not in event.properties:
            return event
        if workflow.patched(TOPIC_CONSENT_PATCH):
            return event
        properties = {name: value for name, value in event.properties.items() if name != "topic"}
        return event.model_copy(update={"properties": properties})

    def _carry_out(self, out: interpreter.Output) -> None:
        if self._analytics:
            recorded = [action for action in (*out.actions, *out.reached) if rows.records(action)]
            if recorded:
                self._state.unrecorded.extend(sorted(recorded, key=lambda action: action.seq))
                self._unrecorded_since = self._unrecorded_since or workflow.now()
        for message_id in out.cancel:
            task = self._in_flight.pop(message_id, None)
            if task is not None:
                task.cancel()
        self._start_sends(out.sends)

    def _start_sends(self, commands: list[interpreter.SendCommand]) -> None:
        for command in commands:
            by_reference = command.version in self._registered
            request = interpreter.send_request(self._state, command, by_reference=by_reference)
            waiting = self._waiting_rows() if self._analytics else []
            if waiting:  # the journey's actions so far ride along: stored by the send, at no extra cost
                self._carry_rows(request.message_id, waiting)
                request = request.model_copy(
                    update={"analytics": [JourneyActionRow.from_action(action) for action in waiting]}
                )
            self._in_flight[request.message_id] = asyncio.create_task(self._send(request))

    def _send_queue(self, channel: str) -> str | None:
        """The paced task queue of this channel's sends, or None for the workflow's own queue."""
        queue = self._send_queues.get(channel)
        return queue if queue is not None and workflow.patched(PACING_PATCH) else None

    async def _send(self, request: SendRequest) -> None:
        try:
            result = await workflow.execute_activity(
                "send_message",
                request,
                task_queue=self._send_queue(request.channel),
                result_type=SendResult,
                start_to_close_timeout=self._send_timeout,
                heartbeat_timeout=SEND_HEARTBEAT_TIMEOUT,
                retry_policy=SEND_RETRY_POLICY,
            )
            if request.message_id in self._carried:
                self._rows_stored(request.message_id)  # the activity stored them before anything else
        except asyncio.CancelledError:
            return  # the run exited (an order, an emptied cart): this message must not go out
        except ActivityError as error:
            if isinstance(error.cause, CancelledError):
                return  # cancelled by an exit, as above, reported through the activity's handle
            # The cause's message may quote the recipient: log its type only (it stays in history, encrypted).
            cause = type(error.cause).__name__ if error.cause is not None else "unknown"
            workflow.logger.warning("send %s failed for good (%s)", request.message_id, cause)
            result = SendResult(
                message_id=request.message_id, channel=request.channel, outcome="failed",
                provider="unknown", error=str(error.cause),
            )
        finally:
            self._in_flight.pop(request.message_id, None)
            # Rows it carried but did not report stored wait for the next carrier.
            self._carried.pop(request.message_id, None)
        self._carry_out(interpreter.handle_send_result(self._state, result, workflow.now(), safe=True))
