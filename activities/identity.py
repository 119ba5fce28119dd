"""The ``hand_over`` activity: an anonymous visitor's state, to the known customer's workflow.

Workflow code cannot signal-with-start another workflow, and the known customer's workflow may not
exist yet (a first login), so the anonymous visitor's workflow asks this activity to do it. A
retried attempt signals again; the known customer's merge ignores a repeat (``engine.merge``).
"""

from __future__ import annotations

from temporalio import activity
from temporalio.client import Client

from omnicart.routing import hand_over
from omnicart.signals import HAND_OVER_ACTIVITY, HandOver


class IdentityActivities:
    def __init__(self, client: Client) -> None:
        self.client = client

    @activity.defn(name=HAND_OVER_ACTIVITY)
    async def hand_over(self, state: HandOver) -> None:
        """Signal-with-start on the task queue the anonymous visitor's workflow runs on."""
        await hand_over(self.client, activity.info().task_queue, state)
