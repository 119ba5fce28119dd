"""Whether one event keeps the plan: its type is declared, and its properties fit that type's schema.

Pure and fast (a validator per type is built once), so the API runs it on every event it accepts
and ``omnicart simulate`` on every line of a timeline. Each problem is ``(field, message)`` with the
field written as a producer reads it: ``properties.items[0].price``.

Two validators per type: ``fastjsonschema`` compiles the schema to Python and answers "keeps the
plan" in microseconds, which is nearly every event; only its yes is trusted. When it says no (or the
schema uses a keyword it may read differently), ``jsonschema`` finds every problem and words it.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import fastjsonschema
from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import ValidationError as SchemaError

from omnicart.plan.catalog import TrackingPlan

E164 = re.compile(r"^\+[1-9]\d{6,14}$")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
# Customer ids name a workflow and appear in URLs: letters, digits and a few separators, no "*".
CUSTOMER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@+-]{0,199}$")

_formats = FormatChecker(formats=())


@_formats.checks("email")
def _is_email(value: object) -> bool:
    return not isinstance(value, str) or value == "" or bool(EMAIL.match(value))


@_formats.checks("e164")
def _is_e164(value: object) -> bool:
    return not isinstance(value, str) or value == "" or bool(E164.match(value))


@_formats.checks("iana-time-zone", raises=(ZoneInfoNotFoundError, ValueError, OSError))
def _is_zone(value: object) -> bool:
    """A name the time zone database has (``America`` is a folder there: OSError, not a zone)."""
    if isinstance(value, str):
        ZoneInfo(value)
    return True


def _is_zone_name(value: object) -> bool:
    try:
        return _is_zone(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return False


_FAST_FORMATS: dict[str, Callable[[Any], bool]] = {
    "email": _is_email, "e164": _is_e164, "iana-time-zone": _is_zone_name,
}

_FAST_KEYWORDS = frozenset({
    "type", "format", "pattern", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf",
    "minLength", "maxLength", "minItems", "maxItems", "uniqueItems", "minProperties", "maxProperties", "enum",
    "const", "required", "properties", "additionalProperties", "items", "anyOf", "oneOf", "allOf", "not", "$ref",
    "$defs", "title", "description", "default", "examples",
})
"""Keywords that draft 7 (what ``fastjsonschema`` implements) and draft 2020-12 read alike."""


def problems(
    plan: TrackingPlan, event_type: str, customer_id: str, properties: dict[str, Any], anonymous_id: str = ""
) -> list[tuple[str, str]]:
    """Every way this event breaks the plan; empty when it keeps it.

    A customer event names its customer by ``customer_id``, by ``anonymous_id`` (a visitor not known
    yet) or by both (which links them); each keeps the rules of an id.
    """
    spec = plan.get(event_type)
    if spec is None:
        close = difflib.get_close_matches(event_type, plan.types(), n=1, cutoff=0.75)
        hint = f" — did you mean '{close[0]}'?" if close else ": declare it in the tracking plan (plan/)"
        return [("type", f"'{event_type}' is not in the tracking plan{hint}")]
    found: list[tuple[str, str]] = []
    if spec.needs_customer and not customer_id and not anonymous_id:
        found.append(("customer_id", f"is required: {event_type} events concern a customer"))
    elif customer_id and not spec.needs_customer:
        # Said, not dropped: the producer meant something by it, and no customer's journey would see it.
        found.append(("customer_id", f"must be left out: {event_type} events concern the {spec.concerns}, no customer"))
    elif customer_id and not CUSTOMER_ID.match(customer_id):
        found.append(("customer_id", "must start with a letter or digit and hold only letters, digits and _ . : @ + -"))
    if anonymous_id and not spec.needs_customer:
        found.append(("anonymous_id", f"must be left out: {event_type} events concern the {spec.concerns}, "
                                      "no customer"))
    elif anonymous_id and not CUSTOMER_ID.match(anonymous_id):
        found.append(("anonymous_id", "must start with a letter or digit and hold only letters, digits and "
                                      "_ . : @ + -"))
    if not _keeps_schema(plan, event_type, properties):
        for error in sorted(_validator(plan, event_type).iter_errors(properties), key=lambda e: list(e.absolute_path)):
            found.append(_describe(error))
    return found


def _keeps_schema(plan: TrackingPlan, event_type: str, properties: dict[str, Any]) -> bool:
    """The compiled check's yes; False when it says no or cannot judge this schema."""
    check = _fast_validator(plan, event_type)
    if check is None:
        return False
    try:
        check(properties)
    except fastjsonschema.JsonSchemaException:
        return False
    return True


