"""Hypothesis strategies for request bodies: good events, each attack class, and their mixtures.

A body is built as Python values and written with ``json.dumps``; what ``json.dumps`` cannot write
(integers of thousands of digits, ``1e999``, nesting deeper than its encoder follows) goes in as
:class:`Raw` JSON text. Customers come from a small pool per fuzz run, so many events, good and bad,
land on the same workflows: a poison pill shows up as a wedged customer, not a lost one.
"""

from __future__ import annotations

import json
import string
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import schemathesis
from hypothesis import strategies as st
from schemathesis import Case, GenerationMode
from schemathesis.core import NotSet

from omnicart.limits import MAX_SAFE_INTEGER, MAX_STRING_CHARS

SOURCES = ["web", "app", "store", "email", "sms", "push", "api"]
ZONES = ["Europe/London", "America/New_York", "Asia/Tokyo", "UTC", "Australia/Lord_Howe"]


@dataclass(frozen=True)
class Raw:
    """JSON text spliced into a body as is."""

    text: str


def encode(value: Any, *, ascii_only: bool = True) -> bytes:
    """The body's bytes. Without ``ascii_only``, a lone surrogate becomes bytes that are not UTF-8."""
    raws: list[str] = []

    def placeholder(obj: Any) -> str:
        if not isinstance(obj, Raw):
            raise TypeError(type(obj).__name__)
        raws.append(obj.text)
        return f"__raw_{len(raws) - 1}__"

    text = json.dumps(value, default=placeholder, ensure_ascii=ascii_only)
    for index, raw in enumerate(raws):
        text = text.replace(f'"__raw_{index}__"', raw, 1)
    return text.encode("utf-8", errors="surrogatepass")


# --- values -----------------------------------------------------------------------------------

