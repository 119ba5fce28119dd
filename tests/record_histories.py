"""Record the workflow histories the replay test guards (run when a workflow change is intended).

    .venv/bin/python -m tests.record_histories [--edge-cases-only | --analytics-only | --topics-only |
                                                --pacing-only | --late-fallback-only | --stock-only |
                                                --identity-only | --outlines-only | --pause-exit-only |
                                                --date-triggers-only NAME]

A changed workflow that running journeys replay must go through ``workflow.patched`` (or a new
workflow type); the replay test proves it does by replaying these saved histories. Re-record only
for a deliberate, compatible change, and keep the old files next to the new ones.

Besides ordinary journeys, the histories cover what is easy to break: a permanent failure that
falls back to another channel, an exit that cancels a send in flight, a poison event quarantined,
and continue-as-new while a send is in flight; and the win-back journey's split, holdout and
analytics recording (rows riding on sends, and the ``record_analytics`` batch of a conversion); a
customer opting out of a journey's topic half-way (``TOPIC_CONSENT_PATCH``); the flagship with
paced channels, whose sends go to their own task queues (``PACING_PATCH``); an SMS bounced after
acceptance falling back to email (``LATE_FAILURE_PATCH``); the flagship's low-stock branch, which
asks the catalog first (``CATALOG_PATCH``); an anonymous visitor's checkout handed over to the
customer they log in as, and merged there (``IDENTITY_PATCH``); the flagship paused with "runs
under way exit" after its first reminder (``PAUSE_EXIT_PATCH``); and a run of the date-triggers
schedule's workflow that delivers a birthday over two pages.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from datetime import timedelta
from pathlib import Path

from sqlalchemy import Engine
from temporalio import activity
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from omnicart.catalog import apply_catalog_events
from omnicart.events import Event
from omnicart.journey.model import JourneyBundle
from omnicart.journey.registry import JourneyRegistry
from omnicart.messages import SendRequest, SendResult
from omnicart.pacing import send_queue
from omnicart.quarantine import QuarantineLog
from omnicart.routing import customer_workflow_id, signal_customer
from omnicart.signals import IncomingEvent
from omnicart.storage import get_engine, upgrade
from tests.support.bundles import browse, flagship
from tests.support.runtime import RecordingChannel, customer_worker, send_event
from tests.support.timelines import DAY, HOUR, aligned_start, browse_timelines, cart, flagship_timelines, order, profile

HISTORIES = Path(__file__).resolve().parent / "histories"
RECORDED = {
    "abandoned_cart": ["all_reminders_then_late_order", "sms_stop_before_second_touch",
                       "store_purchase_while_waiting", "sms_held_for_quiet_hours_in_tokyo"],
    "browse_abandonment": ["push_nudge_when_the_app_can_reach_them", "added_to_cart_in_time"],
}


class ScriptedChannel(RecordingChannel):
    """Accepts sends, except SMS (failed for good: the step falls back) and, while ``held`` is set,
    the email reminders (held in flight until released)."""

    def __init__(self) -> None:
        super().__init__()
        self.held = False
        self.release = asyncio.Event()

    @activity.defn(name="send_message")
    async def send_message(self, request: SendRequest) -> SendResult:
        self.requests.append(request)
        if request.channel == "sms":
            return SendResult(message_id=request.message_id, channel="sms", outcome="failed",
                              provider="recording", error="21614: not a mobile number", invalid_address=True)
        if self.held:
            await self.release.wait()
        return SendResult(message_id=request.message_id, channel=request.channel, outcome="sent",
                          provider="recording")


def _event(customer_id: str, number: int, event_type: str, at: object, properties: dict[str, object]) -> Event:
    return Event.model_validate({"id": f"{customer_id}-{number}", "type": event_type, "customer_id": customer_id,
                                 "timestamp": at, "source": "web", "properties": properties})


async def _save(client: Client, journey: str, name: str, customer_id: str, run_id: str | None = None) -> None:
    handle = client.get_workflow_handle(customer_workflow_id(customer_id), run_id=run_id)
    history = await handle.fetch_history()
    path = HISTORIES / f"{journey}-{name}.json"
    path.write_text(history.to_json())
    print(f"recorded {path.name}: {len(history.events)} events")


async def _record_edge_cases(env: WorkflowEnvironment, task_queue: str, channel: ScriptedChannel) -> None:
    bundle = [flagship()]

    # SMS fails for good: the step falls back to email.
    start = aligned_start(await env.get_current_time())
    customer = "cus_sms_fails_falls_back_to_email"
    await send_event(env.client, task_queue, _event(customer, 0, "customer_updated", start - DAY, profile()), bundle)
    await send_event(env.client, task_queue, _event(customer, 1, "checkout_started", start, cart()), bundle)
    await env.sleep(start + 4 * DAY - await env.get_current_time())
    await _save(env.client, "abandoned_cart", "sms_fails_falls_back_to_email", customer)

    # An order while the first reminder is in flight: the send is cancelled. The checkout happened an
    # hour ago, so the reminder is due at once (time cannot skip while an activity is running).
    now = await env.get_current_time()
    customer = "cus_order_cancels_send_in_flight"
    await send_event(env.client, task_queue, _event(customer, 0, "customer_updated", now - DAY, profile()), bundle)
    channel.held, channel.release = True, asyncio.Event()
    sent_before = len(channel.requests)
    await send_event(env.client, task_queue, _event(customer, 1, "checkout_started", now - HOUR, cart()), bundle)
    await _until_held(channel, sent_before + 1)
    await send_event(env.client, task_queue, _event(customer, 2, "order_placed", now, order()), bundle)
    await asyncio.sleep(1)
    channel.held = False
    channel.release.set()
    await asyncio.sleep(1)
    await _save(env.client, "abandoned_cart", "order_cancels_send_in_flight", customer)

    # A poison event (it skipped the API's validation) is quarantined; the journey goes on.
    start = aligned_start(await env.get_current_time())
    customer = "cus_poison_event_quarantined"
    await send_event(env.client, task_queue, _event(customer, 0, "customer_updated", start - DAY, profile()), bundle)
    await send_event(env.client, task_queue, _event(customer, 1, "checkout_started", start, cart()), bundle)
    first_run = await env.client.get_workflow_handle(customer_workflow_id(customer)).describe()
    await send_event(env.client, task_queue,
                     _event(customer, 2, "customer_updated", start + HOUR / 2, {"push_tokens": 5}), bundle)
    await env.sleep(start + 4 * DAY - await env.get_current_time())
    await _save(env.client, "abandoned_cart", "poison_event_quarantined", customer, first_run.run_id)
    await _save(env.client, "abandoned_cart", "after_quarantine", customer)

    # The history limit is reached while a send is in flight: continue-as-new does not wait for it.
    now = await env.get_current_time()
    customer = "cus_continued_as_new_with_send_in_flight"
    limit = {"max_history_events": 20}
    await send_event(env.client, task_queue, _event(customer, 0, "customer_updated", now - DAY, profile()), bundle,
                     **limit)
    channel.held, channel.release = True, asyncio.Event()
    sent_before = len(channel.requests)
    await send_event(env.client, task_queue, _event(customer, 1, "checkout_started", now - HOUR, cart()), bundle,
                     **limit)
    await _until_held(channel, sent_before + 1)
    first_run = await env.client.get_workflow_handle(customer_workflow_id(customer)).describe()
    for number in range(2, 8):
        await send_event(env.client, task_queue, _event(customer, number, "product_viewed", now, {"sku": "S"}),
                         bundle, **limit)
    await asyncio.sleep(1)
    channel.held = False
    channel.release.set()
    await asyncio.sleep(1)
    await _save(env.client, "abandoned_cart", "continued_as_new_with_send_in_flight", customer, first_run.run_id)


async def _record_by_reference(env: WorkflowEnvironment, task_queue: str, name: str = "journeys_by_reference") -> None:
    """The path production takes: events name the journey by version, the workflow fetches it once
    (a local activity), and sends name their template instead of carrying it."""
    version = flagship().version
    start = aligned_start(await env.get_current_time())
    customer = f"cus_{name}"
    events = [_event(customer, 0, "customer_updated", start - DAY, profile()),
              _event(customer, 1, "checkout_started", start, cart()),
              _event(customer, 2, "checkout_started", start, cart("cart_2"))]
    await signal_customer(env.client, task_queue, customer,
                          [IncomingEvent(event=e, journeys=[version] if e.type == "checkout_started" else [])
                           for e in events])
    await env.sleep(start + 4 * DAY - await env.get_current_time())
    await _save(env.client, "abandoned_cart", name, customer)


async def _record_win_back(env: WorkflowEnvironment, task_queue: str) -> None:
    """A lapsed customer in the twenty-percent arm orders again after the offer, lapses again and
    gets the same offer: the split, the goal counted after it, analytics riding on the sends and
    stored on its own for the conversion."""
    from omnicart.journey.loader import load_journey
    from tests.support.bundles import JOURNEYS

    version = load_journey(JOURNEYS / "win_back.yaml").version
    start = aligned_start(await env.get_current_time())
    customer = "cus_1"  # the twenty_percent arm, by hash
    first = [_event(customer, 0, "customer_updated", start - DAY, profile()),
             _event(customer, 1, "order_placed", start, {**order(), "order_id": "order_1"})]
    await signal_customer(env.client, task_queue, customer,
                          [IncomingEvent(event=e, journeys=[version] if e.type == "order_placed" else [])
                           for e in first])
    await env.sleep(start + 63 * DAY - await env.get_current_time())
    again = _event(customer, 2, "order_placed", start + 63 * DAY, {**order(), "order_id": "order_2"})
    await signal_customer(env.client, task_queue, customer, [IncomingEvent(event=again, journeys=[version])])
    await env.sleep(start + 140 * DAY - await env.get_current_time())
    await _save(env.client, "win_back", "split_holdout_and_analytics", customer)


async def _record_date_triggers(env: WorkflowEnvironment, name: str) -> None:
    """One run of the date-triggers schedule: a birthday due in its window, found on the second page."""
    import uuid

    from temporalio.worker import Worker

    from activities.date_triggers import DateTriggerActivities
    from omnicart.customers.projection import ProfileProjection
    from omnicart.date_schedule import DATE_TRIGGERS_WORKFLOW, WORKFLOW_ID, DateTriggersInput
    from omnicart.journey.loader import load_journey
    from omnicart.settings import get_settings
    from tests.support.bundles import JOURNEYS
    from workflows.date_triggers import DateTriggersWorkflow

    birthday = load_journey(JOURNEYS / "birthday.yaml")
    with tempfile.TemporaryDirectory() as scratch:
        url = f"sqlite:///{Path(scratch) / 'product.db'}"
        upgrade(url)
        engine = get_engine(url)
        JourneyRegistry(engine).publish([birthday], "recorder")
        now = await env.get_current_time()
        eleven = now.replace(hour=11, minute=0, second=0, microsecond=0) + DAY
        await env.sleep(eleven - now)
        now, due, zone = eleven, eleven - HOUR, "UTC"  # the birthday email is due at 10:00, an hour ago
        settings = get_settings()
        projection = ProfileProjection(engine, settings.signing_secret)
        for number in range(3):
            facts = {**profile(sms=False, timezone=zone), "birthday": f"1990-{due:%m-%d}"}
            projection.record([_event(f"cus_birthday_{number}", 0, "customer_updated", now - 3 * DAY, facts)])
        channel = RecordingChannel()
        async with customer_worker(env.client, [channel.send_message]) as task_queue:
            configured = settings.model_copy(update={"task_queue": task_queue})
            dates = DateTriggerActivities(engine, configured.signing_secret, env.client, configured,
                                          lambda: {"birthday": birthday}, by_reference=False)
            date_queue = f"dates-{uuid.uuid4()}"
            async with Worker(env.client, task_queue=date_queue, workflows=[DateTriggersWorkflow],
                              activities=dates.activities()):
                with env.auto_time_skipping_disabled():
                    handle = await env.client.start_workflow(
                        DATE_TRIGGERS_WORKFLOW, DateTriggersInput(lookback_seconds=4 * 3600, page_size=2),
                        id=WORKFLOW_ID, task_queue=date_queue)
                    await handle.result()
                history = await handle.fetch_history()
    path = HISTORIES / f"date_triggers-{name}.json"
    path.write_text(history.to_json())
    print(f"recorded {path.name}: {len(history.events)} events")


async def _record_topic_opt_out(env: WorkflowEnvironment, task_queue: str) -> None:
    """After the first reminder the customer unticks the journey's topic in the preference centre:
    every later touch is skipped (``topic_opt_out``)."""
    bundle = [flagship()]
    start = aligned_start(await env.get_current_time())
    customer = "cus_topic_opt_out_after_first_reminder"
    await env.sleep(start - await env.get_current_time())  # the checkout happens as it arrives
    await send_event(env.client, task_queue, _event(customer, 0, "customer_updated", start - DAY, profile()), bundle)
    await send_event(env.client, task_queue, _event(customer, 1, "checkout_started", start, cart()), bundle)
    await env.sleep(start + 2 * HOUR - await env.get_current_time())
    opt_out = {"topic": "marketing", "granted": False, "source": "preference_centre"}
    await send_event(env.client, task_queue, _event(customer, 2, "consent_changed", start + 2 * HOUR, opt_out), bundle)
    await env.sleep(start + 4 * DAY - await env.get_current_time())
    await _save(env.client, "abandoned_cart", "topic_opt_out_after_first_reminder", customer)


async def _record_paced(env: WorkflowEnvironment, task_queue: str) -> None:
    """The flagship when SMS and email are paced: the events name each channel's send queue, and the
    sends are scheduled there (behind ``workflow.patched``), where a rate-limited worker polls."""
    queues = {channel: send_queue(task_queue, channel) for channel in ("email", "sms")}
    start = aligned_start(await env.get_current_time())
    customer = "cus_paced_send_queues"
    events = [_event(customer, 0, "customer_updated", start - DAY, profile()),
              _event(customer, 1, "checkout_started", start, cart())]
    await signal_customer(env.client, task_queue, customer,
                          [IncomingEvent(event=e, journeys=[flagship()] if e.type == "checkout_started" else [],
                                         send_queues=queues) for e in events])
    await env.sleep(start + 4 * DAY - await env.get_current_time())
    await _save(env.client, "abandoned_cart", "paced_send_queues", customer)


async def _record_late_fallback(env: WorkflowEnvironment, task_queue: str, channel: RecordingChannel) -> None:
    """Twilio accepts the cart SMS, then reports it undelivered (30006, a landline): the number is
    marked and the step falls back to its email (``LATE_FAILURE_PATCH``)."""
    bundle = [flagship()]
    start = aligned_start(await env.get_current_time())
    customer = "cus_sms_bounced_later_falls_back_to_email"
    await send_event(env.client, task_queue, _event(customer, 0, "customer_updated", start - DAY, profile()), bundle)
    await send_event(env.client, task_queue, _event(customer, 1, "checkout_started", start, cart()), bundle)
    texts: list[SendRequest] = []
    while not texts:  # the report comes soon after the SMS went out, before the last-chance email
        await env.sleep(HOUR)
        texts = [r for r in channel.requests if r.customer_id == customer and r.channel == "sms"]
    bounced: dict[str, object] = {
        "channel": "sms", "message_id": texts[0].message_id, "status": "undelivered", "error_code": "30006"
    }
    now = await env.get_current_time()
    await send_event(env.client, task_queue, _event(customer, 2, "message_bounced", now, bounced), [])
    await env.sleep(start + 4 * DAY - await env.get_current_time())
    await _save(env.client, "abandoned_cart", "sms_bounced_later_falls_back_to_email", customer)


async def _record_low_stock(env: WorkflowEnvironment, task_queue: str, engine: Engine) -> None:
    """The flagship's low-stock branch: the run asks the catalog (a local activity, behind the
    ``catalog-for-conditions`` patch) just before it branches, and sends the "only 2 left" reminder."""
    start = aligned_start(await env.get_current_time())
    customer = "cus_low_stock_branch_asks_the_catalog"
    items = cart()["items"]
    apply_catalog_events(engine, [
        Event.model_validate({"id": f"stock-{item['sku']}", "type": "inventory_changed", "timestamp": start - DAY,
                              "source": "web", "properties": {"sku": item["sku"], "location": "online",
                                                             "quantity": 2 if number == 0 else 40}})
        for number, item in enumerate(items)
    ])
    bundle = [flagship()]
    await send_event(env.client, task_queue, _event(customer, 0, "customer_updated", start - DAY, profile()), bundle)
    await send_event(env.client, task_queue, _event(customer, 1, "checkout_started", start, cart()), bundle)
    await env.sleep(start + 4 * DAY - await env.get_current_time())
    await _save(env.client, "abandoned_cart", "low_stock_branch_asks_the_catalog", customer)


async def _record_identity(env: WorkflowEnvironment) -> None:
    """An anonymous visitor checks out, then logs in: the visitor's workflow hands its state over
    (``hand_over``) and ends; the known customer's workflow merges it and runs the flagship once."""
    from activities.identity import IdentityActivities
    from omnicart.routing import tell_link
    from omnicart.signals import Link

    channel = RecordingChannel()
    async with customer_worker(env.client, [channel.send_message, IdentityActivities(env.client).hand_over]) as queue:
        start = aligned_start(await env.get_current_time())
        visitor, customer = "anon:h-recorded-visitor", "cus_identity_merged"
        anonymous = [_event(visitor, 0, "product_viewed", start - HOUR / 2, {"sku": "SKU-1"}),
                     _event(visitor, 1, "checkout_started", start, cart())]
        await signal_customer(env.client, queue, visitor,
                              [IncomingEvent(event=e, journeys=[flagship()] if e.type == "checkout_started" else [])
                               for e in anonymous])
        await env.sleep(HOUR / 4)
        login = _event(customer, 0, "customer_updated", start + HOUR / 4, profile())
        await send_event(env.client, queue, login, [flagship()])
        await tell_link(env.client, visitor, Link(customer_id=customer, event_id=login.id))
        await env.client.get_workflow_handle(customer_workflow_id(visitor)).result()
        await env.sleep(start + 4 * DAY - await env.get_current_time())
        await _save(env.client, "abandoned_cart", "identity_anonymous_visitor_hands_over", visitor)
        await _save(env.client, "abandoned_cart", "identity_known_customer_merges", customer)


