"""The ``record_quarantine`` activity: what a customer's workflow set aside, onto the operators' list."""

from __future__ import annotations

import asyncio

from temporalio import activity

from omnicart.quarantine import QuarantineLog
from omnicart.signals import RECORD_QUARANTINE_ACTIVITY, QuarantineReport


class QuarantineActivities:
    def __init__(self, log: QuarantineLog) -> None:
        self.log = log

    @activity.defn(name=RECORD_QUARANTINE_ACTIVITY)
    async def record_quarantine(self, report: QuarantineReport) -> int:
        """Idempotent: entries are keyed by (workflow, seq), so a retry records nothing twice.

        It logs a warning and counts ``omnicart_quarantined_inputs``: each is a bug or bad data that an
        operator should look at (``omnicart quarantine list``).
        """
        recorded = await asyncio.to_thread(self.log.record, report)
        if recorded:
            # Error types only: an exception's message may quote the data it failed on.
            kinds = ", ".join(sorted({str(entry["error"]).split(":")[0] for entry in report.entries}))
            activity.logger.warning("%d input(s) quarantined (%s): see omnicart quarantine list", recorded, kinds)
            activity.metric_meter().create_counter(
                "omnicart_quarantined_inputs", "Inputs a customer's workflow could not handle", "inputs"
            ).add(recorded)
        return recorded
