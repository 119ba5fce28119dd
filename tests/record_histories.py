"""Record the workflow histories the replay test guards (run when a workflow change is intended).

    .venv/bin/python -m tests.record_histories

A changed workflow that running journeys replay must go through ``workflow.patched`` (or a new
workflow type); the replay test proves it does by replaying these saved histories. Re-record only
for a deliberate, compatible change, and keep the old files next to the new ones.
"""

from __future__ import annotations

import asyncio
import sys
from datetime import timedelta
from pathlib import Path

from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from omnicart.routing import customer_workflow_id
from tests.support.bundles import browse, flagship
from tests.support.runtime import RecordingChannel, customer_worker, send_event
from tests.support.timelines import DAY, aligned_start, browse_timelines, flagship_timelines

HISTORIES = Path(__file__).resolve().parent / "histories"
RECORDED = {
    "abandoned_cart": ["all_reminders_then_late_order", "sms_stop_before_second_touch",
                       "store_purchase_while_waiting", "sms_held_for_quiet_hours_in_tokyo"],
    "browse_abandonment": ["push_nudge_when_the_app_can_reach_them", "added_to_cart_in_time"],
}


async def main() -> None:
    binary = Path(sys.executable).parent / "temporal-test-server"
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(binary), data_converter=pydantic_data_converter
    )
    bundles = {"abandoned_cart": flagship(), "browse_abandonment": browse()}
    timelines = {"abandoned_cart": flagship_timelines(), "browse_abandonment": browse_timelines()}
    try:
        channel = RecordingChannel()
        async with customer_worker(env.client, [channel.send_message]) as task_queue:
            for journey, names in RECORDED.items():
                for timeline in (t for t in timelines[journey] if t.name in names):
                    start = aligned_start(await env.get_current_time())
                    customer_id = f"cus_{timeline.name}"
                    for event in timeline.events(start, customer_id):
                        wait = event.timestamp - await env.get_current_time()
                        if wait > timedelta(0):
                            await env.sleep(wait)
                        await send_event(env.client, task_queue, event, [bundles[journey]])
                    await env.sleep(start + 8 * DAY - await env.get_current_time())
                    handle = env.client.get_workflow_handle(customer_workflow_id(customer_id))
                    history = await handle.fetch_history()
                    path = HISTORIES / f"{journey}-{timeline.name}.json"
                    path.write_text(history.to_json())
                    print(f"recorded {path.name}: {len(history.events)} events")
    finally:
        await env.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
