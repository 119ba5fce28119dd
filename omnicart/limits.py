"""What an accepted event may hold: the bounds that keep every accepted event runnable.

An event the API answers ``202`` must decode and run in the customer's workflow for ever after; an
event that cannot is a poison pill that wedges that customer. So the door refuses (``422``) anything
a later stage cannot carry: JSON nested deeper than a decoder follows, numbers that JSON, CEL's int64
or the Temporal UI cannot hold exactly, text that is not valid UTF-8 once encoded, dates whose
conversion to UTC overflows, and events so large that a batch, a signal or a send activity's input
(event + cart + customer) approaches Temporal's 2 MB payload limit.

The limits are checked by :func:`check_json` on the raw JSON of an envelope before the model sees it
(``omnicart.events.Event.parse``), never when a stored event is decoded: tightening a limit later must
not wedge a customer whose events were accepted under the old one.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

# --- numbers ---------------------------------------------------------------------------------

MAX_SAFE_INTEGER = 2**53 - 1
"""The largest integer a JavaScript ``Number`` (the Temporal UI, most shops' front ends) reads exactly;
also well inside CEL's int64. A larger id is a string's job."""

_INTEGER_TEXT_CHARS = 20
"""Integer literals longer than this are not even converted: ``int()`` refuses past 4,300 digits and
is quadratic before that, and anything this long is out of range anyway."""

# --- structure -------------------------------------------------------------------------------

MAX_PROPERTIES_DEPTH = 16
"""``properties`` (level 1) nests at most this many objects and lists. A cart with items with options
is 4; the worker's JSON decoder stops at 200 levels and CEL and Liquid recurse through what they read."""

MAX_OBJECT_KEYS = 200
"""Keys in one object: a generous product page; more is a dump, not an event."""

MAX_LIST_ITEMS = 500
"""Items in one list: the largest carts seen are a few hundred lines."""

MAX_KEY_CHARS = 128
"""A property name is an identifier a marketer types into a condition, not data."""

# --- text ------------------------------------------------------------------------------------

MAX_STRING_CHARS = 8 * 1024
"""Any string value: a product description fits; a base64 image or a page of HTML does not belong in
an event (and every event is copied into signals, state and send inputs)."""

MAX_ID_CHARS = 200
"""Event, customer, cart, order and message ids, and SKUs: the event log's columns are 200 wide."""

MAX_NAME_CHARS = 200
"""A person's first name or a product name: printed in subjects and SMS, where anything longer breaks."""

MAX_EMAIL_CHARS = 254
"""The longest address SMTP can deliver to (RFC 5321's 256-octet path minus the angle brackets)."""

MAX_PHONE_CHARS = 16
"""``+`` and at most 15 digits: E.164."""

MAX_URL_CHARS = 2048
"""What every browser and email client opens; longer links get cut by mail gateways."""

MAX_SHORT_CHARS = 64
"""Time zones (the longest IANA name is 32 characters), locales, channel and store codes."""

MAX_PUSH_TOKENS = 20
"""Devices per customer: each push send goes to all of them."""

_BAD_TEXT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff]")
"""Control characters (tab, newline and carriage return are text) and lone UTF-16 surrogates: the
latter cannot be encoded as UTF-8 at all, so a signal carrying one cannot be sent or decoded."""

_BAD_KEY = re.compile(r"[\x00-\x1f\ud800-\udfff]")

# --- time and size ---------------------------------------------------------------------------

EARLIEST_TIMESTAMP = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_TIMESTAMP = datetime(2100, 1, 1, tzinfo=UTC)
"""Events happen between the Unix epoch and 2100. Far from ``datetime``'s year 1 and 9999, so no offset
or journey wait (``after_trigger: 30d``) added to an accepted timestamp can overflow."""

MAX_EVENT_BYTES = 32 * 1024
"""Default of ``OMNICART_MAX_EVENT_BYTES``: one event as JSON. A send activity's input holds the trigger,
the cart and the customer, so three maximal events stay far below Temporal's 2 MB payload limit."""

SIGNAL_BUDGET_BYTES = 256 * 1024
"""The most encoded JSON one ``event`` signal carries (``omnicart.routing.deliver`` splits above it).
Temporal refuses payloads over 2 MB and warns from 512 KB; each event travels with the journey
bundles its type triggers (~13 KB each), so a 1,000-event batch for one customer is several signals."""

MAX_PROBLEMS_PER_EVENT = 20
"""A hostile event can break every limit thousands of times; the producer needs the first few."""


@dataclass(frozen=True)
class OversizedInteger:
    """An integer literal too long to convert (see ``_INTEGER_TEXT_CHARS``); JSON loading yields this
    instead of raising, so the refusal can name the field it was in."""

    digits: int


def parse_int(text: str) -> int | OversizedInteger:
    """``json.loads(parse_int=...)``: never ``int()`` an unbounded literal."""
    if len(text) > _INTEGER_TEXT_CHARS:
        return OversizedInteger(len(text.lstrip("-")))
    return int(text)


@dataclass(frozen=True)
class Violation:
    """One limit broken: where (a path as pydantic writes it) and what a shop developer should fix."""

    loc: tuple[str | int, ...]
    message: str