async def _record_pause_exit(env: WorkflowEnvironment) -> None:
    """The flagship paused with "runs under way exit" an hour after its first reminder: the
    ``exit_journey`` signal ends the run (exit ``journey_paused``) and no later touch is sent."""
    from omnicart.journey_exit import PAUSED_REASON
    from omnicart.signals import EXIT_JOURNEY_SIGNAL, JourneyExit

    async with customer_worker(env.client, [RecordingChannel().send_message]) as queue:
        start = aligned_start(await env.get_current_time())
        customer = "cus_paused_with_runs_exiting"
        await send_event(env.client, queue, _event(customer, 0, "customer_updated", start - DAY, profile()),
                         [flagship()])
        await send_event(env.client, queue, _event(customer, 1, "checkout_started", start, cart()), [flagship()])
        await env.sleep(2 * HOUR)  # the checkout counts from now (a future timestamp is read as its arrival)
        paused = JourneyExit(journey="abandoned_cart", reason=PAUSED_REASON, paused_at=await env.get_current_time())
        await env.client.get_workflow_handle(customer_workflow_id(customer)).signal(EXIT_JOURNEY_SIGNAL, paused)
        await env.sleep(start + 4 * DAY - await env.get_current_time())
        await _save(env.client, "abandoned_cart", "paused_with_runs_exiting", customer)


