"""``omnicart simulate``: what journeys would do for a timeline of events, on a virtual clock.

It drives the same interpreter the customer workflow drives, in the same order (due timers before
an event, each timer at its deadline), so its output is a faithful preview of production, sends
nothing and needs no running system. Each event is offered to every journey it triggers, chosen as
ingest chooses them (``catalog.triggered_by``), so several journeys preview together as they run:
one customer, one state, each journey's own policies. Every message is rendered with the real templates and the data
the worker would use: a template that fails is a failed send (``skip … email_failed``, then the
fallback), exactly as the worker reports it; one that renders is assumed accepted.

Two things only a preview needs: an open or a click in a timeline may name the ``step`` whose message
it is about instead of a ``message_id`` (which only a run of the journey can know), and
``imported_at`` previews a backfill: events older than it arrive all at once at that moment.

Catalog and store events in the timeline (``inventory_changed``, ``product_updated``,
``price_changed``, ``store_updated``: no customer) are the shop's catalog as it changes: every send is
checked against the stock they set by then, with the send activity's own rule
(``omnicart.catalog.availability.at_send``: skip, drop sold-out items, the ``catalog`` a template reads).

Date-based triggers appear at their due moments: the customer's timeline gets the ``date_reached``
event the schedule would deliver, computed by the schedule's own rule
(``omnicart.engine.date_triggers.dues``) from what the timeline taught so far (last event of each
type, the profile's dates, the time zone). Yearly dates are previewed until a year after the
timeline's last event.
"""

from __future__ import annotations

import dataclasses
import gc
import heapq
import json
import multiprocessing
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from pydantic import ValidationError

from omnicart.catalog.apply import is_catalog_event
from omnicart.catalog.availability import OUT_OF_STOCK, CatalogSnapshot, advertised_skus, at_send, condition_view
from omnicart.catalog.snapshot import CatalogTimeline
from omnicart.customers.dates import dates_in
from omnicart.engine import context, date_triggers, interpreter, merge
from omnicart.engine.interpreter import ENGAGEMENT
from omnicart.engine.localtime import zone
from omnicart.engine.state import Action, CustomerState
from omnicart.events import ANONYMOUS_PREFIX, Event, describe_error, event_sort_key
from omnicart.journey.catalog import triggered_by
from omnicart.journey.model import DATE_REACHED, EmailTemplate, JourneyBundle, OutOfStockPolicy, Template
from omnicart.journey.templates import RenderedParts, TemplateError, template_paths
from omnicart.limits import InvalidJson, load_json
from omnicart.locales import localized
from omnicart.messages import SendResult
from omnicart.rendering import render_message, send_context
from omnicart.utm import UtmTagger, utm_tagger

# Below this many customers a preview runs in-process; above it, on every core.
PARALLEL_FROM = 2000


def simulate(
    journeys: JourneyBundle | Sequence[JourneyBundle],
    events: Iterable[Event],
    workers: int | None = None,
    *,
    imported_at: datetime | None = None,
    contents: dict[str, RenderedParts] | None = None,
    steps: bool = False,
    pickup_url: str | None = None,
    translations: dict[str, dict[str, RenderedParts]] | None = None,
) -> list[Action]:
    """Every action of the journeys (one bundle, or several) for these events, in time order.

    With ``steps``, also each step a run reaches (action ``step``): what analytics records to count
    who waits where, left out of the journal and of the preview a marketer reads.

    Customers are independent, so each customer's timeline runs on its own (large timelines on all
    cores) and the results are merged by time: ties keep each customer's own order, customers in the
    order they first appear in the input. With ``contents``, each sent message's rendered parts are
    put there by message id (and everything runs in this process); with ``translations`` as well,
    each sent message rendered in every locale its template has (the customer's first), by
    message id then locale: the console's preview shows a marketer each translation.
    """
    # Simulating creates many objects but no reference cycles: the garbage collector would only
    # rescan them (and, in forked workers, copy the inherited memory pages it touches).
    collecting = gc.isenabled()
    gc.disable()
    try:
        given = list(events)
        shop = [event for event in given if is_catalog_event(event)]  # the stock every send is checked against
        timelines = _timelines(event for event in given if not is_catalog_event(event))
        bundles = (journeys,) if isinstance(journeys, JourneyBundle) else tuple(journeys)
        options = _Options(bundles, imported_at, contents, steps=steps, catalog=CatalogTimeline(shop),
                           pickup_url=pickup_url, translations=translations)
        shards = _shards(list(timelines.items()), 1 if contents is not None else workers)
        if len(shards) == 1 or "fork" not in multiprocessing.get_all_start_methods():
            parts = [_run_shard(shard, options) for shard in shards]
        else:
            parts = _run_forked(shards, options)
        # Each part is in (time, customer order, sequence) order, a unique key: actions are never compared.
        return [item[3] for item in heapq.merge(*parts)]
    finally:
        if collecting:
            gc.enable()


