"""``DateTriggersWorkflow``: one run of the date-triggers schedule (``omnicart.date_schedule``).

It fixes its window from its own start time (``workflow.now()``, recorded in history: a replay
sees the same window), asks an activity which indexed queries the window needs, and works through
them a page at a time, each page an activity that delivers the ``date_reached`` events it finds.
Its history grows by two events per page; past Temporal's suggestion it continues as new where it
stopped, so a window with a million due customers still runs in bounded history.

Since ``CATCH_UP_PATCH`` the window reaches back to where the last finished run stopped, when that is
further than the lookback (hours an outage skipped), and a finished run records its end. Runs
started before the patch replay without those two activities.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

from omnicart.date_schedule import (
    CATCH_UP_PATCH,
    COVERED_UNTIL_ACTIVITY,
    DATE_TRIGGERS_WORKFLOW,
    RECORD_COVERED_ACTIVITY,
    DateQuery,
    DateTriggersInput,
    DateTriggersResult,
    DateWindow,
    DeliveredPage,
    DuePage,
)

ACTIVITY_TIMEOUT = timedelta(minutes=5)
HEARTBEAT_TIMEOUT = timedelta(minutes=1)
RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=1))


@workflow.defn(name=DATE_TRIGGERS_WORKFLOW)
class DateTriggersWorkflow:
    @workflow.run
    async def run(self, input: DateTriggersInput) -> DateTriggersResult:
        window = input.window
        if window is None:
            window = await self._window(input)
        queries = input.queries
        if queries is None:
            queries = await workflow.execute_activity(
                "plan_date_queries", window, result_type=list[DateQuery],
                start_to_close_timeout=ACTIVITY_TIMEOUT, retry_policy=RETRY,
            )
        due, delivered, cursor = input.due, input.delivered, input.cursor
        for index in range(input.next_query, len(queries)):
            while True:
                page = await workflow.execute_activity(
                    "deliver_due_dates",
                    DuePage(query=queries[index], window=window, cursor=cursor, page_size=input.page_size),
                    result_type=DeliveredPage,
                    start_to_close_timeout=ACTIVITY_TIMEOUT,
                    heartbeat_timeout=HEARTBEAT_TIMEOUT,
                    retry_policy=RETRY,
                )
                due, delivered, cursor = due + page.due, delivered + page.delivered, page.next_cursor
                if cursor is None:
                    break
                if workflow.info().is_continue_as_new_suggested():
                    workflow.continue_as_new(input.model_copy(update={
                        "window": window, "queries": queries, "next_query": index, "cursor": cursor,
                        "due": due, "delivered": delivered}))
        if workflow.patched(CATCH_UP_PATCH):
            await workflow.execute_activity(RECORD_COVERED_ACTIVITY, window,
                                            start_to_close_timeout=ACTIVITY_TIMEOUT, retry_policy=RETRY)
        return DateTriggersResult(window=window, queries=len(queries), due=due, delivered=delivered)

    async def _window(self, input: DateTriggersInput) -> DateWindow:
        """From the lookback, or further back to the last finished run's end (bounded): see the module."""
        end = workflow.now()
        start = end - timedelta(seconds=input.lookback_seconds)
        if workflow.patched(CATCH_UP_PATCH):
            covered = await workflow.execute_activity(
                COVERED_UNTIL_ACTIVITY, result_type=datetime | None,  # type: ignore[arg-type]
                start_to_close_timeout=ACTIVITY_TIMEOUT, retry_policy=RETRY)
            if covered is not None:
                start = max(min(start, covered), end - timedelta(seconds=input.max_catch_up_seconds))
        return DateWindow(start=start, end=end)
