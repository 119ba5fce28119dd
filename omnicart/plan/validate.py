"""Whether one event keeps the plan: its type is declared, and its properties fit that type's schema.

Pure and fast (a validator per type is built once), so the API runs it on every event it accepts
and ``omnicart simulate`` on every line of a timeline. Each problem is ``(field, message)`` with the
field written as a producer reads it: ``properties.items[0].price``.
"""

from __future__ import annotations

import difflib
import re
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

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
    for error in sorted(_validator(plan, event_type).iter_errors(properties), key=lambda e: list(e.absolute_path)):
        found.append(_describe(error))
    return found


@lru_cache(maxsize=256)
def _validator(plan: TrackingPlan, event_type: str) -> Draft202012Validator:
    spec = plan.events[event_type]
    return Draft202012Validator({**spec.schema, "$defs": plan.definitions}, format_checker=_formats)


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