safe_leaves = (
    st.none()
    | st.booleans()
    | st.integers(-MAX_SAFE_INTEGER, MAX_SAFE_INTEGER)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
safe_values = st.recursive(
    safe_leaves,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12,
)
key_names = st.text(alphabet=string.ascii_lowercase + "_", min_size=1, max_size=12)


def nested(depth: int) -> Any:
    value: Any = "bottom"
    for level in range(depth):
        value = {"a": value} if level % 2 else [value]
    return value


@st.composite
def moments(draw: st.DrawFn, earliest: int = 2020, latest: int = 2030) -> str:
    """An RFC 3339 timestamp with an offset (some with seconds' fractions, some with ``Z``)."""
    moment = draw(st.datetimes(datetime(earliest, 1, 1), datetime(latest, 12, 31)))
    minutes = draw(st.integers(-23 * 60 - 59, 23 * 60 + 59))
    return moment.replace(tzinfo=timezone(timedelta(minutes=minutes))).isoformat()


def item() -> st.SearchStrategy[dict[str, Any]]:
    optional = st.fixed_dictionaries(
        {"sku": st.text(string.ascii_uppercase + string.digits + "-", min_size=1, max_size=12)},
        optional={
            "name": st.text(max_size=40),
            "quantity": st.integers(0, 20),
            "price": st.floats(0, 10_000, allow_nan=False) | st.sampled_from(["12.50", "1,234.50"]),
            "image_url": st.just("https://shop.example/i.jpg"),
            "url": st.just("https://shop.example/p"),
        },
    )
    return optional


def properties_for(event_type: str) -> st.SearchStrategy[dict[str, Any]]:
    """Properties that pass the event type's own model (only required ones, or more)."""
    cart = st.fixed_dictionaries(
        {"cart_id": st.sampled_from(["cart_1", "cart_2", "cart_3"]), "items": st.lists(item(), max_size=4)},
        optional={
            "total": st.floats(0, 100_000, allow_nan=False),
            "currency": st.sampled_from(["USD", "EUR", "GBP", "SEK"]),
            "restore_url": st.just("https://shop.example/cart/r"),
        },
    )
    shapes: dict[str, st.SearchStrategy[dict[str, Any]]] = {
        "checkout_started": cart,
        "cart_updated": cart,
        "order_placed": st.fixed_dictionaries(
            {"order_id": st.text(string.ascii_lowercase, min_size=1, max_size=8)},
            optional={"total": st.floats(0, 1000, allow_nan=False), "cart_id": st.sampled_from(["cart_1", "cart_2"])},
        ),
        "product_viewed": st.fixed_dictionaries(
            {"sku": st.sampled_from(["MUG-1", "TEE-2"])},
            optional={"name": st.text(max_size=30), "price": st.floats(0, 500, allow_nan=False)},
        ),
        "customer_updated": st.fixed_dictionaries(
            {},
            optional={
                "first_name": st.text(max_size=40),
                "email": st.sampled_from(["ana@example.com", "", "ben+x@shop.example"]),
                "phone": st.sampled_from(["+14155550100", "+447700900123"]),
                "timezone": st.sampled_from(ZONES),
                "consent": st.fixed_dictionaries({}, optional={c: st.booleans() for c in ("email", "sms", "push")}),
                "push_tokens": st.lists(st.text(string.ascii_letters, min_size=1, max_size=20), max_size=3),
            },
        ),
        "message_clicked": st.fixed_dictionaries(
            {"channel": st.sampled_from(["email", "sms", "push"]), "message_id": st.just("msg_1")}
        ),
        "consent_changed": st.fixed_dictionaries(
            {"channel": st.sampled_from(["email", "sms", "push"]), "granted": st.booleans()}
        ),
    }
    return shapes.get(event_type, st.just({}))


EVENT_TYPES = [
    "checkout_started", "cart_updated", "order_placed", "product_viewed",
    "customer_updated", "message_clicked", "consent_changed", "wishlist_shared",
]  # fmt: skip


@st.composite
def good_events(draw: st.DrawFn, token: str) -> dict[str, Any]:
    """A valid envelope for one of a few customers of this run, with some extra properties."""
    event_type = draw(st.sampled_from(EVENT_TYPES))
    properties = dict(draw(properties_for(event_type)))
    properties.update(draw(st.dictionaries(key_names.map(lambda k: f"x_{k}"), safe_values, max_size=3)))
    event_id = draw(st.uuids().map(lambda u: f"evt_{u.hex}") | st.integers(0, 30).map(lambda n: f"evt_{token}_{n}"))
    return {
        "id": event_id,
        "type": event_type,
        "customer_id": draw(st.integers(0, 24).map(lambda n: f"cus_{token}_{n}")),
        "timestamp": draw(moments()),
        "source": draw(st.sampled_from(SOURCES)),
        "properties": properties,
    }


# --- attacks: each turns a good event into one that must be refused --------------------------

lone_surrogates = st.characters(categories=["Cs"])
control_characters = st.characters(min_codepoint=0, max_codepoint=0x1F).filter(lambda c: c not in "\t\n\r")


@st.composite
def attacked(draw: st.DrawFn, token: str) -> dict[str, Any]:
    event = draw(good_events(token))
    props: dict[str, Any] = event["properties"]
    attack = draw(st.sampled_from(ATTACKS))
    if attack == "depth":
        props["x_deep"] = nested(draw(st.integers(17, 400)))
    elif attack == "recursion":
        depth = draw(st.integers(900, 5000))
        props["x_deep"] = Raw("[" * depth + "]" * depth)
    elif attack == "huge integer":
        digits = draw(st.integers(17, 6000))
        props[draw(st.sampled_from(["x_n", "total", "quantity"]))] = Raw("-" * draw(st.integers(0, 1)) + "9" * digits)
    elif attack == "unsafe integer":
        props["x_n"] = draw(st.integers(MAX_SAFE_INTEGER + 1, 2**70) | st.integers(-(2**70), -MAX_SAFE_INTEGER - 1))
    elif attack == "non-finite":
        token_text = draw(st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "-1e999", "1E400"]))
        where = draw(st.sampled_from(["x_f", "total", "price"]))
        if where == "price" and props.get("items"):
            props["items"][0]["price"] = Raw(token_text)
        else:
            props[where if where != "price" else "x_f"] = Raw(token_text)
    elif attack == "lone surrogate":
        bad = draw(st.text(max_size=5)) + draw(lone_surrogates) + draw(st.text(max_size=5))
        if draw(st.booleans()):
            props["x_s"] = bad
        else:
            props[bad] = 1
    elif attack == "control character":
        bad = "a" + draw(control_characters) + "b"
        target = draw(st.sampled_from(["value", "key", "id", "customer_id"]))
        if target == "value":
            props["x_s"] = bad
        elif target == "key":
            props[bad] = 1
        else:
            event[target] = event[target] + bad
    elif attack == "calendar edge":
        event["timestamp"] = draw(
            st.sampled_from(
                [
                    "0001-01-01T00:00:00+00:01",
                    "0001-01-01T00:00:00+23:59",
                    "9999-12-31T23:59:59-00:01",
                    "9999-12-31T23:59:59.999999-23:59",
                    "1969-12-31T23:59:59Z",
                    "2100-01-01T00:00:00Z",
                ]
            )
            | moments(1, 9999).filter(lambda text: not 1971 <= int(text[:4]) <= 2099)
        )
    elif attack == "huge string":
        size = draw(st.sampled_from([MAX_STRING_CHARS + 1, 20_000, 900_000]))
        if draw(st.booleans()):
            event["type"] = "customer_updated"
            event["properties"] = {"first_name": "A" * size}
        else:
            props["x_s"] = "B" * size
    elif attack == "short field too long":
        event["type"] = "customer_updated"
        field = draw(st.sampled_from(["first_name", "email", "phone", "timezone", "locale"]))
        event["properties"] = {field: "a" * 300}
    elif attack == "too big":
        props["x_notes"] = ["n" * 8000] * draw(st.integers(5, 12))
    elif attack == "too many":
        props["x_list"] = [0] * 501
    elif attack == "wrong shape":
        key = draw(st.sampled_from(["id", "type", "customer_id", "timestamp", "source", "properties"]))
        event[key] = draw(safe_leaves | st.just(None))
    return event


