"""Conditions in journeys are CEL (Common Expression Language): safe, side-effect free, and fast.

CEL is what Google, Kubernetes and Envoy use for user-written rules; it cannot loop forever, touch
files or call Python, which is exactly what a condition written by a marketer must not do.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

import cel

# The names a condition may use. Anything else is a mistake the validator reports.
VARIABLES = ("customer", "trigger", "event", "events", "engagement", "cart", "catalog")
# Fields with a fixed shape: a name outside these is a typo, not a custom property.
ENGAGEMENT_KINDS = ("sent", "delivered", "opened", "clicked", "bounced", "failed")
ENVELOPE_FIELDS = ("id", "type", "customer_id", "timestamp", "source", "properties")
FIXED_FIELDS = {"engagement": ENGAGEMENT_KINDS, "event": ENVELOPE_FIELDS, "trigger": ENVELOPE_FIELDS}
# Names bound by CEL macros, e.g. the `e` in `events.exists(e, e.type == "x")`.
_MACRO_VARIABLE = re.compile(r"\.(?:all|exists|exists_one|map|filter)\(\s*([A-Za-z_]\w*)\s*,")


class ConditionError(ValueError):
    """A condition that does not compile, names an unknown variable, or fails when evaluated."""


# A dotted path from a variable, e.g. `event.properties.items` (not preceded by a dot or a letter).
_PATH = re.compile(r"(?<![\w.])(" + "|".join(VARIABLES) + r")\b((?:\.[A-Za-z_]\w*)*)")
# A path that is the whole argument of size(...).
_SIZE_BEFORE = re.compile(r"(?<![\w.])size\(\s*$")
_CLOSE_AFTER = re.compile(r"\s*\)")
_SIZE = "#size"

# What a condition reads of a value: all of it, only how many items it has, or some of its fields.
Plan = Literal["whole", "size"] | dict[str, "Plan"]


@dataclass(frozen=True)
class Condition:
    """A compiled expression and the parts of the context it can read.

    Handing CEL a value costs time in proportion to its size, so only the fields an expression
    names are passed: a trigger condition on one property of the event does not pay for the cart.
    """

    program: Any
    plans: dict[str, Plan]

    def execute(self, scope: Mapping[str, Any]) -> Any:
        return self.program.execute({root: _prune(scope[root], plan) for root, plan in self.plans.items()})


@lru_cache(maxsize=4096)
def compile_condition(expression: str) -> Condition:
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
    paths: dict[str, set[tuple[str, ...]]] = {}
    for match in _PATH.finditer(expression):
        root, rest = match.groups()
        if root in bound:
            continue
        path = tuple(part for part in rest.split(".") if part)
        _check_field(root, path)
        if _SIZE_BEFORE.search(expression, 0, match.start()) and _CLOSE_AFTER.match(expression, match.end()):
            path = (*path, _SIZE)  # `size(x)` reads how many, not what
        paths.setdefault(root, set()).add(path)
    return Condition(program, {root: _plan(tuple(found)) for root, found in paths.items()})


def _check_field(root: str, path: tuple[str, ...]) -> None:
    fields = FIXED_FIELDS.get(root)
    if fields is None or not path or path[0] in fields:
        return
    close = difflib.get_close_matches(path[0], fields, n=1)
    hint = f" — did you mean '{close[0]}'?" if close else f"; use one of: {', '.join(fields)}"
    raise ConditionError(f"unknown field '{path[0]}' of {root}{hint}")


def _plan(paths: tuple[tuple[str, ...], ...]) -> Plan:
    """Merge the paths read from one value into what to hand CEL of it.

    A value only ever counted (``size(cart.items)``) needs just a stand-in of the same size: a cart's
    items cost CEL far more to receive than their number does.
    """
    if any(not path for path in paths):
        return "whole"
    if all(path == (_SIZE,) for path in paths):
        return "size"
    if any(path[0] == _SIZE for path in paths):
        return "whole"
    return {head: _plan(tuple(p[1:] for p in paths if p[0] == head)) for head in sorted({p[0] for p in paths})}


def _prune(value: Any, plan: Plan) -> Any:
    """The parts of ``value`` the plan reads; the whole value where a field is missing or not a map."""
    if plan == "whole":
        return value
    if plan == "size":
        return _same_size(value)
    if not isinstance(value, dict):
        return value
    pruned: dict[str, Any] = {}
    for head, inner in plan.items():
        if head not in value:
            return value  # a method (`.startsWith`) or a missing key: keep the value as it is
        pruned[head] = _prune(value[head], inner)
    return pruned


def _same_size(value: Any) -> Any:
    if isinstance(value, list):
        return [0] * len(value)
    if isinstance(value, dict):
        return dict.fromkeys(value, 0)
    return value


class LazyScope(Mapping[str, Any]):
    """The variables of a condition, each built only if an expression reads it."""

    def __init__(self, factories: Mapping[str, Callable[[], Any]]) -> None:
        self._factories = factories
        self._values: dict[str, Any] = {}

    def __getitem__(self, name: str) -> Any:
        if name not in self._values:
            self._values[name] = self._factories[name]()
        return self._values[name]

    def __iter__(self) -> Any:
        return iter(self._factories)

    def __len__(self) -> int:
        return len(self._factories)


def evaluate(expression: str, context: Mapping[str, Any]) -> Any:
    """The value of an expression (for goal values); errors become ConditionError."""
    condition = compile_condition(expression)
    try:
        return condition.execute(context)
    except (ValueError, RuntimeError, TypeError, KeyError) as exc:
        raise ConditionError(_first_line(str(exc))) from None


def holds(expression: str | None, context: Mapping[str, Any]) -> bool:
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
