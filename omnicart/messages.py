"""What crosses the boundary between a journey and a channel: a send request and its outcome.

The journey (inside a deterministic workflow) decides *that* a message goes out and to whom; the
send activity decides *how* (outbox, SendGrid, Twilio, FCM) and reports back. Keeping this contract
small is what lets a channel change without a journey noticing.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from temporalio.common import RetryPolicy

from omnicart.analytics.rows import JourneyActionRow
from omnicart.events import Channel
from omnicart.journey.model import DEFAULT_IF_OUT_OF_STOCK, OutOfStockPolicy, Template

SEND_START_TO_CLOSE = timedelta(seconds=60)
"""Longer than any sender's own HTTP timeout (SendGrid: 20 s), so a live attempt records its outcome."""

SEND_HEARTBEAT_TIMEOUT = timedelta(seconds=20)
"""A send attempt heartbeats while it works, so a dead worker is noticed within this (not after the
whole start-to-close), and a run that exits can cancel a send that has not reached the provider yet."""

NON_RETRYABLE_SEND_ERRORS = [
    "AssertionError",
    "AttributeError",
    "IndexError",
    "KeyError",
    "NameError",
    "NotImplementedError",
    "RecursionError",
    "TypeError",
    "UnicodeError",
    "UnicodeEncodeError",
    "ValidationError",
]
"""Errors that are bugs or bad data, not outages: retrying cannot help, so the send fails for good
(the journey moves to the step's fallback) instead of retrying for ever."""

SEND_RETRY_POLICY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=10),
    maximum_attempts=0,  # unlimited: an outage delays a message, it never drops it
    non_retryable_error_types=NON_RETRYABLE_SEND_ERRORS,
)
"""How the workflow retries the send activity; the activity relies on the same start-to-close.

Provider outages (timeouts, 429, 5xx) retry without limit, with backoff capped at ten minutes; the
activity logs and counts attempts past ``send_retry_alert_attempts`` so an operator can alert on them.
"""


class SendRequest(BaseModel):
    """One message a journey wants delivered.

    ``message_id`` is derived from (customer, run, step, visit), never from an attempt, so every
    retry of the same send carries the same id and the channel can refuse to send it twice.
    """

    model_config = ConfigDict(frozen=True)

    message_id: str
    customer_id: str
    journey: str
    journey_version: str
    run_id: str
    step_id: str
    channel: Channel
    template_name: str
    template: Template | None = Field(
        default=None,
        description="The template itself only when the journey is not in the registry (tests, older runs); "
        "otherwise the activity reads it by journey_version and template_name.",
    )
    to: list[str] = Field(description="Email address, E.164 phone number, or the device tokens for push.")
    context: dict[str, Any] = Field(description="What the template renders with: customer, cart, trigger, ...")
    variant: str | None = Field(
        default=None, description="The run's split variant, if any: its links' utm_content ends in -<variant>."
    )
    if_out_of_stock: OutOfStockPolicy = Field(
        default=DEFAULT_IF_OUT_OF_STOCK,
        description="The send step's choice when what the message advertises sold out (checked at send time).",
    )
    analytics: list[JourneyActionRow] = Field(
        default_factory=list,
        description="The journey's analytics rows since its last report: the send activity stores them first, "
        "so a send carries them at no extra activity.",
    )
    free_form: bool = Field(
        default=False,
        description="WhatsApp: the journey found the customer's 24-hour window open, so the template's free "
        "text goes out instead of the approved Content template.",
    )


Outcome = Literal["sent", "already_sent", "failed", "skipped"]


class SendResult(BaseModel):
    """What happened to a send, as far as the journey needs to know.

    A retryable problem (timeout, 429, 5xx) never shows up here: the activity raises and Temporal
    retries it. ``failed`` means permanently failed for this channel, so the journey moves to the
    step's next fallback channel and applies the profile changes the provider taught us.
    ``skipped`` means the send chose not to go out (``skip_reason``: what it advertises sold out):
    no other channel would do better, so nothing follows.
    """

    message_id: str
    channel: Channel
    outcome: Outcome
    provider: str
    provider_message_id: str | None = None
    error: str | None = None
    revoke_consent: bool = Field(default=False, description="The provider says this recipient opted out.")
    invalid_address: bool = Field(default=False, description="The provider says the address cannot receive.")
    dead_push_tokens: list[str] = Field(default_factory=list, description="Tokens to drop from the profile.")
    segments: int | None = Field(default=None, description="SMS segments billed, when the channel is SMS.")
    skip_reason: str | None = Field(
        default=None,
        description="Why a 'skipped' message did not go out (out_of_stock): no fallback is tried, no cap is used.",
    )
