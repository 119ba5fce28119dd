"""The journey language: what a marketer may write in a file under ``journeys/``.

These models are the single definition of the language. The loader parses YAML into them, the
validator adds the checks a schema cannot express (step references, conditions, templates),
``omnicart schema`` prints their JSON Schema for editors, and a run snapshots a validated
``JourneyBundle`` so that editing a file never changes a journey that is already under way.
"""

from __future__ import annotations

import hashlib
import json
from functools import cached_property
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from omnicart.channels.categories import check_template_categories
from omnicart.events import Channel
from omnicart.journey.durations import DURATION_PATTERN, LOCAL_TIME_PATTERN

Duration = Annotated[
    str,
    Field(pattern=DURATION_PATTERN, description="A duration such as 30m, 1h, 1h30m, 2d or 1w."),
]
LocalTime = Annotated[
    str, Field(pattern=LOCAL_TIME_PATTERN, description="A 24-hour time of day, HH:MM, in the customer's zone.")
]
Expression = Annotated[
    str,
    Field(
        min_length=1,
        description=(
            "A CEL expression over customer, trigger, event, events, engagement and cart, "
            "e.g. customer.consent.sms && trigger.properties.total > 50.0"
        ),
    ),
]
StepId = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$", description="A step's id: lower_snake_case.")]
Percent = Annotated[
    str,
    Field(pattern=r"^(100|[0-9]{1,2})(\.[0-9]+)?%$", description="A share of customers such as 10% or 2.5%."),
]
VariantName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$", description="A variant's name: lower_snake_case.")]
Category = Literal["marketing", "transactional"]
EventType = Annotated[str, Field(pattern=r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$", description="An event type.")]


LOCALE_TAG = r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*$"
"""A locale as a template's file name or a journey's ``default_locale`` writes it: BCP 47 (``tr``,
``fa-IR``, ``zh-Hant-TW``); an underscore (``fa_IR``, as POSIX writes it) is read as a hyphen."""
LocaleTag = Annotated[str, Field(pattern=LOCALE_TAG, max_length=35, description="A BCP 47 locale: tr, fa-IR.")]
DEFAULT_LOCALE = "en"
"""The language of a journey's templates when the journey does not say (``default_locale``)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


DATE_REACHED = "date_reached"
"""The synthetic event a date-based trigger delivers (``omnicart.engine.date_triggers``)."""

DateName = Annotated[
    str,
    Field(pattern=r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$", max_length=64,
          description="A date of the customer profile, e.g. birthday or subscription_renews_on."),
]


class AfterEvent(_Strict):
    """``after: {event: order_placed, days: 60}``: when this long has passed since the customer's
    LAST event of this type; a newer one restarts the clock (and ends a run it started)."""

    event: EventType
    days: int = Field(ge=1, le=3660, description="Whole days after the last such event.")


class Trigger(_Strict):
    """What starts a run: an event (``event``), or a time (``after`` an event, ``on_date`` of the
    profile), for whom, and what a second trigger for the same key does."""

    event: EventType | None = Field(default=None, description="The event type that starts a run.")
    after: AfterEvent | None = Field(
        default=None, description="Start when this many days have passed since the customer's last such event."
    )
    on_date: DateName | None = Field(
        default=None, description="Start on this date of the customer's profile (birthday: every year)."
    )
    at: LocalTime | None = Field(
        default=None,
        description="With after/on_date: the time of day, on the customer's clock, the run starts "
        "(default: on_date at 00:00; after at the very moment the days are over).",
    )
    yearly: bool | None = Field(
        default=None,
        description="With on_date: every year on the date's month and day (default: yes for birthday and "
        "for dates without a year, once on the date itself otherwise).",
    )
    if_: Expression | None = Field(default=None, alias="if")
    key: str | None = Field(
        default=None,
        description="A property of the trigger event; at most one run per value at a time (e.g. cart_id).",
    )
    on_retrigger: Literal["ignore", "restart"] = Field(
        default="ignore",
        description="ignore: keep the running run; restart: exit it (reason 'restarted') and start anew.",
    )
    max_age: Duration | None = Field(
        default=None,
        description="Start no run from an event older than this when it arrives (a backfill, an outage).",
    )
    once: bool = Field(
        default=False,
        description="At most one run per customer, ever (a welcome): once a run has started, no later trigger, "
        "nor an anonymous session merged in, starts another.",
    )

    @model_validator(mode="after")
    def _one_start(self) -> Trigger:
        given = [name for name in ("event", "after", "on_date") if getattr(self, name) is not None]
        if len(given) != 1:
            found = ", ".join(given) if given else "none"
            raise ValueError(f"a trigger needs exactly one of event, after or on_date (found: {found})")
        if self.event is not None and (self.at is not None or self.yearly is not None):
            raise ValueError("'at' and 'yearly' belong to a date trigger (after or on_date), not to 'event'")
        if self.after is not None and self.yearly is not None:
            raise ValueError("'yearly' belongs to on_date: an 'after' trigger restarts with each new event")
        if self.event is None and self.key is not None:
            raise ValueError("a date trigger has no 'key': it starts at most one run per customer at a time")
        return self

    @property
    def event_type(self) -> str:
        """The type of the event that starts a run: ``event``, or ``date_reached`` for a date trigger."""
        return self.event if self.event is not None else DATE_REACHED

    @property
    def is_date(self) -> bool:
        return self.event is None

    def describe(self) -> str:
        """How the trigger reads in listings: ``order_placed``, ``60 days after order_placed``, ``birthday``."""
        at = f" at {self.at}" if self.at else ""
        if self.after is not None:
            return f"{self.after.days} days after {self.after.event}{at}"
        if self.on_date is not None:
            return f"{self.on_date}{at}"
        return self.event_type


class ExitWhen(_Strict):
    """An event that ends a run at once, whatever step it is waiting in."""

    event: EventType
    if_: Expression | None = Field(default=None, alias="if")
    reason: str | None = Field(default=None, description="Defaults to the event type.")


class Goal(_Strict):
    """The conversion a journey is for; counted once per run when it comes within the window."""

    event: EventType
    if_: Expression | None = Field(default=None, alias="if")
    within: Duration = Field(description="How long after the trigger a goal event still counts.")
    value: Expression | None = Field(default=None, description="The conversion's value, e.g. event.properties.total")
    currency: Expression | None = Field(
        default=None,
        description="The value's ISO 4217 currency; defaults to event.properties.currency. Revenue is never "
        "summed across currencies.",
    )
    after: StepId | None = Field(
        default=None,
        description="Count only conversions after the run reached this step; the window starts there "
        "(e.g. a win-back's offer, not its 60-day wait).",
    )
    attribution: Literal["last_touch", "trigger"] = Field(
        default="last_touch",
        description="last_touch: credit the last message the run sent before the conversion; trigger: "
        "credit the journey's entry.",
    )


class QuietHours(_Strict):
    """A nightly window, in the customer's own time zone, during which a channel holds its messages."""

    start: LocalTime
    end: LocalTime


class WaitSpec(_Strict):
    """A wait written as a mapping: until a time after the trigger, or until a local time of day."""

    after_trigger: Duration | None = Field(default=None, description="Wait until this long after the trigger.")
    until: LocalTime | None = Field(
        default=None, description="Wait until the next time the customer's clock shows this time."
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> WaitSpec:
        if (self.after_trigger is None) == (self.until is None):
            raise ValueError("a wait needs exactly one of 'after_trigger' or 'until'")
        return self


OutOfStockPolicy = Literal["skip", "drop_items", "send"]
"""What a send does when what its message advertises sold out (``SendSpec.if_out_of_stock``)."""

DEFAULT_IF_OUT_OF_STOCK: OutOfStockPolicy = "drop_items"
"""A send step without ``if_out_of_stock``: sold-out items leave the message, which is skipped when
nothing is left (``omnicart.catalog.availability`` decides). A sku the catalog has never heard of
is in stock, so shops that send no catalog events see no change."""


class Fallback(_Strict):
    """Another channel to try when the one before it has no consent, no address or fails for good."""

    channel: Channel | None = None
    template: str


class SendSpec(_Strict):
    """Send one message; skipped, with a reason, when the customer cannot or should not get it."""

    channel: Channel | None = Field(default=None, description="Checked against the template's channel.")
    template: str
    fallback: list[Fallback] = Field(default_factory=list)
    skip_if: Expression | None = None
    skip_reason: str | None = Field(default=None, description="Defaults to 'skip_if'.")
    when_capped: Literal["skip", "hold"] | None = Field(
        default=None, description="What a frequency cap does to this message; defaults to the cap's own choice."
    )
    late_after: Duration | None = Field(
        default=None,
        description="Skip (reason 'too_late') instead of sending when the message is due this much later "
        "than planned, e.g. after importing old events or an outage. Unset: never too late.",
    )
    if_out_of_stock: OutOfStockPolicy | None = Field(
        default=None,
        description="Checked by the send just before the message goes out, on the stock of the skus it "
        "advertises (its cart's items, the trigger's sku): 'drop_items' (the default) leaves sold-out items out "
        "and skips a message with nothing left (reason 'out_of_stock'); 'skip' skips it if any is sold out; "
        "'send' sends it as it is. A sku the catalog has never heard of is in stock.",
    )


class SplitVariant(_Strict):
    """One arm of an experiment: its share of customers and where its branch of steps begins."""

    weight: float = Field(gt=0, description="Relative weight, e.g. 50 (weights need not sum to 100).")
    goto: StepId | None = Field(default=None, description="Defaults to the next step.")


class SplitSpec(_Strict):
    """An A/B(/n) experiment: each customer is assigned one variant, for good, at first exposure."""

    experiment: str | None = Field(
        default=None,
        pattern=r"^[a-z][a-z0-9_]*$",
        description="The experiment's name (defaults to <journey>_<step>); assignment hashes it with the customer.",
    )
    variants: dict[VariantName, SplitVariant] = Field(min_length=2)
    minimum_detectable_effect: Percent = Field(
        default="2%",
        description="The smallest absolute change in conversion rate worth detecting, set before the test "
        "starts: it fixes the sample each arm needs before the report gives a verdict.",
    )
    baseline_conversion: Percent = Field(
        default="5%", description="The conversion rate expected without the change, for the sample size."
    )


class WaitForSpec(_Strict):
    """Wait for an event, with a timeout; each outcome may go to its own step."""

    event: EventType
    if_: Expression | None = Field(default=None, alias="if")
    timeout: Duration
    on_event: StepId | None = Field(default=None, description="Defaults to the next step.")
    on_timeout: StepId | None = Field(default=None, description="Defaults to the next step.")


class BranchCase(_Strict):
    """``{if: <condition>, goto: <step>}``, or a final ``{else: <step>}``."""

    if_: Expression | None = Field(default=None, alias="if")
    goto: StepId | None = None
    else_: StepId | None = Field(default=None, alias="else")

    @model_validator(mode="after")
    def _shape(self) -> BranchCase:
        if self.else_ is not None:
            if self.if_ is not None or self.goto is not None:
                raise ValueError("an 'else' case stands alone: write it as '- else: step_id'")
        elif self.if_ is None or self.goto is None:
            raise ValueError("a branch case needs both 'if' and 'goto' (or is a lone 'else')")
        return self


StepKind = Literal["wait", "send", "wait_for", "branch", "split", "exit"]
STEP_KINDS: tuple[StepKind, ...] = ("wait", "send", "wait_for", "branch", "split", "exit")


class Step(_Strict):
    """One step; exactly one of wait, send, wait_for, branch, split or exit."""

    id: StepId | None = None
    note: str | None = Field(default=None, description="Free text for the people who read the journey.")
    wait: Duration | WaitSpec | None = None
    send: SendSpec | None = None
    wait_for: WaitForSpec | None = None
    branch: list[BranchCase] | None = Field(default=None, min_length=1)
    split: SplitSpec | None = None
    exit: str | None = Field(default=None, description="End the run here, with this reason.")
    goto: StepId | None = Field(default=None, description="Where to go after this step (default: the next one).")

    @model_validator(mode="after")
    def _one_kind(self) -> Step:
        kinds = [kind for kind in STEP_KINDS if getattr(self, kind) is not None]
        if len(kinds) != 1:
            found = ", ".join(kinds) if kinds else "none"
            raise ValueError(f"a step needs exactly one of {', '.join(STEP_KINDS)} (found: {found})")
        if self.goto is not None and kinds[0] in ("branch", "split", "exit", "wait_for"):
            raise ValueError(f"'goto' does not apply to a {kinds[0]} step: it chooses its own next step")
        return self

    @property
    def kind(self) -> StepKind:
        return next(kind for kind in STEP_KINDS if getattr(self, kind) is not None)


Hostname = Annotated[
    str,
    Field(
        pattern=r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$",
        description="A host name in lower case, such as shop.example.com (its subdomains count too).",
    ),
]


class Utm(_Strict):
    """UTM parameters on the links of this journey's messages, so the shop's web analytics credit
    the journey, channel and step (and split variant) that brought a visitor: the same numbers as ours."""

    enabled: bool = Field(default=True, description="false: leave every link exactly as the template wrote it.")
    source: str = Field(default="omnicart", min_length=1, description="utm_source.")
    campaign: str | None = Field(
        default=None, min_length=1, description="utm_campaign; defaults to the journey's name."
    )
    domains: list[Hostname] = Field(
        default_factory=list,
        description="Tag only links to these hosts and their subdomains (e.g. the shop, not a carrier's "
        "tracking page); empty: every http(s) link.",
    )


class Journey(_Strict):
    """A whole journey definition: one YAML file under ``journeys/``."""

    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")]
    description: str | None = None
    enabled: bool = True
    category: Category = Field(
        default="marketing",
        description="marketing: frequency caps, policy quiet hours and the global holdout apply; "
        "transactional (a message the customer asked for): they do not.",
    )
    topic: str | None = Field(
        default=None,
        pattern=r"^[a-z][a-z0-9_]*$",
        max_length=64,
        description="What the journey's messages are about (e.g. promotions, price_alerts), as customers "
        "choose it in the preference centre; default: the category. A customer who opted out of the "
        "topic gets nothing from it (skip topic_opt_out).",
    )
    priority: int = Field(
        default=0, description="When two journeys want to speak at once, the higher priority speaks first."
    )
    holdout: Percent | None = Field(
        default=None,
        description="This share of customers enters and is counted but receives nothing, to measure lift.",
    )
    trigger: Trigger
    exit_when: list[ExitWhen] = Field(default_factory=list)
    goal: Goal | None = None
    quiet_hours: dict[Channel, QuietHours] = Field(default_factory=dict)
    default_timezone: str = Field(default="UTC", description="For customers whose time zone is unknown.")
    default_locale: LocaleTag = Field(
        default=DEFAULT_LOCALE,
        description="The language of the templates' own files (cart_reminder_1.yaml), which customers get "
        "whose locale has no variant (cart_reminder_1.tr.yaml).",
    )
    utm: Utm = Field(
        default=Utm(),
        description="utm_source, utm_medium (the channel), utm_campaign (the journey) and utm_content (the step, "
        "plus -<variant> in a split) on the message's links.",
    )
    steps: list[Step] = Field(min_length=1)

    @cached_property
    def _step_ids(self) -> tuple[str, ...]:
        return tuple(step.id or f"step_{index + 1}" for index, step in enumerate(self.steps))

    @property
    def effective_topic(self) -> str:
        """The topic a customer opts in or out of: the journey's ``topic``, else its category."""
        return self.topic or self.category

    def step_ids(self) -> list[str]:
        """Every step's id; a step without one is called ``step_<n>`` (1-based)."""
        return list(self._step_ids)

    def step_index(self, step_id: str) -> int:
        return self._step_ids.index(step_id)

    def step_id(self, index: int) -> str:
        return self._step_ids[index]


_LOCALES = (
    "The template in other languages, by locale: read from files such as cart_reminder_1.tr.yaml next "
    "to the template (docs/JOURNEYS.md), each with the same settings and its own words."
)


class EmailTemplate(_Strict):
    channel: Literal["email"]
    subject: str
    preheader: str | None = None
    html: str
    text: str | None = Field(default=None, description="Plain-text part; derived from html when absent.")
    sendgrid_template_id: str | None = Field(default=None, description="Use a SendGrid dynamic template instead.")
    categories: list[str] = Field(default_factory=list)
    discount_percent: int | None = Field(
        default=None,
        ge=1,
        le=100,
        description="Issue a single-use discount code with this percentage (discount.code, discount.percent).",
    )
    locales: dict[LocaleTag, EmailTemplate] = Field(default_factory=dict, description=_LOCALES)


    @field_validator("categories")
    @classmethod
    def _sendgrid_categories(cls, categories: list[str]) -> list[str]:
        """SendGrid's category rules (``omnicart.channels.categories``): refused here, not dropped at send."""
        return check_template_categories(categories)

class SmsTemplate(_Strict):
    channel: Literal["sms"]
    body: str
    marketing: bool = Field(default=True, description="Marketing SMS get 'Reply STOP to opt out' appended.")
    locales: dict[LocaleTag, SmsTemplate] = Field(default_factory=dict, description=_LOCALES)


class PushTemplate(_Strict):
    channel: Literal["push"]
    title: str
    body: str
    url: str | None = None
    image_url: str | None = None
    locales: dict[LocaleTag, PushTemplate] = Field(default_factory=dict, description=_LOCALES)


class WhatsAppTemplate(_Strict):
    """A WhatsApp message: an approved Content template to open a conversation, free text inside it.

    WhatsApp lets a business start a conversation only with a template Meta approved (Twilio's
    Content API: ``content_sid``, with ``content_variables`` filling its ``{{1}}``, ``{{2}}`` ...);
    free-form text is allowed only within 24 hours of the customer's last message to us. The journey
    declares the template's Meta ``category`` (it decides price, and whether Meta may hold a
    marketing message back, error 63049). ``body``, when given, is what goes out instead of the
    template while the customer's window is open.
    """

    channel: Literal["whatsapp"]
    content_sid: str = Field(pattern=r"^HX[0-9a-fA-F]{32}$", description="The approved Content template (HX...).")
    content_variables: dict[str, str] = Field(
        default_factory=dict, description="The template's placeholders by number ('1', '2', ...): Liquid text."
    )
    category: Literal["marketing", "utility"] = Field(description="The template's Meta category, as approved.")
    body: str | None = Field(default=None, description="Free-form text, sent instead while the 24 h window is open.")
    # The free-form body translates like any text; Meta approves a Content template per language, so
    # the one content_sid here serves every locale until the loader learns per-locale SIDs.
    locales: dict[LocaleTag, WhatsAppTemplate] = Field(default_factory=dict, description=_LOCALES)


Template = Annotated[EmailTemplate | SmsTemplate | PushTemplate | WhatsAppTemplate, Field(discriminator="channel")]


class FrequencyCap(_Strict):
    """At most ``at_most`` marketing messages per ``per``, on one channel or on any."""

    channel: Channel | Literal["any"] = "any"
    at_most: int = Field(ge=1)
    per: Duration
    when_capped: Literal["skip", "hold"] = Field(
        default="skip", description="skip (reason frequency_capped), or hold until the cap allows."
    )
    max_hold: Duration = Field(default="1d", description="A held message waits at most this long, then is skipped.")


class Policies(_Strict):
    """Rules across every journey (``journeys/policies.yaml``), versioned with the journeys."""

    frequency_caps: list[FrequencyCap] = Field(default_factory=list)
    global_holdout: Percent | None = Field(
        default=None, description="This share of customers receives no marketing message from any journey."
    )
    quiet_hours: dict[Channel, QuietHours] = Field(
        default_factory=dict, description="For marketing messages of journeys that set none for the channel."
    )


class TemplateOutline(_Strict):
    """What a customer's workflow needs to know of a template, without its words.

    The send activity reads a registered template by (version, name), so the workflow decides with
    these few facts only; carrying the words (every translation) would make each run's history and
    state several kilobytes heavier for nothing.
    """

    channel: Channel
    reads_trigger: bool = Field(
        default=False, description="Some text mentions the trigger event: sends carry it in their context."
    )
    free_text: bool = Field(
        default=False, description="WhatsApp: has a free-form body for a customer whose 24-hour window is open."
    )


def outline_of(template: Template) -> TemplateOutline:
    """The outline of a template, reading every translation too (a conservative ``reads_trigger``)."""
    text = json.dumps(template.model_dump(mode="json"))
    free_text = isinstance(template, WhatsAppTemplate) and template.body is not None
    return TemplateOutline(channel=template.channel, reads_trigger="trigger" in text, free_text=free_text)


class JourneyBundle(_Strict):
    """A validated journey with the templates it uses: what a run snapshots when it starts."""

    journey: Journey
    templates: dict[str, Template]
    policies: Policies = Field(default_factory=Policies)
    version: str = ""
    outlines: dict[str, TemplateOutline] = Field(
        default_factory=dict,
        description="In place of ``templates`` when a workflow loaded the version from the registry "
        "(``for_workflow``): the send activity reads the words there by version and name.",
    )

    def outline(self, name: str) -> TemplateOutline:
        """What the workflow needs of template ``name``, whether this bundle carries it whole or outlined.

        Worked out once per template (the simulator asks at every send); the cache is checked against
        the template itself, because ``model_copy`` hands a copy with other templates the same cache."""
        found = self.outlines.get(name)
        if found is not None:
            return found
        template = self.templates[name]
        cached = self._outline_cache.get(name)
        if cached is None or cached[0] is not template:
            cached = (template, outline_of(template))
            self._outline_cache[name] = cached
        return cached[1]

    def for_workflow(self) -> JourneyBundle:
        """This version as a customer's workflow carries it: the journey and policies, templates outlined.

        The version (the hash of the whole bundle) stays, so sends still name the registered words."""
        outlines = {name: self.outline(name) for name in self.templates}
        return self.model_copy(update={"templates": {}, "outlines": outlines})

    @cached_property
    def _outline_cache(self) -> dict[str, tuple[Template, TemplateOutline]]:
        return {}

    @model_validator(mode="after")
    def _fingerprint(self) -> JourneyBundle:
        if not self.version:
            body = json.dumps(
                self.model_dump(mode="json", by_alias=True, exclude={"version"}, exclude_defaults=True),
                sort_keys=True,
            ).encode()
            object.__setattr__(self, "version", hashlib.sha256(body).hexdigest()[:16])
        return self


def percent(value: str) -> float:
    """A ``Percent`` such as ``"10%"`` as the fraction 0.1."""
    return float(value.rstrip("%")) / 100
