"""Type-checking a condition against what its variables hold: names that cannot exist, fields that
may be absent without a guard, and a number compared with text.

The Rust CEL binding that evaluates conditions exposes no syntax tree, so the check parses each
condition with cel-python's Lark grammar (the same CEL syntax) and walks that tree; cel-python never
evaluates anything here. Working on the tree, not the text, is what makes names bound by macros
(``events.exists(e, e.properties.order_id == "x")``) checked and words inside string literals not.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from celpy.celparser import CELParseError, CELParser
from lark import Token, Tree

from omnicart.journey import shapes
from omnicart.journey.shapes import ANY, Shape
from omnicart.plan import TrackingPlan

_MACROS = ("all", "exists", "exists_one", "map", "filter")
_BOOL: Shape = {"type": "boolean"}
_INT: Shape = {"type": "integer"}
_LITERALS = {
    "INT_LIT": _INT,
    "UINT_LIT": _INT,
    "FLOAT_LIT": {"type": "number"},
    "STRING_LIT": {"type": "string"},
    "MLSTRING_LIT": {"type": "string"},
    "BYTES_LIT": ANY,
    "BOOL_LIT": _BOOL,
    "NULL_LIT": {"type": "null"},
}
_FUNCTION_RESULTS: dict[str, Shape] = {
    "size": _INT,
    "int": _INT,
    "uint": _INT,
    "double": {"type": "number"},
    "string": {"type": "string"},
    "bool": _BOOL,
}
_METHOD_RESULTS: dict[str, Shape] = {
    "size": _INT,
    "startsWith": _BOOL,
    "endsWith": _BOOL,
    "contains": _BOOL,
    "matches": _BOOL,
}


@dataclass(frozen=True)
class TypeProblem:
    """A problem at a 1-based line and column of the condition's own text."""

    line: int
    column: int
    message: str


@lru_cache(maxsize=1)
def _parser() -> CELParser:
    return CELParser()


def check_condition(expression: str, roots: dict[str, Shape], plan: TrackingPlan) -> list[TypeProblem]:
    """Every type problem of a condition that compiles (syntax errors are reported elsewhere)."""
    try:
        tree = _parser().parse(expression)
    except CELParseError:
        return []
    walker = _Walker(plan)
    walker.walk(tree, dict(roots), frozenset())
    return walker.problems