@dataclass(frozen=True)
class _Options:
    bundles: tuple[JourneyBundle, ...]
    imported_at: datetime | None = None
    contents: dict[str, RenderedParts] | None = None
    outcomes: dict[tuple[str, str, str], TemplateError | None] = field(default_factory=dict)
    triggered: dict[str, list[JourneyBundle]] = field(default_factory=dict)
    steps: bool = False
    catalog: CatalogTimeline = field(default_factory=lambda: CatalogTimeline(()))
    pickup_url: str | None = None
    translations: dict[str, dict[str, RenderedParts]] | None = None

    def journeys_for(self, event_type: str) -> list[JourneyBundle]:
        """The journeys an event of this type is offered, as ingest would attach them."""
        if event_type not in self.triggered:
            self.triggered[event_type] = triggered_by(self.bundles, event_type)
        return self.triggered[event_type]

    def dated(self) -> list[JourneyBundle]:
        """The journeys that start on a date rather than on an event."""
        return self.journeys_for(DATE_REACHED)


def _run_forked(
    shards: list[list[tuple[int, str, list[Event]]]], options: _Options
) -> list[list[tuple[float, int, int, Action]]]:
    """The first shard here, each other one in a forked worker that inherits the timelines.

    Only the workers' actions travel back; this process works meanwhile instead of waiting.
    """
    global _JOB
    _JOB = (shards, options)
    try:
        with ProcessPoolExecutor(len(shards) - 1, mp_context=multiprocessing.get_context("fork")) as pool:
            elsewhere = pool.map(_run_job, range(1, len(shards)))
            here = _run_shard(shards[0], options)
            return [here] + [
                [(at, order, seq, Action(*fields)) for at, order, seq, fields in part] for part in elsewhere
            ]
    finally:
        _JOB = None


def _shards(
    customers: list[tuple[str, list[Event]]], workers: int | None
) -> list[list[tuple[int, str, list[Event]]]]:
    numbered = [(order, customer_id, timeline) for order, (customer_id, timeline) in enumerate(customers)]
    count = workers or (os.cpu_count() or 1 if len(numbered) >= PARALLEL_FROM else 1)
    count = max(1, min(count, len(numbered)))
    return [numbered[index::count] for index in range(count)]


_ACTION_FIELDS = tuple(item.name for item in dataclasses.fields(Action))

_JOB: tuple[list[list[tuple[int, str, list[Event]]]], _Options] | None = None


def _run_job(index: int) -> list[tuple[float, int, int, tuple[Any, ...]]]:
    """One forked worker's share, sent back as plain tuples (five times cheaper to pickle)."""
    assert _JOB is not None
    shards, options = _JOB
    return [
        (at, order, seq, tuple(getattr(a, name) for name in _ACTION_FIELDS))
        for at, order, seq, a in _run_shard(shards[index], options)
    ]


def _run_shard(
    shard: list[tuple[int, str, list[Event]]], options: _Options
) -> list[tuple[float, int, int, Action]]:
    """A share of the customers, each timeline in timestamp order; the actions sorted by time."""
    keyed: list[tuple[float, int, int, Action]] = []
    for order, customer_id, timeline in shard:
        timeline.sort(key=event_sort_key)
        for seq, action in enumerate(run_customer(customer_id, timeline, options)):
            keyed.append((action.at.timestamp(), order, seq, action))
    keyed.sort()
    return keyed


