"""The contract every channel implements: deliver one rendered message, or say why not.

A channel never decides whether a message should be sent (consent, quiet hours, duplicates): the
journey and the message ledger do. It only speaks one provider's protocol and classifies failures,
so that a retry is safe and a permanent failure can move the journey to its fallback channel.

A sender that can ask its provider "did you already accept this message?" also implements
``lookup`` (see ``SupportsLookup``). The send activity uses it only in the rare case where a previous
attempt died after calling the provider and before recording the answer: with ``lookup`` that case
is resolved exactly; without it the ledger must assume the worst (see ``omnicart/ledger.py``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from omnicart.events import Channel
from omnicart.journey.templates import RenderedParts


class RenderedMessage(RenderedParts):
    """A message after its template was rendered (its parts), addressed and ready for a provider."""

    model_config = ConfigDict(frozen=False)

    message_id: str
    customer_id: str
    journey: str
    run_id: str
    step_id: str
    channel: Channel
    template_name: str
    to: list[str]
    categories: list[str] = Field(default_factory=list)
    sendgrid_template_id: str | None = None
    marketing: bool = False
    unsubscribe_url: str | None = Field(default=None, description="Signed one-click unsubscribe link (email).")
    content_sid: str | None = Field(default=None, description="WhatsApp: the approved Content template.")
    free_form: bool = Field(default=False, description="WhatsApp: send ``body`` as free text (window open).")
    context: dict[str, Any] = Field(default_factory=dict)


class Delivery(BaseModel):
    """The provider accepted the message."""

    provider: str
    provider_message_id: str | None = None
    segments: int | None = None
    dead_push_tokens: list[str] = Field(default_factory=list)


class RetryableChannelError(Exception):
    """Try again later: a timeout, a 429 (with ``retry_after`` seconds when the provider said) or a 5xx.

    ``maybe_delivered`` is true when the request may have reached the provider and been accepted even
    though we saw no answer (a read timeout after the request was written, a connection dropped
    mid-response). The ledger then keeps the message "in doubt" instead of free to send again, so
    the next attempt asks before it sends.
    """

    def __init__(self, message: str, retry_after: float | None = None, *, maybe_delivered: bool = False) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.maybe_delivered = maybe_delivered


CONFIGURATION_ERROR_PREFIX = "provider configuration refused: "
"""How a configuration error's text begins, in the ledger too: ``GET /healthz/channels`` finds it."""
CONFIGURATION_RETRY_AFTER = 300.0
"""Seconds between attempts while a provider refuses our configuration: an operator must act first."""


class ProviderConfigurationError(RetryableChannelError):
    """The provider refused *our* configuration (credentials, sender, project), not the customer.

    Every message on the channel would fail the same way until an operator fixes a setting, so it
    is neither blamed on the customer (no address marked, no consent changed) nor treated as a
    failure of this one message (no fallback to another channel, nothing dropped): the message
    waits and is retried slowly, and the send activity makes the stop loud (an ERROR log line and
    the ``omnicart_channel_configuration_errors`` metric, see ``activities/send.py``).
    """

    def __init__(self, provider: str, message: str, retry_after: float = CONFIGURATION_RETRY_AFTER) -> None:
        super().__init__(f"{CONFIGURATION_ERROR_PREFIX}{message}", retry_after=retry_after)
        self.provider = provider


class PermanentChannelError(Exception):
    """Retrying cannot help: invalid address, unsubscribed recipient, rejected request."""

    def __init__(
        self,
        message: str,
        *,
        revoke_consent: bool = False,
        invalid_address: bool = False,
        dead_push_tokens: list[str] | None = None,
    ) -> None:
        super().__init__(message)
        self.revoke_consent = revoke_consent
        self.invalid_address = invalid_address
        self.dead_push_tokens = list(dead_push_tokens or [])


class ChannelSender(Protocol):
    """One provider for one channel."""

    provider: str

    async def send(self, message: RenderedMessage) -> Delivery: ...


@runtime_checkable
class SupportsLookup(Protocol):
    """Optional: a sender whose provider can say whether it already accepted a message.

    Return the ``Delivery`` when the provider has the message (matched by ``message.message_id``,
    which senders pass to the provider), ``None`` only when the provider is authoritative that it
    never accepted it, and raise ``RetryableChannelError`` when it cannot tell right now.
    """

    async def lookup(self, message: RenderedMessage) -> Delivery | None: ...


def mask_address(address: str) -> str:
    """An address as it may appear on a console or in a log: enough to tell two apart, not to contact.

    ``jane.doe@example.com`` -> ``j***@e***.com``; ``+14155550100`` -> ``+1******0100``; a push token
    keeps its first 6 characters.
    """
    if "@" in address:
        local, _, domain = address.rpartition("@")
        host, dot, tld = domain.rpartition(".")
        masked_domain = f"{host[:1]}***{dot}{tld}" if dot else f"{domain[:1]}***"
        return f"{local[:1]}***@{masked_domain}"
    if address.startswith("+") and address[1:].isdigit():
        return address[:2] + "*" * max(len(address) - 6, 0) + address[-4:]
    return f"{address[:6]}…" if len(address) > 6 else "***"


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """``Retry-After`` as seconds to wait: a number of seconds or an HTTP date (RFC 9110)."""
    if value is None or not str(value).strip():
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(str(value))
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