class _Walker:
    def __init__(self, plan: TrackingPlan) -> None:
        self.plan = plan
        self.problems: list[TypeProblem] = []

    def report(self, where: Tree[Any] | Token, message: str) -> None:
        token = where if isinstance(where, Token) else _first_token(where)
        line, column = (token.line or 1, token.column or 1) if token is not None else (1, 1)
        self.problems.append(TypeProblem(line, column, message))

    def walk(self, node: Tree[Any] | Token, env: dict[str, Shape], guards: frozenset[str]) -> Shape:
        if isinstance(node, Token):
            return ANY
        kind = node.data
        children = node.children
        if kind == "expr" and len(children) == 3:  # c ? a : b
            self.walk(children[0], env, guards)
            result = self.walk(children[1], env, guards | _has_paths(children[0]))
            self.walk(children[2], env, guards)
            return result
        if kind == "conditionaland" and len(children) == 2:
            self.walk(children[0], env, guards)
            self.walk(children[1], env, guards | _has_paths(children[0]))
            return _BOOL
        if kind == "relation" and len(children) == 2:
            return self._compare(node, env, guards)
        if kind in ("addition", "multiplication") and len(children) == 2:
            left = self.walk(children[0].children[0], env, guards)
            right = self.walk(children[1], env, guards)
            return left if _family(left) == _family(right) else ANY
        if kind == "unary" and len(children) == 2:
            inner = self.walk(children[1], env, guards)
            return _BOOL if children[0].data == "unary_not" else inner
        if kind == "member_dot":
            return self._field(node, env, guards, required=True)
        if kind == "member_dot_arg":
            return self._method(node, env, guards)
        if kind == "member_index":
            receiver = self.walk(children[0], env, guards)
            self.walk(children[1], env, guards)
            return shapes.items(self.plan, receiver) if "array" in shapes.kinds(receiver) else ANY
        if kind == "ident":
            name = str(children[0])
            return env.get(name, ANY)
        if kind == "ident_arg":
            return self._function(node, env, guards)
        if kind == "literal":
            token = children[0]
            return _LITERALS.get(token.type, ANY) if isinstance(token, Token) else ANY
        last: Shape = ANY
        for child in children:
            last = self.walk(child, env, guards)
        return last if len(children) == 1 else ANY

    def _field(self, node: Tree[Any], env: dict[str, Shape], guards: frozenset[str], *, required: bool) -> Shape:
        receiver_node, name_token = node.children[0], node.children[1]
        receiver = self.walk(receiver_node, env, guards)
        name = str(name_token)
        if "x-absent" in receiver:
            self.report(name_token, str(receiver["x-absent"]))
            return ANY
        found = shapes.field(self.plan, receiver, name)
        path = _path(node) or name
        if found is None:
            owner = _path(receiver_node) or "this value"
            hint = shapes.suggest(name, receiver)
            self.report(name_token, f"'{path}' cannot exist: {owner} has no field '{name}'{hint}")
            return ANY
        shape, always = found
        if required and not always and path not in guards:
            where = f" of {receiver['x-event']} events" if "x-event" in receiver else ""
            self.report(
                name_token,
                f"'{path}' may be absent (optional in the tracking plan{where}): "
                f"guard it, like has({path}) && ...",
            )
        return shape

    def _method(self, node: Tree[Any], env: dict[str, Shape], guards: frozenset[str]) -> Shape:
        receiver_node, name_token = node.children[0], node.children[1]
        arguments = list(node.children[2].children) if len(node.children) > 2 else []
        receiver = self.walk(receiver_node, env, guards)
        name = str(name_token)
        if name in _MACROS and arguments and _ident(arguments[0]) is not None:
            bound = dict(env)
            bound[str(_ident(arguments[0]))] = shapes.items(self.plan, receiver)
            for argument in arguments[1:]:
                self.walk(argument, bound, guards)
            return _BOOL if name not in ("map", "filter") else {"type": "array"}
        for argument in arguments:
            self.walk(argument, env, guards)
        return _METHOD_RESULTS.get(name, ANY)

    def _function(self, node: Tree[Any], env: dict[str, Shape], guards: frozenset[str]) -> Shape:
        name = str(node.children[0])
        arguments = list(node.children[1].children) if len(node.children) > 1 else []
        if name == "has" and arguments:
            target = _descend(arguments[0])
            if target is not None and target.data == "member_dot":
                self._field(target, env, guards, required=False)  # a typo is still an error
                return _BOOL
        for argument in arguments:
            self.walk(argument, env, guards)
        return _FUNCTION_RESULTS.get(name, ANY)

    def _compare(self, node: Tree[Any], env: dict[str, Shape], guards: frozenset[str]) -> Shape:
        operator, right_node = node.children
        left_node = operator.children[0]
        left = self.walk(left_node, env, guards)
        right = self.walk(right_node, env, guards)
        families = {_family(left), _family(right)}
        if operator.data != "relation_in" and families == {"number", "text"}:
            self.report(
                left_node,
                f"compares a number with text ({_describe(left_node)} and {_describe(right_node)}): it is never "
                "true; write both as numbers, like engagement.opened > 0",
            )
        return _BOOL


def _family(shape: Shape) -> str | None:
    found = shapes.kinds(shape) - {"null"}
    if found and found <= {"integer", "number"}:
        return "number"
    if found == {"string"}:
        return "text"
    return None


def _descend(node: Tree[Any] | Token) -> Tree[Any] | None:
    """The one meaningful node under a chain of single-child wrappers (expr → … → member_dot)."""
    while isinstance(node, Tree):
        if node.data in ("member_dot", "member_dot_arg", "member_index", "ident", "ident_arg", "literal"):
            return node
        if len(node.children) != 1:
            return node
        node = node.children[0]
    return None


def _ident(node: Tree[Any] | Token) -> str | None:
    found = _descend(node)
    return str(found.children[0]) if found is not None and found.data == "ident" else None


def _path(node: Tree[Any] | Token) -> str | None:
    """``a.b.c`` for a chain of names, None for anything else."""
    found = _descend(node)
    if found is None:
        return None
    if found.data == "ident":
        return str(found.children[0])
    if found.data == "member_dot":
        head = _path(found.children[0])
        return f"{head}.{found.children[1]}" if head is not None else None
    return None


def _has_paths(node: Tree[Any] | Token) -> frozenset[str]:
    """The paths a condition tests with ``has(...)``: what its right-hand side may read."""
    found: set[str] = set()
    for call in _subtrees(node, "ident_arg"):
        if str(call.children[0]) == "has" and len(call.children) > 1:
            path = _path(call.children[1].children[0])
            if path is not None:
                found.add(path)
    return frozenset(found)


def _subtrees(node: Tree[Any] | Token, data: str) -> Iterator[Tree[Any]]:
    if isinstance(node, Tree):
        yield from node.find_data(data)


def _first_token(node: Tree[Any]) -> Token | None:
    for token in node.scan_values(lambda value: isinstance(value, Token)):
        return token  # type: ignore[no-any-return]
    return None


def _describe(node: Tree[Any] | Token) -> str:
    path = _path(node)
    if path is not None:
        return path
    found = _descend(node)
    if found is not None and found.data == "literal":
        return str(found.children[0])
    return "a value"