def _timelines(events: Iterable[Event]) -> dict[str, list[Event]]:
    """Each customer's events, where a customer's are also those of every anonymous id whose first
    link (in time order) was to them; an anonymous id never linked is a customer of its own.

    Ingest routes the same way (``omnicart.identity``): the first link of an anonymous id wins.
    """
    given = list(events)  # customers keep the order they first appear in the input
    first_link: dict[str, str] = {}
    for event in sorted((e for e in given if e.anonymous_id and e.customer_id), key=event_sort_key):
        first_link.setdefault(event.anonymous_id, event.customer_id)
    timelines: dict[str, list[Event]] = {}
    for event in given:
        owner = event.customer_id
        if not owner and event.anonymous_id:
            owner = first_link.get(event.anonymous_id, ANONYMOUS_PREFIX + event.anonymous_id)
        timelines.setdefault(owner, []).append(event)
    return timelines


def run_customer(customer_id: str, timeline: list[Event], options: _Options) -> list[Action]:
    """One customer's actions: events in timestamp order, timers fired at their deadlines.

    It runs without checkpoints (fast); only if the interpreter fails on something does it play this
    customer again in safe mode, which quarantines the failing input exactly as the workflow does.
    """
    try:
        return list(_Player(customer_id, options, safe=False).play(timeline))
    except Exception:
        return list(_Player(customer_id, options, safe=True).play(timeline))


def date_events(journeys: JourneyBundle | Sequence[JourneyBundle], events: Iterable[Event]) -> list[Event]:
    """The ``date_reached`` events the date-triggers schedule would deliver for this timeline, in
    time order: what a test hands a real workflow to compare it with the preview."""
    bundles = (journeys,) if isinstance(journeys, JourneyBundle) else tuple(journeys)
    timelines = _timelines(events)
    found: list[Event] = []
    for customer_id, timeline in timelines.items():
        timeline.sort(key=event_sort_key)
        player = _Player(customer_id, _Options(bundles), safe=True)
        for _ in player.play(timeline):
            pass
        found.extend(player.dated_events)
    return sorted(found, key=lambda event: event.timestamp)


