"""A journey's steps as a Mermaid flowchart, written on the server from the journey model.

The browser only lays the text out (Mermaid, vendored under ``static/``), so what the diagram says is
decided here, where it is tested: one node per step, every way out of it as an edge (a wait-for's
event and timeout, each branch case, each split variant), and on each node the step's live counts
from the analytics report.
"""

from __future__ import annotations

from collections.abc import Iterator

from omnicart.analytics.report import GroupStats
from omnicart.journey.model import Journey, Step, WaitSpec

END = "journey_end"
START = "journey_start"


def step_counts(step: Step, stats: GroupStats | None) -> list[str]:
    """The numbers a marketer reads on a step, one short line each; nothing for a step never reached.
    Every step says how many wait there now; a send also what it sent and what became of it."""
    if stats is None:
        return []
    lines = []
    counts = [("waiting", stats.waiting), ("sent", stats.sent), ("opened", stats.opened), ("clicked", stats.clicked)]
    always = ("waiting", "sent") if step.send is not None else ("waiting",)
    shown = [f"{name} {value}" for name, value in counts if value or name in always]
    lines.append(" · ".join(shown))
    lines.extend(f"skipped {reason} {count}" for reason, count in sorted(stats.skipped.items()))
    if stats.held:
        lines.append(f"held {stats.held}")
    if stats.conversions:
        lines.append(f"converted {stats.conversions}")
    return lines


def describe_step(step: Step) -> str:
    """What the step does, in the words of the journey file."""
    if step.wait is not None:
        wait = step.wait
        if isinstance(wait, WaitSpec):
            if wait.after_trigger:
                return f"wait until {wait.after_trigger} after trigger"
            return f"wait until {wait.until}"
        return f"wait {wait}"
    if step.send is not None:
        channels = [f"{step.send.channel or 'message'}: {step.send.template}"]
        channels += [f"else {fallback.channel or 'message'}: {fallback.template}" for fallback in step.send.fallback]
        return "send " + ", ".join(channels)
    if step.wait_for is not None:
        return f"wait for {step.wait_for.event} (timeout {step.wait_for.timeout})"
    if step.branch is not None:
        return "branch"
    if step.split is not None:
        return f"split {step.split.experiment or ''}".rstrip()
    return f"exit: {step.exit}"


def mermaid_flowchart(journey: Journey, stats: dict[str, GroupStats] | None = None) -> str:
    """The flowchart text (``flowchart TD``) of the journey, each step labelled with its counts."""
    stats = stats or {}
    ids = journey.step_ids()
    lines = ["flowchart TD", f'  {START}(["{_text("trigger: " + journey.trigger.describe())}"])']
    lines.append(f"  {START} --> {_node(ids[0])}")
    for index, step in enumerate(journey.steps):
        step_id = ids[index]
        following = ids[index + 1] if index + 1 < len(ids) else END
        label = "<br/>".join(_text(line) for line in [f"{step_id}: {describe_step(step)}",
                                                        *step_counts(step, stats.get(step_id))])
        lines.append(f"  {_shape(step, _node(step_id), label)}")
        lines.extend(f"  {_node(step_id)} {edge}" for edge in _edges(step, following))
    lines.append(f'  {END}(["end"])')
    sends = [_node(step_id) for step_id, step in zip(ids, journey.steps, strict=True) if step.send]
    if sends:
        lines.append(f"  class {','.join(sends)} send")
    lines.append("  classDef send fill:#e8f1ff,stroke:#1d4ed8")
    return "\n".join(line for line in lines if line)


def _edges(step: Step, following: str) -> Iterator[str]:
    if step.exit is not None:
        return
    if step.wait_for is not None:
        yield f'-- "{_text(step.wait_for.event)}" --> {_node(step.wait_for.on_event or following)}'
        yield f'-- "timeout" --> {_node(step.wait_for.on_timeout or following)}'
    elif step.branch is not None:
        for case in step.branch:
            if case.else_ is not None:
                yield f'-- "else" --> {_node(case.else_)}'
            else:
                yield f'-- "{_text("if " + (case.if_ or ""))}" --> {_node(case.goto or following)}'
    elif step.split is not None:
        for name, variant in step.split.variants.items():
            yield f'-- "{_text(f"{name} ({variant.weight:g})")}" --> {_node(variant.goto or following)}'
    else:
        yield f"--> {_node(step.goto or following)}"


def _shape(step: Step, node: str, label: str) -> str:
    if step.exit is not None:
        return f'{node}(["{label}"])'
    if step.branch is not None or step.split is not None:
        return f'{node}{{"{label}"}}'
    if step.wait_for is not None:
        return f'{node}{{{{"{label}"}}}}'
    return f'{node}["{label}"]'


def _node(step_id: str) -> str:
    """Mermaid ids: a prefix keeps step ids such as ``end`` clear of Mermaid's keywords."""
    return step_id if step_id in (START, END) else f"s_{step_id}"


def _text(value: str) -> str:
    """Text safe inside a quoted Mermaid label: quotes and angle brackets as Mermaid's entity codes."""
    return value.replace("&", "#38;").replace('"', "#34;").replace("<", "#60;").replace(">", "#62;")
