"""Pause with "runs under way exit": tell every running customer workflow to end its runs of a journey.

A plain pause only stops new entries (``JourneyRegistry.pause``). When a marketer also wants the
customers already in the journey out of it (a wrong price in the reminder, a promotion withdrawn),
each customer's workflow must hear of it: the workflow holds the runs, and nothing else may change
them. The workflows are found through Temporal's visibility (every running ``CustomerWorkflow`` of
the product's task queue: a customer's runs are in its state, not in a search attribute, so the
list is a superset and a customer without a run of that journey only notes the signal) and told
with the ``exit_journey`` signal, paced so that a large customer base does not flood the cluster.

Telling is idempotent: the signal names the moment of the pause, and a workflow ends only the runs
whose trigger happened by then, so sending it twice (a retry, a second click) or late never ends a
run that began after a resume, while a run the workflow enters late from an earlier checkout (a
backlog) still ends.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from omnicart.signals import CUSTOMER_WORKFLOW, EXIT_JOURNEY_SIGNAL, JourneyExit

logger = logging.getLogger(__name__)

PAUSED_REASON = "journey_paused"
"""The exit reason the journal, the customer page and the analytics report show."""
IN_FLIGHT = 32
"""Signals awaiting the server's answer at once: a round trip each would otherwise cap the rate."""


def running_customers(task_queue: str) -> str:
    """The visibility query for every running customer workflow of the product's task queue."""
    return f"WorkflowType = '{CUSTOMER_WORKFLOW}' AND ExecutionStatus = 'Running' AND TaskQueue = '{task_queue}'"


async def exit_runs(
    client: Client, task_queue: str, journey: str, paused_at: datetime, *, per_second: float,
    concurrency: int = IN_FLIGHT,
) -> int:
    """Signal every running customer workflow to end its runs of ``journey`` triggered by ``paused_at``,
    at most ``per_second`` signals a second and ``concurrency`` at a time; how many workflows were told."""
    request = JourneyExit(journey=journey, reason=PAUSED_REASON, paused_at=paused_at)
    loop = asyncio.get_running_loop()
    interval = 1.0 / per_second
    next_at = loop.time()
    slots = asyncio.Semaphore(concurrency)
    telling: set[asyncio.Task[bool]] = set()

    async def tell(workflow_id: str) -> bool:
        try:
            # The workflow id, not the listed run: one that continued as new since gets it in its new run.
            await client.get_workflow_handle(workflow_id).signal(EXIT_JOURNEY_SIGNAL, request)
        except RPCError as error:
            if error.status != RPCStatusCode.NOT_FOUND:
                raise
            return False  # it ended since it was listed: it has no run left to end
        finally:
            slots.release()
        return True

    try:
        async for execution in client.list_workflows(running_customers(task_queue)):
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            next_at = max(next_at, loop.time()) + interval
            await slots.acquire()
            telling.add(asyncio.create_task(tell(execution.id)))
        told = sum(await asyncio.gather(*telling))
    finally:
        for task in telling:
            task.cancel()
    logger.info("told %d customer workflows to end their runs of %s", told, journey)
    return told