@lru_cache(maxsize=256)
def _validator(plan: TrackingPlan, event_type: str) -> Draft202012Validator:
    spec = plan.events[event_type]
    return Draft202012Validator({**spec.schema, "$defs": plan.definitions}, format_checker=_formats)


@lru_cache(maxsize=256)
def _fast_validator(plan: TrackingPlan, event_type: str) -> Callable[[Any], Any] | None:
    """The type's schema compiled by ``fastjsonschema``, or None when it uses a keyword outside
    ``_FAST_KEYWORDS`` (a shop's plan may use any of draft 2020-12): then only ``jsonschema`` judges."""
    schema = {**plan.events[event_type].schema, "$defs": plan.definitions}
    if not _fast_readable(schema):
        return None
    try:
        return fastjsonschema.compile(schema, formats=_FAST_FORMATS, use_default=False)  # never fill in data
    except fastjsonschema.JsonSchemaDefinitionException:
        return None


def _fast_readable(schema: Any) -> bool:
    if not isinstance(schema, dict):
        return isinstance(schema, bool)
    for keyword, value in schema.items():
        if keyword.startswith("x-"):
            continue
        if keyword not in _FAST_KEYWORDS:
            return False
        if keyword in ("properties", "$defs"):
            if not isinstance(value, dict) or not all(_fast_readable(sub) for sub in value.values()):
                return False
        elif keyword in ("anyOf", "oneOf", "allOf"):
            if not isinstance(value, list) or not all(_fast_readable(sub) for sub in value):
                return False
        elif keyword in ("items", "additionalProperties", "not") and not _fast_readable(value):
            return False
    return True


def _describe(error: SchemaError) -> tuple[str, str]:
    path = "properties"
    for part in error.absolute_path:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    kind = error.validator
    schema = error.schema if isinstance(error.schema, dict) else {}
    if kind == "required":
        missing = re.match(r"'([^']+)'", error.message)
        return (f"{path}.{missing.group(1)}" if missing else path), "is required"
    if kind in ("format", "pattern") and "x-message" in schema:
        return path, str(schema["x-message"])
    if kind == "type":
        expected = error.validator_value
        names = " or ".join(expected) if isinstance(expected, list) else str(expected)
        return path, f"must be {names.replace('integer', 'a whole number').replace('object', 'an object')}"
    if kind == "minimum":
        return path, f"must be greater than or equal to {error.validator_value}"
    if kind == "maximum":
        return path, f"must be less than or equal to {error.validator_value}"
    if kind == "minLength":
        return path, "must not be empty"
    if kind == "maxLength":
        return path, f"must be at most {error.validator_value} characters"
    if kind == "maxItems":
        return path, f"must hold at most {error.validator_value} items"
    if kind == "enum":
        allowed = error.validator_value if isinstance(error.validator_value, list) else []
        return path, f"must be one of {', '.join(repr(v) for v in allowed)}"
    if kind == "anyOf":  # the plan's "at least one of these properties" (consent_changed: channel or topic)
        options = error.validator_value if isinstance(error.validator_value, list) else []
        needed = [name for option in options for name in option.get("required", ())]
        return path, f"needs at least one of {', '.join(needed)}"
    if kind == "additionalProperties":
        return path, error.message.replace("Additional properties are not allowed", "unknown key")
    return path, f"breaks the tracking plan's rule '{kind}'"  # never echo the value: it may be personal data
