"""``CatalogFanoutWorkflow``: tell every customer interested in a sku about one restock or price drop.

One type serves both kinds (``omnicart.fanout``). A price drop is one pass over the interested
customers, a page per activity. A restock is paced by stock, so 40 units do not produce 100,000
disappointed customers: each wave reads the sku's units in stock now (an activity), tells at most
``customers_per_unit`` customers per unit, then sleeps ``wave_interval_seconds`` and reads again; it
stops when the stock is gone or every interested customer was told. The workflow holds only a cursor
and counters, and continues as new past ``max_history_events`` (or Temporal's suggestion), so a
fan-out to a million customers runs in bounded history.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

from omnicart.fanout import (
    DELIVER_ACTIVITY,
    FANOUT_WORKFLOW,
    STOCK_ACTIVITY,
    FanoutInput,
    FanoutPage,
    FanoutPageResult,
    FanoutResult,
)

ACTIVITY_TIMEOUT = timedelta(minutes=10)
HEARTBEAT_TIMEOUT = timedelta(minutes=1)
RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=1))


@workflow.defn(name=FANOUT_WORKFLOW)
class CatalogFanoutWorkflow:
    @workflow.run
    async def run(self, input: FanoutInput) -> FanoutResult:
        state = input.model_copy()
        paced = state.change.kind == "restock"
        while True:
            if paced and state.wave_left is None:
                units = await workflow.execute_activity(
                    STOCK_ACTIVITY, state.change.sku, result_type=int,
                    start_to_close_timeout=timedelta(minutes=1), retry_policy=RETRY,
                )
                if units <= 0:
                    return _result(state, "out_of_stock")
                state.wave_left = units * max(state.customers_per_unit, 1)
                state.waves += 1
            limit = state.page_size if state.wave_left is None else min(state.page_size, state.wave_left)
            page = await workflow.execute_activity(
                DELIVER_ACTIVITY,
                FanoutPage(change=state.change, cursor=state.cursor, limit=limit, at=workflow.now()),
                result_type=FanoutPageResult,
                start_to_close_timeout=ACTIVITY_TIMEOUT,
                heartbeat_timeout=HEARTBEAT_TIMEOUT,
                retry_policy=RETRY,
            )
            state.told += page.told
            state.delivered += page.delivered
            state.cursor = page.next_cursor
            if state.cursor is None:
                return _result(state, "everyone_told")
            if state.wave_left is not None:
                state.wave_left -= page.told
                if state.wave_left <= 0:
                    await workflow.sleep(timedelta(seconds=state.wave_interval_seconds))
                    state.wave_left = None
            info = workflow.info()
            if info.is_continue_as_new_suggested() or info.get_current_history_length() > state.max_history_events:
                workflow.continue_as_new(state.model_copy(update={"continued": state.continued + 1}))


def _result(state: FanoutInput, stopped: str) -> FanoutResult:
    return FanoutResult.model_validate({"told": state.told, "delivered": state.delivered, "waves": state.waves,
                                        "continued": state.continued, "stopped": stopped})
