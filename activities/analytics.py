"""The ``record_analytics`` activity: a customer's journey actions, into the analytics store.

The workflow turns the interpreter's actions into rows without I/O and hands them here (or, when a
send is due anyway, to the send activity in ``SendRequest.analytics``). Rows carry ids derived from
what they record, so a retried or replayed call stores nothing twice.
"""

from __future__ import annotations

import asyncio

from pydantic import SecretStr
from sqlalchemy import Engine
from temporalio import activity

from omnicart.analytics.rows import JourneyActionRow
from omnicart.analytics.store import record_actions
from omnicart.signals import RECORD_ANALYTICS_ACTIVITY


class AnalyticsActivities:
    def __init__(self, engine: Engine, secret: SecretStr) -> None:
        """``secret`` keys the pseudonyms of customer ids that are emails or phone numbers."""
        self.engine = engine
        self.secret = secret

    @activity.defn(name=RECORD_ANALYTICS_ACTIVITY)
    async def record_analytics(self, rows: list[JourneyActionRow]) -> int:
        """Store the rows (idempotent); how many were new."""
        return await asyncio.to_thread(record_actions, self.engine, rows, self.secret)
