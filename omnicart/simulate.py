"""``omnicart simulate``: what a journey would do for a timeline of events, on a virtual clock.

It drives the same interpreter the customer workflow drives, in the same order (due timers before
an event, each timer at its deadline, sends assumed accepted), so its output is a faithful preview of
production, sends nothing and needs no running system.
"""

from __future__ import annotations

import gc
import heapq
import json
import multiprocessing
import os
import sys
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from pydantic import ValidationError

from omnicart.engine import interpreter
from omnicart.engine.state import Action, CustomerState
from omnicart.events import Event, describe_error, event_sort_key
from omnicart.journey.model import JourneyBundle
from omnicart.limits import InvalidJson, load_json

# Below this many customers a preview runs in-process; above it, on every core.
PARALLEL_FROM = 2000


def simulate(bundle: JourneyBundle, events: Iterable[Event], workers: int | None = None) -> list[Action]:
    """Every action of the journey for these events, in time order.

    Customers are independent, so each customer's timeline runs on its own (large timelines on all
    cores) and the results are merged by time: ties keep each customer's own order, customers in the
    order they first appear in the input.
    """
    # Simulating creates many objects but no reference cycles: the garbage collector would only
    # rescan them (and, in forked workers, copy the inherited memory pages it touches).
    collecting = gc.isenabled()
    gc.disable()
    try:
        timelines: dict[str, list[Event]] = {}
        for event in events:
            timelines.setdefault(event.customer_id, []).append(event)
        shards = _shards(list(timelines.items()), workers)
        if len(shards) == 1 or "fork" not in multiprocessing.get_all_start_methods():
            parts = [_run_shard(bundle, shard) for shard in shards]
        else:
            parts = _run_forked(bundle, shards)
        # Each part is in (time, customer order, sequence) order, a unique key: actions are never compared.
        return [item[3] for item in heapq.merge(*parts)]
    finally:
        if collecting:
            gc.enable()


def _run_forked(
    bundle: JourneyBundle, shards: list[list[tuple[int, str, list[Event]]]]
) -> list[list[tuple[float, int, int, Action]]]:
    """The first shard here, each other one in a forked worker that inherits the timelines.

    Only the workers' actions travel back; this process works meanwhile instead of waiting.
    """
    global _JOB
    _JOB = (bundle, shards)
    try:
        with ProcessPoolExecutor(len(shards) - 1, mp_context=multiprocessing.get_context("fork")) as pool:
            elsewhere = pool.map(_run_job, range(1, len(shards)))
            here = _run_shard(bundle, shards[0])
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


_JOB: tuple[JourneyBundle, list[list[tuple[int, str, list[Event]]]]] | None = None


def _run_job(index: int) -> list[tuple[float, int, int, tuple[Any, ...]]]:
    """One forked worker's share, sent back as plain tuples (five times cheaper to pickle)."""
    assert _JOB is not None
    bundle, shards = _JOB
    return [
        (at, order, seq, (a.at, a.customer_id, a.journey, a.action, a.step, a.channel, a.template, a.reason,
                          a.value, a.message_id))
        for at, order, seq, a in _run_shard(bundle, shards[index])
    ]


def _run_shard(
    bundle: JourneyBundle, shard: list[tuple[int, str, list[Event]]]
) -> list[tuple[float, int, int, Action]]:
    """A share of the customers, each timeline in timestamp order; the actions sorted by time."""
    keyed: list[tuple[float, int, int, Action]] = []
    for order, customer_id, timeline in shard:
        timeline.sort(key=event_sort_key)
        for seq, action in enumerate(run_customer(customer_id, bundle, timeline)):
            keyed.append((action.at.timestamp(), order, seq, action))
    keyed.sort()
    return keyed


def run_customer(customer_id: str, bundle: JourneyBundle, timeline: list[Event]) -> list[Action]:
    """One customer's actions: events in timestamp order, timers fired at their deadlines.

    It runs without checkpoints (fast); only if the interpreter fails on something does it play this
    customer again in safe mode, which quarantines the failing input exactly as the workflow does.
    """
    try:
        return list(_play(customer_id, bundle, timeline, safe=False))
    except Exception:
        return list(_play(customer_id, bundle, timeline, safe=True))


def _play(customer_id: str, bundle: JourneyBundle, timeline: list[Event], *, safe: bool) -> Iterator[Action]:
    state = interpreter.new_state(customer_id)
    for event in timeline:
        yield from _drain_timers(state, until=event.timestamp, safe=safe)
        yield from _settle(state, interpreter.handle_event(state, event, [bundle], event.timestamp, safe=safe))
    yield from _drain_timers(state, until=None, safe=safe)


def _drain_timers(state: CustomerState, until: datetime | None, *, safe: bool) -> Iterator[Action]:
    while (due := interpreter.next_wakeup(state)) is not None and (until is None or due < until):
        yield from _settle(state, interpreter.handle_timers(state, due, safe=safe))


def _settle(state: CustomerState, out: interpreter.Output) -> Iterator[Action]:
    """Report the actions, and tell the interpreter each send was accepted, as a channel would."""
    yield from out.actions
    for command in out.sends:
        interpreter.handle_sent(state, command.message_id)


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
                events.append(Event.parse(load_json(line)))
            except InvalidJson as exc:
                raise SimulationInputError(f"{path}:{number}:1: {exc}") from None
            except ValidationError as exc:
                problems = "; ".join(": ".join(describe_error(error)) for error in exc.errors())
                raise SimulationInputError(f"{path}:{number}:1: bad event: {problems}") from None
    return events


class SimulationInputError(ValueError):
    """The events file cannot be read."""


def simulate_command(journey_file: Path, events_file: Path, out: TextIO = sys.stdout) -> int:
    """The CLI: JSON lines on stdout, problems on stderr, exit 1 on bad input."""
    from omnicart.journey.loader import JourneyError, load_journey

    try:
        bundle = load_journey(journey_file)
    except JourneyError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 1
    try:
        events = read_events(events_file)
    except (SimulationInputError, OSError) as exc:
        print(exc, file=sys.stderr)
        return 1
    for action in simulate(bundle, events):
        out.write(json.dumps(action.as_json()) + "\n")
    return 0
