"""The customer workflow: one durable entity per customer, running all of that customer's journeys.

It owns no journey logic. It feeds the interpreter what happens (signalled events, fired timers,
send outcomes) and carries out what the interpreter asks (send activities, cancellations). One timer
is armed at a time, for the earliest deadline of any run, so a three-step journey costs the same
history as a hand-written workflow that sleeps and sends three times.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from omnicart.engine import interpreter
    from omnicart.engine.state import CustomerState
    from omnicart.messages import SEND_RETRY_POLICY, SendRequest, SendResult
    from omnicart.routing import CUSTOMER_WORKFLOW, EVENT_SIGNAL, FORGET_SIGNAL, CustomerWorkflowInput, IncomingEvent
    from omnicart.security.redact import redact

@workflow.defn(name=CUSTOMER_WORKFLOW)
class CustomerWorkflow:
    @workflow.init
    def __init__(self, input: CustomerWorkflowInput) -> None:
        self._state: CustomerState = input.state or interpreter.new_state(input.customer_id)
        self._inbox: list[IncomingEvent] = list(input.pending)
        self._in_flight: dict[str, asyncio.Task[None]] = {}
        self._send_timeout = timedelta(seconds=input.send_timeout_seconds)
        self._forgotten = False

    @workflow.signal(name=EVENT_SIGNAL)
    def event(self, batch: list[IncomingEvent]) -> None:
        """Events for this customer, in the order the ingest side received them."""
        self._inbox.extend(batch)

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

    @workflow.run
    async def run(self, input: CustomerWorkflowInput) -> None:
        state = self._state
        while True:
            await self._until_something_to_do(input)
            if self._forgotten:
                return
            self._carry_out(interpreter.handle_timers(state, workflow.now()))
            while self._inbox:
                incoming = self._inbox.pop(0)
                journeys = incoming.journeys
                self._carry_out(interpreter.handle_event(state, incoming.event, journeys, workflow.now()))
            if self._should_continue_as_new(input):
                workflow.continue_as_new(
                    CustomerWorkflowInput(
                        customer_id=state.customer_id,
                        state=state,
                        pending=self._inbox,
                        max_history_events=input.max_history_events,
                        send_timeout_seconds=input.send_timeout_seconds,
                    )
                )

    async def _until_something_to_do(self, input: CustomerWorkflowInput) -> None:
        """Sleep until an event arrives, the earliest deadline passes, or it is time to continue-as-new."""
        if self._inbox or self._forgotten:
            return
        deadline = interpreter.next_wakeup(self._state)
        timeout = None if deadline is None else (deadline - workflow.now()).total_seconds()
        if timeout is not None and timeout <= 0:
            return
        with contextlib.suppress(TimeoutError):
            await workflow.wait_condition(
                lambda: bool(self._inbox)
                or self._forgotten
                or interpreter.next_wakeup(self._state) != deadline
                or self._should_continue_as_new(input),
                timeout=timeout,
            )

    def _should_continue_as_new(self, input: CustomerWorkflowInput) -> bool:
        """Start a fresh history once it grows large, but never with a send's outcome still owed."""
        if self._in_flight or not workflow.all_handlers_finished():
            return False
        info = workflow.info()
        return info.is_continue_as_new_suggested() or info.get_current_history_length() >= input.max_history_events

    def _carry_out(self, out: interpreter.Output) -> None:
        for message_id in out.cancel:
            task = self._in_flight.pop(message_id, None)
            if task is not None:
                task.cancel()
        for command in out.sends:
            request = interpreter.send_request(self._state, command)
            self._in_flight[request.message_id] = asyncio.create_task(self._send(request))

    async def _send(self, request: SendRequest) -> None:
        try:
            result = await workflow.execute_activity(
                "send_message",
                request,
                result_type=SendResult,
                start_to_close_timeout=self._send_timeout,
                retry_policy=SEND_RETRY_POLICY,
            )
        except asyncio.CancelledError:
            return  # the run exited (an order, an emptied cart): this message must not go out
        except ActivityError as error:
            workflow.logger.warning("send %s failed for good: %s", request.message_id, redact(error.cause))
            result = SendResult(
                message_id=request.message_id, channel=request.channel, outcome="failed",
                provider="unknown", error=str(error.cause),
            )
        finally:
            self._in_flight.pop(request.message_id, None)
        self._carry_out(interpreter.handle_send_result(self._state, result, workflow.now()))
