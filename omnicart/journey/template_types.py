"""Type-checking a message template against what its variables hold, from Liquid's own parse tree.

Two checks, both about what the worker will really have when it renders:

* every variable path (``trigger.properties.ordr_id``, ``item.prce`` inside a ``for`` loop) must be
  able to exist — a ``| default`` does not hide a typo, because the path is read from the parse
  tree (python-liquid's static analysis), not from the rendered output;
* a field the tracking plan marks optional must be guarded (``{% if %}`` or ``| default``): the
  template is rendered with the trigger event holding only its required properties, and strict
  rendering fails exactly where an unguarded optional field is printed or looped over.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from liquid import BoundTemplate, RenderContext
from liquid.builtin.expressions.path import Path as LiquidPath
from liquid.builtin.tags.for_tag import ForNode
from liquid.exceptions import LiquidError

from omnicart.journey import shapes
from omnicart.journey.model import Template
from omnicart.journey.shapes import ANY, Shape
from omnicart.journey.templates import (
    TemplateError,
    line_column,
    parse_source,
    render_field,
    sample_context,
    template_sources,
)
from omnicart.plan import TrackingPlan


def check_template_types(template: Template, trigger: str, plan: TrackingPlan) -> list[TemplateError]:
    """Every name that cannot exist, and every optional field read without a guard."""
    roots = shapes.template_roots(plan, trigger)
    errors: list[TemplateError] = []
    for field, source, html in template_sources(template):
        try:
            parsed = parse_source(source, html)
        except LiquidError:
            continue  # a syntax error: check_template reports it
        found = list(_unknown_paths(field, source, parsed, roots, plan))
        errors.extend(found)
        if not found:
            errors.extend(_unguarded(template, field, source, trigger, plan))
    return errors


def _unknown_paths(
    field: str, source: str, parsed: BoundTemplate, roots: dict[str, Shape], plan: TrackingPlan
) -> Iterator[TemplateError]:
    loops = dict(_loop_variables(parsed))
    for name, uses in parsed.analyze().variables.items():
        for use in uses:
            segments = [str(s) for s in use.segments if isinstance(s, str | int)]
            shape = _root(name, roots, loops, plan)
            if shape is None:
                continue  # a local set by assign/capture, or an unknown top-level name (reported elsewhere)
            for depth, segment in enumerate(segments[1:], start=1):
                if segment.isdigit() or "properties" not in shape:
                    shape = shapes.items(plan, shape) if segment.isdigit() else ANY
                    continue
                found = shapes.field(plan, shape, segment)
                if found is None:
                    path = ".".join(segments[: depth + 1])
                    owner = ".".join(segments[:depth])
                    line, column = line_column(source, use.span.index)
                    reason = f"'{path}' cannot exist: {owner} has no field '{segment}'{shapes.suggest(segment, shape)}"
                    yield TemplateError(field, line, column, reason)
                    break
                shape = found[0]


def _root(name: str, roots: dict[str, Shape], loops: dict[str, list[str]], plan: TrackingPlan) -> Shape | None:
    if name in roots:
        return roots[name]
    iterable = loops.get(name)
    if iterable is None or iterable[0] not in roots:
        return None
    shape: Shape = roots[iterable[0]]
    for segment in iterable[1:]:
        found = shapes.field(plan, shape, segment) if "properties" in shape else (ANY, True)
        if found is None:
            return None
        shape = found[0]
    return shapes.items(plan, shape)


def _loop_variables(parsed: BoundTemplate) -> Iterator[tuple[str, list[str]]]:
    """``item`` → ``['cart', 'items']`` for every ``{% for item in cart.items %}``."""
    context = RenderContext(parsed)

    def walk(nodes: Any) -> Iterator[tuple[str, list[str]]]:
        for node in nodes:
            if isinstance(node, ForNode) and isinstance(node.expression.iterable, LiquidPath):
                path = [str(part) for part in node.expression.iterable.path]
                yield node.expression.identifier, path
            yield from walk(node.children(context))

    yield from walk(parsed.nodes)


def _unguarded(template: Template, field: str, source: str, trigger: str, plan: TrackingPlan) -> list[TemplateError]:
    """Render with the trigger holding only what the plan requires: what fails reads an optional
    field without a guard."""
    spec = plan.get(trigger)
    if spec is None:
        return []
    context = sample_context(template, trigger)
    properties = context["trigger"]["properties"]
    context["trigger"]["properties"] = {k: v for k, v in properties.items() if k in spec.required}
    try:
        render_field(field, source, context)
    except TemplateError as exc:
        if "default" not in exc.reason:
            return []  # not about a missing value: the full sample render reports it
        optional = exc.reason.split("'")[1] if exc.reason.count("'") >= 2 else "a field"
        reason = (
            f"'{optional}' may be absent (optional in the tracking plan of {trigger} events): guard it with "
            f"{{% if {optional} %}} or give it a default, like {{{{ {optional} | default: \"\" }}}}"
        )
        return [TemplateError(exc.field, exc.line, exc.column, reason)]
    return []