class _Player:
    """One customer's timeline through the interpreter, as the workflow and the worker would do it."""

    def __init__(self, customer_id: str, options: _Options, *, safe: bool) -> None:
        self.state = interpreter.new_state(customer_id)
        self.options = options
        self.safe = safe
        self.sent_by_step: dict[str, interpreter.SendCommand] = {}
        self.dated = options.dated()
        self.dates: dict[str, str] = {}  # the profile's dates, as the projection reads them
        self.delivered: set[str] = set()
        self.dated_events: list[Event] = []  # what the schedule would deliver, in order
        self.clock: datetime | None = None  # dates due before the timeline began were never due here
        self.horizon: datetime | None = None
        # Identity: anonymous visitors of this customer not linked yet, and the links seen so far.
        self.anonymous: dict[str, CustomerState] = {}
        self.links: dict[str, str] = {}

    def play(self, timeline: list[Event]) -> Iterator[Action]:
        imported_at = self.options.imported_at
        if self.dated and timeline:
            self.clock, self.horizon = timeline[0].timestamp, timeline[-1].timestamp + timedelta(days=366)
        for event in timeline:
            now = event.timestamp
            if imported_at is not None and now < imported_at:
                now = imported_at  # a backfill: it arrives now; overdue timers fire as it is handled
            else:
                yield from self._drain(until=now)
            journeys = self.options.journeys_for(event.type)
            visitor = self._visitor(event)
            if visitor is not None:  # an anonymous visitor not linked yet: it learns, its journeys wait
                yield from interpreter.handle_event(visitor, event, journeys, now, safe=self.safe).actions
                continue
            if event.anonymous_id and not event.customer_id:
                event = event.model_copy(update={"customer_id": self.state.customer_id})
            self._learn_catalog(interpreter.catalog_wanted(self.state, now, event, journeys), now)
            out = interpreter.handle_event(self.state, self._linked(event), journeys, now, safe=self.safe)
            joining = self._newly_linked(event)
            if joining is not None:  # as the workflow does once the visitor's workflow hands over
                out.extend(merge.merge(self.state, joining, now, safe=self.safe))
            if self.dated and event.type == "customer_updated":
                self.dates.update({found.name: found.value for found in dates_in(event.properties) if found.value})
                for cleared in (found.name for found in dates_in(event.properties) if found.value is None):
                    self.dates.pop(cleared, None)
            yield from self._settle(out, now)
        yield from self._drain(until=None)

    def _visitor(self, event: Event) -> CustomerState | None:
        """The state of the anonymous visitor an anonymous-only event is for, until it is linked."""
        if not event.anonymous_id or event.customer_id or event.anonymous_id in self.links or self.state.is_anonymous:
            return None
        if event.anonymous_id not in self.anonymous:
            self.anonymous[event.anonymous_id] = interpreter.new_state(ANONYMOUS_PREFIX + event.anonymous_id)
        return self.anonymous[event.anonymous_id]

    def _newly_linked(self, event: Event) -> CustomerState | None:
        """The anonymous visitor this event links to this customer for the first time, if any."""
        if not event.anonymous_id or not event.customer_id or event.anonymous_id in self.links:
            return None
        self.links[event.anonymous_id] = event.customer_id
        return self.anonymous.pop(event.anonymous_id, None)

    def _drain(self, until: datetime | None) -> Iterator[Action]:
        while True:
            due = interpreter.next_wakeup(self.state)
            dated = self._next_date(until)
            if due is not None and (until is None or due < until) and (dated is None or due <= dated.timestamp):
                self._learn_catalog(interpreter.catalog_wanted(self.state, due), due)
                yield from self._settle(interpreter.handle_timers(self.state, due, safe=self.safe), due)
            elif dated is not None:
                self.delivered.add(dated.id)
                self.dated_events.append(dated)
                now = dated.timestamp
                self._learn_catalog(interpreter.catalog_wanted(self.state, now, dated, self.dated), now)
                out = interpreter.handle_event(self.state, dated, self.dated, now, safe=self.safe)
                yield from self._settle(out, now)
            else:
                return

    def _next_date(self, until: datetime | None) -> Event | None:
        """The earliest ``date_reached`` the schedule would deliver before ``until`` (None: the
        horizon), by the schedule's rule applied to what this customer's timeline said so far."""
        if not self.dated or self.clock is None or self.horizon is None:
            return None
        end = min(until - timedelta(microseconds=1), self.horizon) if until is not None else self.horizon
        profile = self.state.profile
        earliest: Event | None = None
        for bundle in self.dated:
            journey = bundle.journey
            tz = zone(profile.timezone, journey.default_timezone)
            for due in date_triggers.dues(journey.trigger, tz, self.clock, end,
                                          last_event_at=profile.last_event_at, dates=self.dates):
                event = date_triggers.date_event(journey.name, self.state.customer_id, due)
                if event.id not in self.delivered and (earliest is None or event.timestamp < earliest.timestamp):
                    earliest = event
                    break
        return earliest

    def _linked(self, event: Event) -> Event:
        """An open or click that names a step gets the id (and channel) of the message that step sent."""
        step = event.properties.get("step")
        message_id = str(event.properties.get("message_id", ""))
        if event.type not in ENGAGEMENT or not message_id.startswith(STEP_REFERENCE):
            return event
        command = self.sent_by_step.get(str(step))
        if command is None:
            return event  # that step sent nothing (yet): the engagement counts for nothing
        properties = {**event.properties, "message_id": command.message_id, "channel": command.channel}
        return event.model_copy(update={"properties": properties})

    def _settle(self, out: interpreter.Output, now: datetime) -> Iterator[Action]:
        """Report the actions; render each send as the worker would, and report its outcome."""
        yield from out.actions
        if self.options.steps:
            yield from out.reached
        for command in out.sends:
            self.sent_by_step[command.step_id] = command
            bundle = self.state.bundles[command.version]
            template = bundle.templates[command.template]
            message = context.message(self.state, command.trigger, command.journey, command.run_id, command.step_id)
            base = self._at_send(message, interpreter.out_of_stock_policy(bundle, command.step_id), now)
            if base is None:
                result = SendResult(message_id=command.message_id, channel=command.channel, outcome="skipped",
                                    provider="preview", skip_reason=OUT_OF_STOCK)
                yield from self._settle(interpreter.handle_send_result(self.state, result, now, safe=self.safe), now)
                continue
            variables = send_context(base, message_id=command.message_id, channel=command.channel,
                                     template=template, journey=base["journey"], **_stand_ins(template))
            failure = self._render(command, template, variables, _variant(out.actions, command.message_id))
            if failure is not None:
                error = f"template {command.template!r} does not render: {failure}"
                result = SendResult(message_id=command.message_id, channel=command.channel, outcome="failed",
                                    provider="preview", error=error)
                yield from self._settle(interpreter.handle_send_result(self.state, result, now, safe=self.safe), now)
                continue
            interpreter.handle_sent(self.state, command.message_id)

    def _learn_catalog(self, skus: list[str], now: datetime) -> None:
        """What the workflow's ``catalog_for_conditions`` activity would answer at ``now``."""
        if skus:
            interpreter.learn_catalog(self.state, condition_view(self.options.catalog.snapshot(skus, now), skus))

    def _at_send(self, message: dict[str, Any], policy: OutOfStockPolicy, now: datetime) -> dict[str, Any] | None:
        """The message as the send activity would make it at ``now``: checked against the stock of the
        timeline's catalog events so far (None: skipped, out of stock), with its ``catalog``."""
        skus = advertised_skus(message)
        snapshot = self.options.catalog.snapshot(skus, now) if skus and self.options.catalog else CatalogSnapshot()
        return at_send(policy, message, snapshot, pickup_url=self.options.pickup_url)

    def _render(
        self, command: interpreter.SendCommand, template: Template, variables: dict[str, Any], variant: str | None
    ) -> TemplateError | None:
        """Why the message does not render, or None. Whether it renders depends only on the values
        the template reads, so that outcome is remembered by them: most customers of a preview
        share it, and rendering is most of a preview's cost. Contents kept for the preview carry
        the links the customer would get, UTM parameters and all."""
        contents = self.options.contents
        journey = self.state.bundles[command.version].journey
        if contents is not None:
            utm = utm_tagger(journey.utm, journey=command.journey,
                             channel=command.channel, step_id=command.step_id, variant=variant,
                             ours=[PREVIEW_UNSUBSCRIBE_URL])
            try:
                contents[command.message_id] = render_message(template, variables, utm=utm,
                                                              default_locale=journey.default_locale)
            except TemplateError as exc:
                return exc
            if self.options.translations is not None:
                self.options.translations[command.message_id] = self._translations(template, variables, utm,
                                                                                   journey.default_locale)
            return None
        words, locale = localized(template, variables["customer"].get("locale"), journey.default_locale)
        key = (command.version, f"{command.template}.{locale}", _values_read(words, variables))
        outcomes = self.options.outcomes
        if key not in outcomes:
            try:
                render_message(template, variables, derive_text=False, default_locale=journey.default_locale)
                outcomes[key] = None
            except TemplateError as exc:
                outcomes[key] = exc
        return outcomes[key]

    @staticmethod
    def _translations(
        template: Template, variables: dict[str, Any], utm: UtmTagger | None, default_locale: str
    ) -> dict[str, RenderedParts]:
        """The message in every locale its template has, the customer's first, then the default. A
        variant that does not render is left out: the customer's own rendering decides what the run
        does, not this."""
        _, theirs = localized(template, variables["customer"].get("locale"), default_locale)
        rendered = {}
        for tag in dict.fromkeys([theirs, default_locale, *template.locales]):
            try:
                rendered[tag] = render_message(template, {**variables, "customer": {**variables["customer"],
                                                                                    "locale": tag}},
                                               utm=utm, default_locale=default_locale)
            except TemplateError:
                continue
        return rendered