def check_json(data: Any) -> list[Violation]:
    """Every limit the raw JSON of one envelope breaks (at most ``MAX_PROBLEMS_PER_EVENT``).

    Walks without recursion, so no nesting can exhaust the stack, and stops descending where the
    depth limit is broken.
    """
    violations: list[Violation] = []
    for violation in _walk(data):
        violations.append(violation)
        if len(violations) >= MAX_PROBLEMS_PER_EVENT:
            break
    return violations


def _walk(data: Any) -> Iterator[Violation]:
    # (value, location, depth inside properties: 0 outside it, 1 for properties itself)
    stack: list[tuple[Any, tuple[str | int, ...], int]] = [(data, (), 0)]
    while stack:
        value, loc, depth = stack.pop()
        if isinstance(value, dict | list) and depth > MAX_PROPERTIES_DEPTH:
            yield Violation(loc, f"nests deeper than {MAX_PROPERTIES_DEPTH} levels inside properties: flatten it")
            continue
        if isinstance(value, dict):
            if len(value) > MAX_OBJECT_KEYS:
                yield Violation(loc, f"has {len(value):,} keys; an object holds at most {MAX_OBJECT_KEYS}")
                continue
            children: list[tuple[Any, tuple[str | int, ...], int]] = []
            for key, item in value.items():
                if len(key) > MAX_KEY_CHARS:
                    yield Violation(loc, f"has a key of {len(key):,} characters; keys are at most {MAX_KEY_CHARS}")
                    continue
                if _BAD_KEY.search(key):
                    yield Violation(
                        (*loc, safe_text(key)), "the key contains a control character or a lone surrogate"
                    )
                    continue
                inner = depth + 1 if depth else (1 if loc == () and key == "properties" else 0)
                children.append((item, (*loc, key), inner))
            stack.extend(reversed(children))
        elif isinstance(value, list):
            if len(value) > MAX_LIST_ITEMS:
                yield Violation(loc, f"has {len(value):,} items; a list holds at most {MAX_LIST_ITEMS}")
                continue
            inner = depth + 1 if depth else 0
            stack.extend(reversed([(item, (*loc, index), inner) for index, item in enumerate(value)]))
        elif isinstance(value, str):
            if len(value) > MAX_STRING_CHARS:
                yield Violation(loc, f"is {len(value):,} characters long; the limit is {MAX_STRING_CHARS:,}")
            elif _BAD_TEXT.search(value):
                yield Violation(
                    loc,
                    "contains a control character or a lone UTF-16 surrogate (such as \\ud800), "
                    "which is not valid text",
                )
        elif isinstance(value, bool) or value is None:
            continue
        elif isinstance(value, OversizedInteger) or (isinstance(value, int) and abs(value) > MAX_SAFE_INTEGER):
            yield Violation(
                loc,
                f"is outside ±{MAX_SAFE_INTEGER:,} (2^53 - 1), the largest integer every consumer reads "
                "exactly: send it as a string",
            )
        elif isinstance(value, float) and not math.isfinite(value):
            yield Violation(loc, "must be a finite number (NaN, Infinity and 1e999 are not numbers)")


def safe_text(text: str) -> str:
    """``text`` with lone surrogates and control characters escaped, so an error message about them can
    itself be encoded as UTF-8."""
    if not _BAD_KEY.search(text):
        return text
    return _BAD_KEY.sub(lambda match: match.group().encode("unicode_escape").decode("ascii"), text)


def in_time_range(moment: datetime) -> bool:
    """Whether an (aware) timestamp lies where every later computation on it is safe."""
    return EARLIEST_TIMESTAMP <= moment < LATEST_TIMESTAMP


class InvalidJson(ValueError):
    """Text that is not JSON an event could be read from, with where it went wrong."""


def load_json(text: bytes | str) -> Any:
    """JSON, or :class:`InvalidJson` saying where it went wrong; never an unbounded conversion.

    Integer literals are never converted unbounded (:func:`parse_int`); ``NaN``, ``Infinity`` and
    ``1e999`` load as floats and are refused, with their field, by the envelope's limits. The API
    and ``omnicart simulate`` read events through this, so both refuse the same input the same way.
    """
    try:
        return json.loads(text, parse_int=parse_int)
    except json.JSONDecodeError as exc:
        raise InvalidJson(f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except UnicodeDecodeError:
        raise InvalidJson("invalid JSON: not UTF-8") from None
    except RecursionError:
        raise InvalidJson(f"invalid JSON: {_too_deep(text)}") from None


_JSON_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')


def _too_deep(body: bytes | str) -> str:
    """Where text too deep for the JSON reader first nests deeper than any event may."""
    text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else body
    allowed = MAX_PROPERTIES_DEPTH + 3  # a batch, its list, the envelope, then properties
    depth = 0
    for token in _JSON_TOKEN.finditer(text):
        char = token.group()
        if char in "[{":
            depth += 1
            if depth > allowed:
                line = text.count("\n", 0, token.start()) + 1
                column = token.start() - (text.rfind("\n", 0, token.start()) + 1) + 1
                return f"nested deeper than {allowed} levels at line {line} column {column}"
        elif char in "]}":
            depth -= 1
    return f"nested deeper than {allowed} levels"
