"""The contract every channel implements: deliver one rendered message, or say why not.

A channel never decides whether a message should be sent (consent, quiet hours, duplicates): the
journey and the message ledger do. It only speaks one provider's protocol and classifies failures,
so that a retry is safe and a permanent failure can move the journey to its fallback channel.
"""

from __future__ import annotations

from typing import Any, Protocol

from pydantic import BaseModel, Field

from omnicart.events import Channel


class RenderedMessage(BaseModel):
    """A message after its template was rendered: ready for a provider."""

    message_id: str
    customer_id: str
    journey: str
    run_id: str
    step_id: str
    channel: Channel
    template_name: str
    to: list[str]
    subject: str | None = None
    preheader: str | None = None
    html: str | None = None
    text: str | None = None
    body: str | None = None
    title: str | None = None
    url: str | None = None
    image_url: str | None = None
    categories: list[str] = Field(default_factory=list)
    sendgrid_template_id: str | None = None
    marketing: bool = False
    context: dict[str, Any] = Field(default_factory=dict)


class Delivery(BaseModel):
    """The provider accepted the message."""

    provider: str
    provider_message_id: str | None = None
    segments: int | None = None
    dead_push_tokens: list[str] = Field(default_factory=list)


class RetryableChannelError(Exception):
    """Try again later: a timeout, a 429 (with ``retry_after`` seconds when the provider said) or a 5xx."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentChannelError(Exception):
    """Retrying cannot help: invalid address, unsubscribed recipient, rejected request."""

    def __init__(self, message: str, *, revoke_consent: bool = False, invalid_address: bool = False) -> None:
        super().__init__(message)
        self.revoke_consent = revoke_consent
        self.invalid_address = invalid_address


class ChannelSender(Protocol):
    """One provider for one channel."""

    provider: str

    async def send(self, message: RenderedMessage) -> Delivery: ...