ATTACKS = [
    "depth", "recursion", "huge integer", "unsafe integer", "non-finite", "lone surrogate",
    "control character", "calendar edge", "huge string", "short field too long", "too big",
    "too many", "wrong shape",
]  # fmt: skip


# --- bodies -----------------------------------------------------------------------------------


@st.composite
def batches(draw: st.DrawFn, token: str, attacks: int) -> bytes:
    """A single envelope or ``{"events": [...]}`` with 1 to ``attacks`` bad events among good ones (or
    only good ones when ``attacks`` is 0)."""
    events = draw(st.lists(good_events(token), min_size=1 - min(attacks, 1), max_size=6))
    for _ in range(draw(st.integers(min(attacks, 1), attacks))):
        events.insert(draw(st.integers(0, len(events))), draw(attacked(token)))
    body: Any = events[0] if len(events) == 1 and draw(st.booleans()) else {"events": events}
    return encode(body, ascii_only=draw(st.booleans()))


@st.composite
def broken_json(draw: st.DrawFn, token: str) -> bytes:
    """Bytes that are not a JSON body: random bytes, or a good body cut short or corrupted."""
    choice = draw(st.integers(0, 2))
    if choice == 0:
        return draw(st.binary(max_size=300))
    good = draw(batches(token, attacks=0))
    cut = draw(st.integers(0, max(0, len(good) - 1)))
    return good[:cut] if choice == 1 else good[:cut] + draw(st.binary(min_size=1, max_size=4)) + good[cut:]


def bodies(token: str, schema_bodies: st.SearchStrategy[bytes] | None = None) -> st.SearchStrategy[bytes]:
    """The whole mix: mostly attacks among good events, some all-good batches, broken JSON and,
    when given, bodies generated from the API's own OpenAPI document."""
    mix = [batches(token, attacks=2)] * 5 + [batches(token, attacks=0)] * 2 + [broken_json(token)]
    if schema_bodies is not None:
        mix += [schema_bodies] * 2
    return st.one_of(mix)




def schema_bodies(openapi: dict[str, Any]) -> st.SearchStrategy[bytes]:
    """Bodies for ``POST /v1/events`` that schemathesis generates from the API's own OpenAPI
    document: conforming ones and, in its negative mode, ones that break the schema on purpose."""
    schema = schemathesis.openapi.from_dict(openapi)
    operation = schema["/v1/events"]["POST"]
    cases = operation.as_strategy(generation_mode=GenerationMode.POSITIVE) | operation.as_strategy(
        generation_mode=GenerationMode.NEGATIVE
    )
    return cases.map(_case_body)


def _case_body(case: Case[Any]) -> bytes:
    body = case.body
    if isinstance(body, NotSet):
        return b""
    if isinstance(body, bytes):
        return body
    return json.dumps(body, ensure_ascii=False).encode("utf-8", errors="surrogatepass")
