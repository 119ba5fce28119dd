"""The event envelope: the one shape every shop system, app and provider webhook speaks to us in.

The envelope is strict where a mistake would silently lose data (unknown top-level keys, a timestamp
without an offset, a malformed phone number) and open where shops need room (any extra property is
kept and usable in conditions and templates).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)
from pydantic_core import ErrorDetails, InitErrorDetails, PydanticCustomError

from omnicart import limits
from omnicart.plan import default_plan
from omnicart.plan import problems as plan_problems

Source = Literal["web", "app", "store", "email", "sms", "push", "api", "whatsapp"]
Channel = Literal["email", "sms", "push", "whatsapp"]
CHANNELS: tuple[Channel, ...] = ("email", "sms", "push", "whatsapp")

ANONYMOUS_PREFIX = "anon:"
"""Customer ids starting so are the product's own: a visitor known only by an anonymous id
(``omnicart.identity``). A producer names such a visitor with ``anonymous_id`` instead."""

E164 = re.compile(r"^\+[1-9]\d{6,14}$")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class Event(BaseModel):
    """One thing that happened to one customer, as the producer saw it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1, max_length=limits.MAX_ID_CHARS)
    type: str = Field(pattern=r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$", max_length=100)
    customer_id: str = Field(default="", max_length=limits.MAX_ID_CHARS)  # the plan says which types require it
    # A cookie, a device or Segment's anonymousId: a customer event names a customer_id, an anonymous_id or
    # both (both links the two: ``docs/IDENTITY.md``).
    anonymous_id: str = Field(default="", max_length=limits.MAX_ID_CHARS)
    timestamp: AwareDatetime
    source: Source
    properties: dict[str, Any] = Field(default_factory=dict)

    @field_validator("timestamp")
    @classmethod
    def _in_utc(cls, value: datetime) -> datetime:
        """Kept in UTC: one zone makes every comparison exact and cheap; local time comes from the
        customer's profile, never from the producer's offset."""
        try:
            return value.astimezone(UTC)
        except OverflowError:  # 0001-01-01T00:00:00+00:01 is before the calendar's first moment in UTC
            raise ValueError("is outside the calendar's range once converted to UTC") from None

    @classmethod
    def parse(cls, data: Any, max_event_bytes: int = limits.MAX_EVENT_BYTES) -> Event:
        """Validate an envelope at the door: its limits (``omnicart.limits``), its shape and, for the
        types the product understands, its properties.

        Every way in (the API, provider webhooks, ``omnicart simulate``) comes through here, so what
        one accepts the worker can always decode and run. The type must be declared in the tracking
        plan (``omnicart.plan``) and the properties must fit its schema and the limits. Property
        errors are reported at ``properties.<field>`` so that the producer sees exactly which field
        to fix; undeclared property names are allowed and kept.
        """
        violations = limits.check_json(data)
        if violations:
            raise _invalid([_violation(v.loc, v.message) for v in violations])
        event = cls.model_validate(data)
        errors: list[InitErrorDetails] = []
        if not limits.in_time_range(event.timestamp):
            errors.append(_violation(("timestamp",), _TIME_RANGE))
        found = plan_problems(default_plan(), event.type, event.customer_id, event.properties, event.anonymous_id)
        errors += [_plan_error(*problem) for problem in found]
        if event.customer_id.startswith(ANONYMOUS_PREFIX):
            errors.append(_violation(("customer_id",), f"must not start with {ANONYMOUS_PREFIX!r}: that names an "
                                     "anonymous visitor; send the visitor's id as anonymous_id"))
        if errors:
            raise _invalid(errors)
        size = len(event.model_dump_json())
        if size > max_event_bytes:
            raise _invalid(
                [
                    _violation(
                        (),
                        f"the event is {size:,} bytes as JSON; the limit is {max_event_bytes:,} "
                        "(OMNICART_MAX_EVENT_BYTES): send less in properties",
                    )
                ]
            )
        return event

    def context(self) -> dict[str, Any]:
        """The event as conditions and templates see it (JSON-like, timestamps as RFC 3339)."""
        return {
            "id": self.id,
            "type": self.type,
            "customer_id": self.customer_id,
            "timestamp": self.timestamp.isoformat(),
            "source": self.source,
            "properties": self.properties,
        }


_TIME_RANGE = (
    f"must be between {limits.EARLIEST_TIMESTAMP:%Y-%m-%d} and {limits.LATEST_TIMESTAMP:%Y-%m-%d} (UTC)"
)


def _invalid(errors: list[InitErrorDetails]) -> ValidationError:
    return ValidationError.from_exception_data("Event", errors)


def _violation(loc: tuple[str | int, ...], message: str) -> InitErrorDetails:
    """A broken limit as a pydantic error, so it reads like every other validation error."""
    return {"type": PydanticCustomError("limit", message), "loc": loc, "input": None}


def _prefixed(error: Any) -> InitErrorDetails:
    details: InitErrorDetails = {
        "type": error["type"],
        "loc": ("properties", *error["loc"]),
        "input": error.get("input"),
    }
    if "ctx" in error:
        details["ctx"] = error["ctx"]
    return details


def _plan_error(field: str, message: str) -> InitErrorDetails:
    return {"type": PydanticCustomError("tracking_plan", message), "loc": (field,), "input": None}


class _Properties(BaseModel):
    # No "inf"/"NaN" strings read as prices either: the raw string would reach the money filter.
    model_config = ConfigDict(extra="allow", allow_inf_nan=False)


class Consent(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: bool | None = None
    sms: bool | None = None
    push: bool | None = None


# Known short fields get tighter limits than limits.MAX_STRING_CHARS (see there for why each).
IdText = Annotated[str, Field(min_length=1, max_length=limits.MAX_ID_CHARS)]
UrlText = Annotated[str, Field(max_length=limits.MAX_URL_CHARS)]
NameText = Annotated[str, Field(max_length=limits.MAX_NAME_CHARS)]
ShortText = Annotated[str, Field(max_length=limits.MAX_SHORT_CHARS)]


class CustomerUpdated(_Properties):
    email: str | None = Field(default=None, max_length=limits.MAX_EMAIL_CHARS)
    phone: str | None = Field(default=None, max_length=limits.MAX_PHONE_CHARS)
    timezone: ShortText | None = None
    locale: ShortText | None = None
    first_name: NameText | None = None
    consent: Consent | None = None
    push_tokens: list[UrlText] | None = Field(default=None, max_length=limits.MAX_PUSH_TOKENS)

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        if value is not None and value != "" and not EMAIL.match(value):
            raise ValueError("is not an email address")
        return value

    @field_validator("phone")
    @classmethod
    def _phone(cls, value: str | None) -> str | None:
        if value is not None and value != "" and not E164.match(value):
            raise ValueError("must be an E.164 phone number such as +14155550100")
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError, OSError):  # "America" is a directory
                raise ValueError(f"unknown IANA time zone {value!r}") from None
        return value


class Item(_Properties):
    sku: IdText
    name: NameText | None = None
    quantity: int = Field(default=1, ge=0)
    price: float | None = Field(default=None, ge=0)
    image_url: UrlText | None = None
    url: UrlText | None = None


class CartUpdated(_Properties):
    cart_id: IdText
    items: list[Item] = Field(default_factory=list)
    total: float | None = Field(default=None, ge=0)
    currency: str | None = Field(default=None, pattern=r"^[A-Z]{3}$")
    restore_url: UrlText | None = None


class CheckoutStarted(CartUpdated):
    checkout_id: IdText | None = None


class OrderPlaced(_Properties):
    order_id: IdText
    cart_id: IdText | None = None
    items: list[Item] = Field(default_factory=list)
    total: float | None = Field(default=None, ge=0)
    currency: str | None = Field(default=None, pattern=r"^[A-Z]{3}$")
    store_id: ShortText | None = None


class ProductViewed(_Properties):
    sku: IdText
    name: NameText | None = None
    price: float | None = Field(default=None, ge=0)
    url: UrlText | None = None
    image_url: UrlText | None = None


class MessageEvent(_Properties):
    channel: Channel
    message_id: IdText
    journey: IdText | None = None


class ConsentChanged(_Properties):
    channel: Channel
    granted: bool


MESSAGE_EVENT_TYPES = (
    "message_delivered",
    "message_opened",
    "message_clicked",
    "message_bounced",
    "message_failed",
)

PROPERTY_MODELS: dict[str, type[BaseModel]] = {
    "customer_updated": CustomerUpdated,
    "cart_updated": CartUpdated,
    "checkout_started": CheckoutStarted,
    "order_placed": OrderPlaced,
    "product_viewed": ProductViewed,
    "consent_changed": ConsentChanged,
    **{name: MessageEvent for name in MESSAGE_EVENT_TYPES},
}

KNOWN_EVENT_TYPES: tuple[str, ...] = tuple(PROPERTY_MODELS)


_FRIENDLY = {
    "missing": "is required",
    "extra_forbidden": "unknown key: an envelope has id, type, customer_id, anonymous_id, timestamp, source "
    "and properties; put anything else under properties",
    "timezone_aware": "needs an offset, e.g. 2026-11-22T10:00:00+03:00 or 2026-11-22T07:00:00Z",
}


def describe_error(error: ErrorDetails) -> tuple[str, str]:
    """One validation error as a producer reads it: the field (``properties.items[0].price``) and
    what is wrong with it. The API's 422 and ``omnicart simulate`` both say it this way."""
    loc = error["loc"]
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else part)
    if error["type"] == "string_pattern_mismatch" and loc == ("type",):
        message = "must be a snake_case name such as checkout_started"
    else:
        message = _FRIENDLY.get(error["type"], error["msg"].removeprefix("Value error, "))
    # Escaped, because the answer must itself encode as UTF-8 whatever the producer sent.
    return limits.safe_text(path or "envelope"), limits.safe_text(message)


def event_sort_key(event: Event) -> tuple[datetime, str]:
    """Timestamp order, ties broken by id, so that replays of one timeline are repeatable."""
    return (event.timestamp, event.id)