async def _until_held(channel: ScriptedChannel, requests: int) -> None:
    while len(channel.requests) < requests:
        await asyncio.sleep(0.05)


async def main() -> None:
    binary = Path(sys.executable).parent / "temporal-test-server"
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(binary), data_converter=pydantic_data_converter
    )
    bundles: dict[str, JourneyBundle] = {"abandoned_cart": flagship(), "browse_abandonment": browse()}
    timelines = {"abandoned_cart": flagship_timelines(), "browse_abandonment": browse_timelines()}
    try:
        if "--outlines-only" in sys.argv:
            with tempfile.TemporaryDirectory() as scratch:
                url = f"sqlite:///{Path(scratch) / 'registry.db'}"
                upgrade(url)
                JourneyRegistry(get_engine(url)).publish([flagship()], "recorder")
                async with customer_worker(env.client, [RecordingChannel().send_message],
                                           quarantine=QuarantineLog(get_engine(url))) as task_queue:
                    await _record_by_reference(env, task_queue, "journeys_by_reference_outlined")
            return
        if "--identity-only" in sys.argv:
            await _record_identity(env)
            return
        if "--pause-exit-only" in sys.argv:
            await _record_pause_exit(env)
            return
        if "--date-triggers-only" in sys.argv:
            await _record_date_triggers(env, sys.argv[sys.argv.index("--date-triggers-only") + 1])
            return
        if "--pacing-only" in sys.argv:
            paced = RecordingChannel()
            async with customer_worker(env.client, [paced.send_message]) as task_queue:
                senders = [Worker(env.client, task_queue=send_queue(task_queue, channel),
                                  activities=[paced.send_message]) for channel in ("email", "sms")]
                async with senders[0], senders[1]:
                    await _record_paced(env, task_queue)
            return
        if "--analytics-only" in sys.argv:
            with tempfile.TemporaryDirectory() as scratch:
                url = f"sqlite:///{Path(scratch) / 'registry.db'}"
                upgrade(url)
                from omnicart.journey.loader import load_journey
                from tests.support.bundles import JOURNEYS

                JourneyRegistry(get_engine(url)).publish([load_journey(JOURNEYS / "win_back.yaml")], "recorder")
                channel = RecordingChannel(get_engine(url))
                async with customer_worker(env.client, [channel.send_message],
                                           quarantine=QuarantineLog(get_engine(url))) as task_queue:
                    await _record_win_back(env, task_queue)
            return
        if "--topics-only" in sys.argv:
            async with customer_worker(env.client, [RecordingChannel().send_message]) as task_queue:
                await _record_topic_opt_out(env, task_queue)
            return
        if "--late-fallback-only" in sys.argv:
            accepting = RecordingChannel()
            async with customer_worker(env.client, [accepting.send_message]) as task_queue:
                await _record_late_fallback(env, task_queue, accepting)
            return
        if "--stock-only" in sys.argv:
            with tempfile.TemporaryDirectory() as scratch:
                url = f"sqlite:///{Path(scratch) / 'catalog.db'}"
                upgrade(url)
                async with customer_worker(env.client, [RecordingChannel().send_message],
                                           quarantine=QuarantineLog(get_engine(url))) as task_queue:
                    await _record_low_stock(env, task_queue, get_engine(url))
            return
        if "--edge-cases-only" not in sys.argv:
            plain = RecordingChannel()
            async with customer_worker(env.client, [plain.send_message]) as task_queue:
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
                        await _save(env.client, journey, timeline.name, customer_id)
        scripted = ScriptedChannel()
        with tempfile.TemporaryDirectory() as scratch:
            url = f"sqlite:///{Path(scratch) / 'registry.db'}"
            upgrade(url)
            JourneyRegistry(get_engine(url)).publish([flagship()], "recorder")
            registry = QuarantineLog(get_engine(url))  # the worker's database: its registry and quarantine list
            async with customer_worker(env.client, [scripted.send_message], quarantine=registry) as task_queue:
                await _record_by_reference(env, task_queue)  # first: time skips freely before the held sends
                await _record_edge_cases(env, task_queue, scripted)
    finally:
        await env.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