def _values_read(template: Template, variables: dict[str, Any]) -> str:
    """The values at every path the template reads, as one comparable text."""
    values = []
    for path in template_paths(template):
        value: Any = variables
        for segment in path:
            if isinstance(value, dict) and isinstance(segment, str):
                value = value.get(segment, _MISSING)
            elif isinstance(value, list) and isinstance(segment, int) and -len(value) <= segment < len(value):
                value = value[segment]
            else:
                break  # a computed index or a missing step: the value so far holds what decides
        values.append(value)
    return repr(values)  # the same values built the same way give the same text; cheaper than JSON


_MISSING = "\x00missing"


STEP_REFERENCE = "step:"
"""How a timeline's engagement event that names a step instead of a message is marked."""


PREVIEW_UNSUBSCRIBE_URL = "https://unsubscribe.example/preview"


def _stand_ins(template: Template) -> dict[str, Any]:
    """What only a real send has: a discount code from the database and a signed unsubscribe link."""
    if not isinstance(template, EmailTemplate):
        return {}
    discount = {"code": "PREVIEW-CODE", "percent": template.discount_percent} if template.discount_percent else None
    return {"discount": discount, "unsubscribe_url": PREVIEW_UNSUBSCRIBE_URL}


def _variant(actions: list[Action], message_id: str) -> str | None:
    """The split variant of the run that sends this message, as its ``send`` action records it."""
    return next((a.variant for a in actions if a.action == "send" and a.message_id == message_id), None)


