"""The ``send_message`` activity: one journey message, rendered and delivered at most once.

A journey (inside the customer workflow) decides *that* a message goes out; this activity decides
*how*: it renders the template (adding the message's id, a discount code and the unsubscribe link),
then ledger -> channel sender -> ledger, so that a retry, a second worker or a crash never sends
the same ``message_id`` twice (the reasoning and the remaining window are in ``omnicart/ledger.py``).

Outcomes, as the workflow sees them:

* ``SendResult(outcome="sent")``: the provider accepted it.
* ``SendResult(outcome="already_sent")``: an earlier attempt did (or may have: ``error`` says
  "unconfirmed ..." when a crashed attempt could not be confirmed and was not repeated).
* ``SendResult(outcome="skipped", skip_reason="out_of_stock")``: what the message advertises sold
  out while the journey waited (re-read from the catalog just before sending; the step's
  ``if_out_of_stock`` decides, ``omnicart.catalog.availability``). Settled in the ledger: a retry
  reports the same skip and sends nothing.
* ``SendResult(outcome="failed")``: permanently, for this channel; ``invalid_address`` /
  ``revoke_consent`` tell the journey what to change before it tries the step's fallback.
* Raises ``ApplicationError`` (retryable, ``next_retry_delay`` = the provider's Retry-After) for
  timeouts, 429 and 5xx: with ``SEND_RETRY_POLICY`` an outage delays a message, never drops it.

For analytics it stores the journey's rows the request carries (``SendRequest.analytics``) before
anything else, and the outcome the send itself knows: ``failed`` for good, or ``delivered`` where
the channel's acceptance is all we will hear (``ACCEPTANCE_IS_DELIVERY``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from omnicart.analytics.outcomes import CHANNEL_ACCEPTED, SEND_FAILED, outcome
from omnicart.analytics.rows import MessageOutcomeRow
from omnicart.analytics.store import record_actions, record_outcomes
from omnicart.api.unsubscribe import unsubscribe_url
from omnicart.catalog.availability import (
    OUT_OF_STOCK,
    CatalogSnapshot,
    advertised_skus,
    at_send,
)
from omnicart.catalog.snapshot import load_snapshot
from omnicart.channels.base import (
    ChannelSender,
    Delivery,
    PermanentChannelError,
    ProviderConfigurationError,
    RenderedMessage,
    RetryableChannelError,
    SupportsLookup,
)
from omnicart.discounts import DiscountBook
from omnicart.events import Channel
from omnicart.journey.model import DEFAULT_LOCALE, EmailTemplate, SmsTemplate, Utm, WhatsAppTemplate
from omnicart.journey.registry import JourneyRegistry
from omnicart.journey.templates import TemplateError
from omnicart.journey.versions import JourneyVersions, UnknownVersion
from omnicart.ledger import ClaimState, LedgerEntry, LedgerStatus, MessageLedger
from omnicart.messages import SEND_START_TO_CLOSE, Outcome, SendRequest, SendResult
from omnicart.observability import count_send, observe_send_latency
from omnicart.rendering import render_message, request_context
from omnicart.security.pseudonym import customer_ref
from omnicart.security.redact import redact
from omnicart.settings import Settings
from omnicart.utm import UtmTagger, utm_tagger

MAX_RETRY_AFTER = timedelta(hours=1)
"""A provider asking us to wait longer than this is asked again after this long."""

RETRYABLE_ERROR_TYPE = "RetryableChannelError"


class SendActivities:
    """The send activity with what it needs, shared by every concurrent call on a worker."""

    def __init__(
        self,
        ledger: MessageLedger,
        senders: Mapping[Channel, ChannelSender],
        settings: Settings,
        discounts: DiscountBook | None = None,
        *,
        attempt_timeout: timedelta = SEND_START_TO_CLOSE,
        versions: JourneyVersions | None = None,
    ) -> None:
        """``attempt_timeout`` must match the start-to-close timeout the workflow gives this activity;
        ``versions`` reads the templates of requests that name theirs (default: this database's registry)."""
        self.ledger = ledger
        self.senders = dict(senders)
        self.settings = settings
        self.discounts = discounts or DiscountBook(ledger.engine, settings.signing_secret)
        self.attempt_timeout = attempt_timeout
        self.versions = versions or JourneyVersions(JourneyRegistry(ledger.engine))

    @activity.defn(name="send_message")
    async def send_message(self, request: SendRequest) -> SendResult:
        """Send one message, heartbeating meanwhile; a cancellation stops it before the provider call.

        The work runs shielded: a cancellation (the run exited, or the worker is shutting down) only
        raises a flag that ``_deliver`` checks just before it calls the provider. A call already made
        is always finished and recorded, so the ledger never loses track of a message.
        """
        self._alert_if_retrying(request)
        stop = asyncio.Event()
        work = asyncio.create_task(self._send(request, stop))
        heartbeats = asyncio.create_task(_heartbeat_until(work))
        try:
            result = await asyncio.shield(work)
        except asyncio.CancelledError:
            stop.set()
            activity.logger.info("send %s: cancellation received", request.message_id)
            with contextlib.suppress(Exception):
                await work
            count_send(request.channel, "cancelled")
            raise
        except ApplicationError as exc:
            count_send(request.channel, "retried" if exc.type == RETRYABLE_ERROR_TYPE else "error")
            raise
        except Exception:
            count_send(request.channel, "error")
            raise
        finally:
            heartbeats.cancel()
        count_send(request.channel, result.outcome)
        if result.outcome == "sent":
            observe_send_latency(request.channel)
        return result

    def _alert_if_retrying(self, request: SendRequest) -> None:
        """A log line and a metric an operator can alert on: a send that keeps failing to go out."""
        attempt = activity.info().attempt
        if attempt <= self.settings.send_retry_alert_attempts:
            return
        activity.logger.warning(
            "send %s on %s is still retrying (attempt %d): a provider may be down",
            request.message_id, request.channel, attempt,
        )
        activity.metric_meter().create_counter(
            "omnicart_send_retries_past_alert", "Send attempts past the alert threshold", "attempts"
        ).add(1, {"channel": request.channel})

    async def _send(self, request: SendRequest, stop: asyncio.Event) -> SendResult:
        if request.analytics:  # the journey's rows ride along with its send: stored first, once
            await asyncio.to_thread(record_actions, self.ledger.engine, request.analytics, self.settings.signing_secret)
        result = await self._send_once(request, stop)
        await asyncio.to_thread(record_outcomes, self.ledger.engine, _known_outcomes(result))
        return result

    async def _send_once(self, request: SendRequest, stop: asyncio.Event) -> SendResult:
        sender = self.senders.get(request.channel)
        if sender is None:
            return _failed(request, "none", f"no sender is configured for channel {request.channel!r}")

        previous = await asyncio.to_thread(self.ledger.find, request.message_id)
        if previous is not None and previous.status in _SETTLED:
            return _settled(request, previous)

        checked = await asyncio.to_thread(self._with_stock, request)
        if checked is None:
            skipped = await self._skip(request, sender, OUT_OF_STOCK)
            if skipped is not None:
                return skipped
            # An earlier attempt decided to send and died mid-call: resolve it as sent before.
            checked = request.model_copy(update={"context": {**request.context, "catalog": {}}})
        request = checked

        try:
            message = await asyncio.to_thread(self._render, request)
        except UnknownVersion as exc:
            # The worker's registry lacks a version the API published: a configuration or replication
            # problem, not the customer's. Retried (and alerted on) until the version is there.
            raise ApplicationError(str(exc), type=RETRYABLE_ERROR_TYPE) from None
        except TemplateError as exc:
            return await self._refuse(request, sender, f"template {request.template_name!r} does not render: {exc}")

        claim = await asyncio.to_thread(self.ledger.claim, request, sender.provider)
        if claim.state is ClaimState.DONE:
            return _settled(request, claim.entry)
        if claim.state is ClaimState.IN_DOUBT:
            resolved = await self._resolve_in_doubt(request, claim.entry, sender, message)
            if resolved is not None:
                return resolved
        if stop.is_set():
            # Claimed but not handed over: the message surely did not go out, and may be sent later.
            await asyncio.to_thread(
                self.ledger.mark_deferred, request.message_id, "cancelled before the provider call"
            )
            activity.logger.info("send %s cancelled before the provider call", request.message_id)
            raise asyncio.CancelledError
        return await self._deliver(request, sender, message)

    # -- the catalog at send time -------------------------------------------------------------

    def _with_stock(self, request: SendRequest) -> SendRequest | None:
        """The request as it goes out now: sold-out items dropped (or None: skip it, per the step's
        ``if_out_of_stock``), and the ``catalog`` its template may read, from the database now."""
        skus = advertised_skus(request.context)
        snapshot = load_snapshot(self.ledger.engine, skus) if skus else CatalogSnapshot()
        context = at_send(request.if_out_of_stock, request.context, snapshot, pickup_url=self.settings.pickup_url)
        return None if context is None else request.model_copy(update={"context": context})

    async def _skip(self, request: SendRequest, sender: ChannelSender, reason: str) -> SendResult | None:
        """Settle a message that is not to go out; None when an earlier attempt may have sent it."""
        claim = await asyncio.to_thread(self.ledger.claim, request, sender.provider)
        if claim.state is ClaimState.DONE:
            return _settled(request, claim.entry)
        if claim.state is ClaimState.IN_DOUBT:
            return None
        await asyncio.to_thread(self.ledger.mark_skipped, request.message_id, reason)
        activity.logger.info(
            "send %s (customer %s) skipped: %s", request.message_id, customer_ref(request.customer_id), reason
        )
        return _result(request, "skipped", sender.provider, skip_reason=reason)

    # -- rendering ---------------------------------------------------------------------------

    def _render(self, request: SendRequest) -> RenderedMessage:
        """The template with everything a real send adds to the journey's context."""
        template = request.template or self.versions.template(request.journey_version, request.template_name)
        link: str | None = None
        discount: dict[str, Any] | None = None
        if isinstance(template, EmailTemplate):
            if template.discount_percent:
                discount = self.discounts.issue(
                    customer_id=request.customer_id,
                    message_id=request.message_id,
                    percent=template.discount_percent,
                ).context()
            link = unsubscribe_url(self.settings, request.customer_id, request.message_id)
        context = request_context(request, template, discount=discount, unsubscribe_url=link)
        parts = render_message(template, context, utm=self._utm(request, link),
                               default_locale=self._default_locale(request))
        return RenderedMessage(
            **parts.model_dump(),
            message_id=request.message_id,
            customer_id=request.customer_id,
            journey=request.journey,
            run_id=request.run_id,
            step_id=request.step_id,
            channel=request.channel,
            template_name=request.template_name,
            to=list(request.to),
            categories=list(template.categories) if isinstance(template, EmailTemplate) else [],
            sendgrid_template_id=template.sendgrid_template_id if isinstance(template, EmailTemplate) else None,
            marketing=_marketing(template),
            unsubscribe_url=link,
            content_sid=template.content_sid if isinstance(template, WhatsAppTemplate) else None,
            free_form=request.free_form and isinstance(template, WhatsAppTemplate) and template.body is not None,
            context=context,
        )

    def _default_locale(self, request: SendRequest) -> str:
        """The language of the journey's own template files: what a customer whose locale has no
        variant reads. A request that carries its template has no journey: the default."""
        bundle = None if request.template is not None else self.versions.bundle(request.journey_version)
        return bundle.journey.default_locale if bundle is not None else DEFAULT_LOCALE

    def _utm(self, request: SendRequest, unsubscribe_link: str | None) -> UtmTagger | None:
        """The journey's UTM settings for this message's links; our own links (the unsubscribe link,
        anything under our API) are never tagged. A request that carries its template has no journey
        in the registry (tests, older runs): it gets the defaults."""
        bundle = None if request.template is not None else self.versions.bundle(request.journey_version)
        ours = (unsubscribe_link, f"{self.settings.public_url.rstrip('/')}/v1/")
        return utm_tagger(
            bundle.journey.utm if bundle is not None else Utm(),
            journey=request.journey,
            channel=request.channel,
            step_id=request.step_id,
            variant=request.variant,
            ours=ours,
        )

    # -- ledger -> sender -> ledger ----------------------------------------------------------

    async def _deliver(self, request: SendRequest, sender: ChannelSender, message: RenderedMessage) -> SendResult:
        log = activity.logger
        try:
            delivery = await sender.send(message)
        except RetryableChannelError as exc:
            mark = self.ledger.mark_in_doubt if exc.maybe_delivered else self.ledger.mark_deferred
            await asyncio.to_thread(mark, request.message_id, str(exc))
            if isinstance(exc, ProviderConfigurationError):
                _channel_stopped(request, exc)
                raise _retry(exc) from None
            log.warning(
                "send %s (customer %s) will be retried: %s",
                request.message_id, customer_ref(request.customer_id), redact(exc),
            )
            raise _retry(exc) from None
        except PermanentChannelError as exc:
            await asyncio.to_thread(
                self.ledger.mark_failed,
                request.message_id,
                str(exc),
                revoke_consent=exc.revoke_consent,
                invalid_address=exc.invalid_address,
            )
            log.warning(
                "send %s (customer %s) failed for good: %s",
                request.message_id, customer_ref(request.customer_id), redact(exc),
            )
            return _result(
                request,
                "failed",
                sender.provider,
                error=str(exc),
                revoke_consent=exc.revoke_consent,
                invalid_address=exc.invalid_address,
                dead_push_tokens=exc.dead_push_tokens,
            )
        await asyncio.to_thread(
            self.ledger.mark_sent, request.message_id, delivery.provider, delivery.provider_message_id
        )
        log.info(
            "sent %s %s to customer %s via %s",
            request.channel,
            request.message_id,
            customer_ref(request.customer_id),
            delivery.provider,
        )
        return _sent(request, delivery)

    async def _resolve_in_doubt(
        self, request: SendRequest, entry: LedgerEntry, sender: ChannelSender, message: RenderedMessage
    ) -> SendResult | None:
        """An earlier attempt died mid-call. A result when settled; None when it is safe to send."""
        if entry.evidence:  # a provider webhook already proved acceptance
            await asyncio.to_thread(self.ledger.mark_sent, entry.message_id, entry.provider, entry.provider_message_id)
            return _already_sent(request, entry.provider, entry.provider_message_id)
        running_for = datetime.now(UTC) - entry.claimed_at
        if running_for < self.attempt_timeout:
            # Temporal starts a new attempt when the old one times out, not when it stops: the
            # earlier one may still be talking to the provider. Ask again once it surely ended.
            raise ApplicationError(
                f"send {entry.message_id} may still be in progress in an earlier attempt",
                type=RETRYABLE_ERROR_TYPE,
                next_retry_delay=max(self.attempt_timeout - running_for, timedelta(seconds=1)),
            )
        if isinstance(sender, SupportsLookup) and entry.provider == sender.provider:
            try:
                found = await sender.lookup(message)
            except RetryableChannelError as exc:
                raise _retry(exc) from None
            if found is not None:
                await asyncio.to_thread(
                    self.ledger.mark_sent, entry.message_id, found.provider, found.provider_message_id
                )
                return _already_sent(request, found.provider, found.provider_message_id)
            if await asyncio.to_thread(self.ledger.reclaim, entry, sender.provider):
                activity.logger.info(
                    "send %s was never accepted by %s: sending it now", entry.message_id, sender.provider
                )
                return None
            raise ApplicationError(
                f"send {entry.message_id} changed hands while it was being checked", type=RETRYABLE_ERROR_TYPE
            )
        reason = (
            f"unconfirmed: an earlier attempt through {entry.provider} ended without an answer and "
            "the provider cannot be asked; not sent again (at most once)"
        )
        await asyncio.to_thread(self.ledger.mark_unconfirmed, entry.message_id, reason)
        activity.logger.warning(
            "send %s (customer %s) is %s", entry.message_id, customer_ref(entry.customer_id), reason
        )
        return _already_sent(request, entry.provider, entry.provider_message_id, error=reason)

    async def _refuse(self, request: SendRequest, sender: ChannelSender, error: str) -> SendResult:
        """A send that cannot work (its template does not render): recorded as failed, not retried."""
        claim = await asyncio.to_thread(self.ledger.claim, request, sender.provider)
        if claim.state is not ClaimState.SEND:
            return _settled(request, claim.entry)
        await asyncio.to_thread(self.ledger.mark_failed, request.message_id, error)
        activity.logger.error(
            "send %s (customer %s) refused: %s", request.message_id, customer_ref(request.customer_id), redact(error)
        )
        return _failed(request, sender.provider, error)


_SETTLED = (LedgerStatus.SENT, LedgerStatus.FAILED, LedgerStatus.UNCONFIRMED, LedgerStatus.SKIPPED)


def _marketing(template: Any) -> bool:
    """A marketing SMS gets an opt-out line; a WhatsApp template's Meta category says the same."""
    if isinstance(template, SmsTemplate):
        return template.marketing
    return isinstance(template, WhatsAppTemplate) and template.category == "marketing"

ACCEPTANCE_IS_DELIVERY = frozenset({"outbox", "fcm"})
"""Providers whose acceptance is the last we hear of a message, so it counts as delivered for
analytics: the dev outbox (the file is the recipient), FCM (no delivery receipts over its HTTP API)."""


def _known_outcomes(result: SendResult) -> list[MessageOutcomeRow]:
    """What the send itself tells analytics: failed for good, or delivered where acceptance is all
    we will hear. The same row on every attempt, so a retry after a crash stores it once."""
    now = datetime.now(UTC)
    if result.outcome == "failed":
        return [outcome(result.message_id, "failed", now, SEND_FAILED, channel=result.channel)]
    confirmed = result.outcome == "sent" or result.error is None  # an unconfirmed send is no delivery
    if confirmed and result.provider in ACCEPTANCE_IS_DELIVERY:
        return [outcome(result.message_id, "delivered", now, CHANNEL_ACCEPTED, channel=result.channel)]
    return []

HEARTBEAT_EVERY = timedelta(seconds=1)
"""How often a running send heartbeats. The SDK throttles what it sends to the server (see the
worker's ``max_heartbeat_throttle_interval``), so this only bounds how soon a cancellation is heard."""


async def _heartbeat_until(work: asyncio.Task[SendResult]) -> None:
    while not work.done():
        activity.heartbeat()
        await asyncio.sleep(HEARTBEAT_EVERY.total_seconds())


def _channel_stopped(request: SendRequest, exc: ProviderConfigurationError) -> None:
    """Make a provider's refusal of our configuration loud: every message of the channel waits.

    An ERROR log line (no personal data: the text names settings and codes) and the counter
    ``omnicart_channel_configuration_errors{channel, provider}``, for an operator's alert; the
    message itself is retried slowly, neither failed nor moved to another channel.
    """
    activity.logger.error(
        "%s channel stopped: %s refused our configuration; message %s waits: %s",
        request.channel, exc.provider, request.message_id, redact(exc),
    )
    activity.metric_meter().create_counter(
        "omnicart_channel_configuration_errors",
        "Send attempts refused by a provider because of our own configuration (credentials, sender, project)",
        "attempts",
    ).add(1, {"channel": request.channel, "provider": exc.provider})


def _retry(exc: RetryableChannelError) -> ApplicationError:
    delay = None
    if exc.retry_after is not None:
        delay = min(timedelta(seconds=max(exc.retry_after, 1.0)), MAX_RETRY_AFTER)
    return ApplicationError(str(exc), type=RETRYABLE_ERROR_TYPE, next_retry_delay=delay)


def _settled(request: SendRequest, entry: LedgerEntry) -> SendResult:
    """What an earlier attempt's outcome means to the journey now."""
    if entry.status == LedgerStatus.SKIPPED:
        return _result(request, "skipped", entry.provider, skip_reason=entry.error)
    if entry.status == LedgerStatus.FAILED:
        return _result(
            request,
            "failed",
            entry.provider,
            error=entry.error,
            revoke_consent=entry.revoke_consent,
            invalid_address=entry.invalid_address,
        )
    error = entry.error if entry.status == LedgerStatus.UNCONFIRMED else None
    return _already_sent(request, entry.provider, entry.provider_message_id, error=error)


def _sent(request: SendRequest, delivery: Delivery) -> SendResult:
    return _result(
        request,
        "sent",
        delivery.provider,
        provider_message_id=delivery.provider_message_id,
        segments=delivery.segments,
        dead_push_tokens=list(delivery.dead_push_tokens),
    )


def _already_sent(
    request: SendRequest, provider: str, provider_message_id: str | None, error: str | None = None
) -> SendResult:
    return _result(request, "already_sent", provider, provider_message_id=provider_message_id, error=error)


def _failed(request: SendRequest, provider: str, error: str) -> SendResult:
    return _result(request, "failed", provider, error=error)


def _result(request: SendRequest, outcome: Outcome, provider: str, **details: Any) -> SendResult:
    return SendResult(
        message_id=request.message_id, channel=request.channel, outcome=outcome, provider=provider, **details
    )
