"""Conditions in journeys are CEL (Common Expression Language): safe, side-effect free, and fast.

CEL is what Google, Kubernetes and Envoy use for user-written rules; it cannot loop forever, touch
files or call Python, which is exactly what a condition written by a marketer must not do.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

import cel

# The names a condition may use. Anything else is a mistake the validator reports.
VARIABLES = ("customer", "trigger", "event", "events", "engagement", "cart")
# Names bound by CEL macros, e.g. the `e` in `events.exists(e, e.type == "x")`.
_MACRO_VARIABLE = re.compile(r"\.(?:all|exists|exists_one|map|filter)\(\s*([A-Za-z_]\w*)\s*,")


class ConditionError(ValueError):
    """A condition that does not compile, names an unknown variable, or fails when evaluated."""


@lru_cache(maxsize=4096)
def compile_condition(expression: str) -> Any:
    """Compile once per distinct expression; a run evaluates the same few expressions many times."""
    try:
        program = cel.compile(expression)
    except (ValueError, RuntimeError) as exc:
        raise ConditionError(_first_line(str(exc))) from None
    bound = set(_MACRO_VARIABLE.findall(expression))
    unknown = sorted(set(program.variables()) - set(VARIABLES) - bound)
    if unknown:
        raise ConditionError(
            f"unknown name {unknown[0]!r} in condition; use one of: {', '.join(VARIABLES)}"
        )
    return program


def evaluate(expression: str, context: dict[str, Any]) -> Any:
    """The value of an expression (for goal values); errors become ConditionError."""
    program = compile_condition(expression)
    try:
        return program.execute(context)
    except (ValueError, RuntimeError, TypeError, KeyError) as exc:
        raise ConditionError(_first_line(str(exc))) from None


def holds(expression: str | None, context: dict[str, Any]) -> bool:
    """Whether a condition is true. No condition holds; a condition that errors does not.

    Failing closed is deliberate: a condition that reads a property an event lacks should not send
    a message or end a run by accident.
    """
    if expression is None:
        return True
    try:
        return evaluate(expression, context) is True
    except ConditionError:
        return False


def _first_line(message: str) -> str:
    return message.strip().splitlines()[0] if message.strip() else "invalid expression"