def read_events(path: Path) -> list[Event]:
    """Read a JSON-lines timeline; a bad line is an error naming the file, line and field.

    Lines are read and checked exactly as the ingest API reads a request (``limits.load_json``,
    ``Event.parse``), so a timeline the API would refuse is refused here too, never with a traceback.
    """
    events: list[Event] = []
    with path.open(encoding="utf-8", errors="surrogateescape") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                events.append(timeline_event(load_json(line)))
            except InvalidJson as exc:
                raise SimulationInputError(f"{path}:{number}:1: {exc}") from None
            except ValidationError as exc:
                problems = "; ".join(": ".join(describe_error(error)) for error in exc.errors())
                raise SimulationInputError(f"{path}:{number}:1: bad event: {problems}") from None
    return events


def timeline_event(data: Any) -> Event:
    """One event of a timeline. An open or click may name the ``step`` whose message it is about
    instead of a ``message_id``: the preview links it to the message that step sent."""
    if isinstance(data, dict) and data.get("type") in ENGAGEMENT and isinstance(data.get("properties"), dict):
        properties = data["properties"]
        if "step" in properties and "message_id" not in properties:
            properties = {"channel": "email", **properties, "message_id": f"{STEP_REFERENCE}{properties['step']}"}
            data = {**data, "properties": properties}
    return Event.parse(data)


_SHOWN_PARTS = {"subject", "text", "body", "title", "url"}
"""What ``--show-content`` prints of a message: its words (an email's text part, not its HTML)."""


class SimulationInputError(ValueError):
    """The events file cannot be read."""


def simulate_command(
    journey_paths: Sequence[Path],
    events_file: Path,
    out: TextIO = sys.stdout,
    *,
    imported_at: datetime | None = None,
    show_content: bool = False,
) -> int:
    """The CLI: JSON lines on stdout, problems on stderr, exit 1 on bad input.

    ``journey_paths`` are journey files or folders (a folder: every journey in it, with its policies).
    """
    from omnicart.journey.loader import load_files, named_files
    from omnicart.settings import get_settings

    loaded = load_files(named_files(journey_paths))
    for problem in loaded.problems:
        print(problem, file=sys.stderr)
    if loaded.problems:
        return 1
    if not loaded.bundles:
        print(f"no journey files in {', '.join(str(path) for path in journey_paths)}", file=sys.stderr)
        return 1
    try:
        events = read_events(events_file)
    except (SimulationInputError, OSError) as exc:
        print(exc, file=sys.stderr)
        return 1
    contents: dict[str, RenderedParts] | None = {} if show_content else None
    bundles = list(loaded.bundles.values())
    pickup_url = get_settings().pickup_url
    for action in simulate(bundles, events, imported_at=imported_at, contents=contents, pickup_url=pickup_url):
        line = action.as_json()
        rendered = contents.get(action.message_id or "") if contents is not None and action.action == "send" else None
        if rendered is not None:
            line["content"] = rendered.model_dump(include=_SHOWN_PARTS, exclude_none=True)
        out.write(json.dumps(line, ensure_ascii=False) + "\n")
    return 0
