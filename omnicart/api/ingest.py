"""Taking validated events in: dedupe by id, then hand each to its customer's workflow.

Catalog and store events (``product_updated``, ``inventory_changed``, ``price_changed``,
``store_updated``) concern no customer: they are applied to the catalog in the product database
(``omnicart.catalog``) within the request instead, before any customer's event is forwarded. The
restocks and price drops they make wait in the fan-out outbox, written in the same transaction; the
request then starts their fan-out workflows, and if Temporal is down it still answers as for any
applied event: the worker's sweep starts them later (``omnicart.catalog.outbox``).

Every way an event enters the product (``POST /v1/events``, provider webhooks, unsubscribe links)
goes through :class:`Ingest`, so "the same id is never acted on twice" and "an outage loses
nothing" are true in one place. Events of different customers are forwarded concurrently (a batch
from a busy shop is many customers); one customer's events keep their batch order, and an
in-process lock per customer keeps two concurrent requests for one customer from interleaving.
Each customer's share of a batch travels in as few signals as fit Temporal's payload limit
(``omnicart.routing.deliver``).
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import timedelta
from typing import Protocol

from pydantic import BaseModel, Field
from temporalio.client import Client
from temporalio.runtime import Runtime
from temporalio.service import RPCError

from omnicart.api.event_log import EventLog
from omnicart.catalog import InterestRecorder, apply_catalog_events
from omnicart.catalog.outbox import FanoutStarter
from omnicart.consent.history import ConsentHistory
from omnicart.customers.projection import ProfileProjection
from omnicart.events import ANONYMOUS_PREFIX, Event
from omnicart.identity import IdentityLinks, NewLink
from omnicart.journey.model import JourneyBundle
from omnicart.observability import count_ingested
from omnicart.pacing import send_queues
from omnicart.routing import deliver, tell_link
from omnicart.settings import Settings
from omnicart.signals import Link

logger = logging.getLogger(__name__)

# How many customers' workflows one batch signals at once: enough to hide round trips, few enough
# not to flood a small cluster with a 1,000-event batch.
MAX_CONCURRENT_CUSTOMERS = 64


class JourneySource(Protocol):
    """What ingest needs from the journey catalog: the published journeys an event type triggers,
    and whether workers can fetch them by version (the registry) or they must travel whole (files)."""

    @property
    def by_reference(self) -> bool: ...

    def bundles_for(self, event_type: str) -> Sequence[JourneyBundle]: ...


class IngestResult(BaseModel):
    """What the producer is told: how many events were taken and how many were repeats."""

    accepted: int = Field(
        description="Events taken in: forwarded to their customers' workflows, or applied to the catalog."
    )
    duplicates: int = Field(description="Events whose id was already accepted (here or earlier): ignored.")


class ForwardingFailed(Exception):
    """Some events were not taken in: the database or Temporal failed, whatever the error.

    Those events stay recorded as not forwarded (or were never recorded), so sending the same batch
    again forwards them and counts the ones already forwarded as duplicates: the API answers ``503``
    with ``Retry-After`` so producers do exactly that. Never a ``500`` that strands rows.
    """

    def __init__(self, pending: int, reason: str = "events could not be forwarded") -> None:
        super().__init__(f"{reason}; {pending} event(s) not forwarded, send them again")
        self.pending = pending


class TemporalUnavailable(ForwardingFailed):
    """Temporal did not answer: the common case of :class:`ForwardingFailed`."""

    def __init__(self, pending: int) -> None:
        super().__init__(pending, "Temporal is unreachable")


class Ingest:
    """Dedupe and forward events to Temporal with signal-with-start.

    ``forward_timeout`` bounds how long one customer's share of a batch may take, so a producer
    hears ``503`` in seconds rather than hanging while the client retries a dead server.
    """

    def __init__(
        self,
        client: Client,
        task_queue: str,
        catalog: JourneySource,
        event_log: EventLog,
        settings: Settings,
        *,
        forward_timeout: float = 15.0,
        profiles: ProfileProjection | None = None,
    ) -> None:
        self.client = client
        self.task_queue = task_queue
        self.catalog = catalog
        self.event_log = event_log
        self.settings = settings
        self.forward_timeout = forward_timeout
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self._limit = asyncio.Semaphore(MAX_CONCURRENT_CUSTOMERS)
        # The queryable copy of each customer (omnicart.customers): best-effort, never fails ingest.
        runtime = client.service_client.config.runtime or Runtime.default()
        self.profiles = profiles or ProfileProjection(event_log.engine, settings.signing_secret, runtime.metric_meter)
        # Who is interested in which sku (omnicart.catalog.interest): best-effort in the same way.
        lasts = timedelta(days=settings.interest_days)
        self.interest = InterestRecorder(event_log.engine, settings.signing_secret, lasts)
        # The record of every consent change and its evidence (omnicart.consent): best-effort too.
        self.consent = ConsentHistory(event_log.engine, settings.signing_secret)
        # Restocks and price drops wait in the outbox until their fan-out starts (omnicart.catalog.outbox).
        self.fanouts = FanoutStarter(event_log.engine, client, settings.model_copy(update={"task_queue": task_queue}),
                                     timeout=forward_timeout)
        self._fanouts_waiting = True  # maybe left by an earlier process: the first catalog request looks
        # Which known customer each anonymous id belongs to (omnicart.identity, docs/IDENTITY.md).
        self.identity = IdentityLinks(event_log.engine, settings.signing_secret)

    async def submit(self, events: list[Event]) -> IngestResult:
        """Accept already validated events; raise :class:`ForwardingFailed` if any was not taken in.

        An id repeated inside the batch, or already forwarded earlier, counts as a duplicate. An id
        recorded earlier but never forwarded (Temporal was down then) is forwarded now and counts
        as accepted: the producer was told ``503`` the first time.
        """
        distinct: dict[str, Event] = {}
        for event in events:
            distinct.setdefault(event.id, event)
        in_batch_repeats = len(events) - len(distinct)
        if not distinct:
            count_ingested(0, in_batch_repeats)
            return IngestResult(accepted=0, duplicates=in_batch_repeats)

        # A link holds its anonymous id's lock too: an anonymous event is routed before or after it, not between.
        held = {event.customer_id for event in distinct.values()}
        held |= {event.anonymous_id for event in distinct.values() if event.anonymous_id}
        async with self._customer_locks(held):
            try:
                recorded = await asyncio.to_thread(self.event_log.record, list(distinct.values()))
            except Exception as error:  # the transaction rolled back: nothing of the batch is recorded
                logger.error("could not record %d events (%s); none taken", len(distinct), type(error).__name__)
                raise ForwardingFailed(len(distinct), "the event log is unavailable") from error
            # The plan lets only catalog and store events (concerns: catalog, store) go without a customer.
            catalog = [event for event in recorded.to_forward if not event.customer_id and not event.anonymous_id]
            try:  # applied, or the request fails and the producer's retry applies them (idempotent)
                await asyncio.to_thread(apply_catalog_events, self.event_log.engine, catalog)
            except Exception as error:
                logger.error("could not apply %d catalog events (%s); none taken", len(catalog), type(error).__name__)
                raise ForwardingFailed(len(recorded.to_forward), "the catalog is unavailable") from error
            if catalog or self._fanouts_waiting:
                # Applied and in the outbox: if Temporal is down now, the answer is still 202 and the
                # next request (or the worker's sweep) starts the fan-out.
                self._fanouts_waiting = not await self.fanouts.start_quietly()
            customers = [event for event in recorded.to_forward if event.customer_id or event.anonymous_id]
            try:  # each event gets the customer whose workflow it goes to: anonymous ids follow their links
                routed = await asyncio.to_thread(self.identity.route, customers)
            except Exception as error:
                logger.error("could not route %d events (%s); none taken", len(customers), type(error).__name__)
                raise ForwardingFailed(len(recorded.to_forward), "the identity links are unavailable") from error
            by_customer: dict[str, list[Event]] = {}
            for event in routed.events:
                by_customer.setdefault(event.customer_id, []).append(event)
            outcomes = await asyncio.gather(*(self._forward(group) for group in by_customer.values()))
            forwarded = [event.id for event in catalog]
            forwarded += [event_id for done, _ in outcomes for event_id in done]
            forwarded, linked = await self._hand_over_links(routed.links, forwarded, outcomes)
            try:
                await asyncio.to_thread(self.event_log.mark_forwarded, forwarded)
            except Exception as error:  # forwarded but not marked: a retry forwards again, workflows dedupe
                logger.error("could not mark %d events forwarded (%s)", len(forwarded), type(error).__name__)
                raise ForwardingFailed(len(recorded.to_forward), "the event log is unavailable") from error
            reached = set(forwarded)
            reached_customers = [e for e in routed.events if e.id in reached]
            # Anonymous visitors get no profile (nobody to find or to send to); their interest moves on link.
            known = [e for e in reached_customers if not e.customer_id.startswith(ANONYMOUS_PREFIX)]
            await asyncio.to_thread(self.profiles.record_quietly, known)
            await asyncio.to_thread(self.interest.record_quietly, reached_customers)
            await asyncio.to_thread(_best_effort, self.consent.record, reached_customers, "the consent history")
            await asyncio.to_thread(self._move_interest, linked)

        errors = [error for _, error in outcomes if error is not None]
        if errors:
            pending = len(recorded.to_forward) - len(forwarded)
            unavailable = all(_unavailable(error) for error in errors)
            logger.warning(
                "forwarding failed (%s); %d of %d events kept for the producer's retry",
                ", ".join(sorted({type(error).__name__ for error in errors})),
                pending,
                len(recorded.to_forward),
            )
            if unavailable:
                raise TemporalUnavailable(pending) from errors[0]
            raise ForwardingFailed(pending) from errors[0]
        result = IngestResult(
            accepted=len(recorded.to_forward),
            duplicates=in_batch_repeats + len(recorded.duplicates),
        )
        count_ingested(result.accepted, result.duplicates)
        return result

    async def _hand_over_links(
        self, links: list[NewLink], forwarded: list[str], outcomes: list[tuple[list[str], Exception | None]]
    ) -> tuple[list[str], list[NewLink]]:
        """Tell each newly linked anonymous visitor's workflow to hand its state to the known customer,
        once the linking event reached that customer; the events forwarded for good, the links told.

        A link that could not be told leaves its linking event unforwarded: the producer's retry
        forwards it again (the workflow dedupes it) and tells the link then. What is told is noted, so a
        repeated link tells nothing.
        """
        reached = set(forwarded)
        told: list[NewLink] = []
        failed: set[str] = set()
        for link in links:
            if link.event_id not in reached:
                continue
            try:
                await tell_link(self.client, link.anonymous_customer_id, Link(customer_id=link.customer_id,
                                                                              event_id=link.event_id))
                told.append(link)
            except Exception as error:
                logger.warning("could not hand over an anonymous visitor (%s); kept for the retry",
                               type(error).__name__)
                failed.add(link.event_id)
                outcomes.append(([], error))
        try:  # if this fails, a repeated link tells again: a visitor already told ignores it
            await asyncio.to_thread(self.identity.handed_over, told)
        except Exception as error:
            logger.warning("could not note %d hand-overs (%s)", len(told), type(error).__name__)
        return [event_id for event_id in forwarded if event_id not in failed], told

    def _move_interest(self, links: list[NewLink]) -> None:
        """The linked visitors' interest becomes the known customers' (best-effort, like recording it)."""
        for link in links:
            try:
                self.interest.move(link.anonymous_customer_id, link.customer_id)
            except Exception as error:
                logger.warning("could not move an anonymous visitor's interest (%s)", type(error).__name__)

    async def _forward(self, events: list[Event]) -> tuple[list[str], Exception | None]:
        """Hand one customer's events to its workflow, in order; say which got there before any failure."""
        done: list[str] = []
        async with self._limit:
            try:
                async with asyncio.timeout(self.forward_timeout):
                    await deliver(
                        self.client,
                        self.task_queue,
                        events[0].customer_id,
                        events,
                        self.catalog.bundles_for,
                        max_history_events=self.settings.max_history_events,
                        send_timeout_seconds=self.settings.send_timeout_seconds,
                        on_signalled=lambda part: done.extend(event.id for event in part),
                        by_reference=self.catalog.by_reference,
                        record_analytics=self.settings.record_analytics,
                        send_queues=send_queues(self.settings),
                    )
            except Exception as error:
                return done, error
        return done, None

    @asynccontextmanager
    async def _customer_locks(self, customer_ids: set[str]) -> AsyncIterator[None]:
        """Hold the locks of every customer in the batch, taken in sorted order so batches cannot deadlock."""
        locks: list[asyncio.Lock] = []  # strong references: the weak map keeps a lock only while held
        for customer_id in sorted(customer_ids):
            lock = self._locks.get(customer_id)
            if lock is None:
                lock = self._locks[customer_id] = asyncio.Lock()
            locks.append(lock)
        async with AsyncExitStack() as stack:
            for lock in locks:
                await stack.enter_async_context(lock)
            yield


def _best_effort(record: Callable[[Sequence[Event]], None], events: Sequence[Event], what: str) -> bool:
    """``record(events)``, where a failure is logged instead of raised: ingest goes on without it."""
    try:
        record(events)
    except Exception as error:  # the type only: a database error's text may quote the values it failed on
        logger.warning("could not update %s for %d events (%s)", what, len(events), type(error).__name__)
        return False
    return True


def _unavailable(error: BaseException) -> bool:
    """Whether a forwarding failure means "Temporal is not reachable now" (retry later) rather than a bug."""
    if isinstance(error, RPCError | TimeoutError):
        return True
    return isinstance(error, RuntimeError) and "client connect" in str(error).lower()
