"""The checks a schema cannot express: how steps connect, conditions, templates, names of things.

A journey can be well-formed YAML of the right shape and still never work: a ``goto`` to a step
that was renamed, a step nothing leads to, a condition with a typo, a template that is missing or
for another channel, an event type one letter away from the one the shop sends. Each of these is
found here, before anything runs, and reported at the line that says it.
"""

from __future__ import annotations

import difflib
import re
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import timedelta
from functools import lru_cache
from typing import Any, get_origin
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from pydantic import BaseModel

from omnicart.events import PROPERTY_MODELS, Channel
from omnicart.journey import shapes
from omnicart.journey.conditions import VARIABLES, ConditionError, compile_condition
from omnicart.journey.durations import DurationError, parse_duration
from omnicart.journey.loader import (
    TEMPLATE_NAME,
    Path_,
    Positions,
    Problem,
    TemplateFile,
    type_members,
    variant_differences,
)
from omnicart.journey.model import Journey, Policies, QuietHours, Step, percent
from omnicart.journey.template_types import check_template_types
from omnicart.journey.templates import check_template
from omnicart.journey.typecheck import check_condition
from omnicart.plan import TrackingPlan, default_plan


def check_journey(
    journey: Journey,
    templates: Mapping[str, TemplateFile],
    positions: Positions,
    available_templates: Sequence[str] = (),
    plan: TrackingPlan | None = None,
) -> list[Problem]:
    """Every problem of a schema-valid journey, in file order.

    ``templates`` holds the template files the journey names that exist (by name);
    ``available_templates`` every template name there is, for "did you mean" suggestions. Event
    types, conditions and templates are checked against the tracking plan (by default this
    deployment's).
    """
    checker = _Checker(journey, templates, positions, available_templates, plan or default_plan())
    problems = [
        *checker.step_ids(),
        *checker.references(),
        *checker.reachability(),
        *checker.conditions(),
        *checker.durations(),
        *checker.event_types(),
        *checker.trigger_key(),
        *checker.timezone(),
        *checker.quiet_hours(),
        *checker.templates(),
    ]
    return sorted(problems, key=lambda p: (p.line, p.column))


def _suggest(word: str, choices: Sequence[str], cutoff: float = 0.6) -> str | None:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=cutoff)
    return close[0] if close else None


class _Checker:
    def __init__(
        self,
        journey: Journey,
        templates: Mapping[str, TemplateFile],
        positions: Positions,
        available_templates: Sequence[str],
        plan: TrackingPlan,
    ) -> None:
        self.plan = plan
        self.journey = journey
        self.steps = journey.steps
        self.ids = journey.step_ids()
        self.index: dict[str, int] = {}
        for number, step_id in enumerate(self.ids):
            self.index.setdefault(step_id, number)
        self.template_files = templates
        self.positions = positions
        self.available = list(available_templates)

    def at(self, path: Path_, message: str) -> Problem:
        return self.positions.problem(path, message)

    # --- steps ---------------------------------------------------------------------------

    def step_ids(self) -> Iterator[Problem]:
        for number, step_id in enumerate(self.ids):
            first = self.index[step_id]
            if first != number:
                line, _ = self.positions.value(("steps", first))
                path: Path_ = ("steps", number, "id") if self.steps[number].id else ("steps", number)
                yield self.at(path, f"duplicate step id '{step_id}': the step on line {line} already uses it")

    def _targets(self, number: int) -> Iterator[tuple[Path_, str]]:
        """Every step a step names, with where it names it."""
        step = self.steps[number]
        base: Path_ = ("steps", number)
        if step.goto is not None:
            yield (*base, "goto"), step.goto
        if step.wait_for is not None:
            if step.wait_for.on_event is not None:
                yield (*base, "wait_for", "on_event"), step.wait_for.on_event
            if step.wait_for.on_timeout is not None:
                yield (*base, "wait_for", "on_timeout"), step.wait_for.on_timeout
        for case_number, case in enumerate(step.branch or []):
            if case.goto is not None:
                yield (*base, "branch", case_number, "goto"), case.goto
            if case.else_ is not None:
                yield (*base, "branch", case_number, "else"), case.else_
        if step.split is not None:
            for name, variant in step.split.variants.items():
                if variant.goto is not None:
                    yield (*base, "split", "variants", name, "goto"), variant.goto

    def references(self) -> Iterator[Problem]:
        for number in range(len(self.steps)):
            for path, target in self._targets(number):
                if target not in self.index:
                    match = _suggest(target, self.ids)
                    known = ", ".join(dict.fromkeys(self.ids))
                    hint = f" — did you mean '{match}'?" if match else f": the steps are {known}"
                    yield self.at(path, f"{path[-1]} '{target}' names no step{hint}")

    def _next(self, number: int) -> list[int]:
        """The steps a step can continue to; past the last step the run completes."""
        step = self.steps[number]
        following = [number + 1] if number + 1 < len(self.steps) else []
        kind = step.kind
        if kind == "exit":
            return []
        if step.branch is not None:
            targets = [self.index[t] for c in step.branch if (t := c.goto or c.else_) in self.index]
            return targets if step.branch[-1].else_ is not None else [*targets, *following]
        if step.split is not None:
            chosen = [variant.goto for variant in step.split.variants.values()]
            return [self.index[t] for t in chosen if t is not None and t in self.index] + (
                following if None in chosen else []
            )
        if step.wait_for is not None:
            found: list[int] = []
            for target in (step.wait_for.on_event, step.wait_for.on_timeout):
                if target is None:
                    found.extend(following)
                elif target in self.index:
                    found.append(self.index[target])
            return found
        if step.goto is not None:
            return [self.index[step.goto]] if step.goto in self.index else []
        return following

    def reachability(self) -> Iterator[Problem]:
        targets = (target for number in range(len(self.steps)) for _, target in self._targets(number))
        if any(target not in self.index for target in targets):
            return  # where a dangling goto meant to go is unknown: fix that first
        reached = {0}
        queue = deque([0])
        while queue:
            for following in self._next(queue.popleft()):
                if following not in reached:
                    reached.add(following)
                    queue.append(following)
        for number in range(1, len(self.steps)):
            if number in reached or number - 1 not in reached:
                continue  # one message per block of unreachable steps, at its first step
            reason = _why_not_next(self.steps[number - 1])
            yield self.at(
                ("steps", number),
                f"step '{self.ids[number]}' is never reached: {reason}, and no goto, branch, split or wait_for "
                "names it",
            )

    # --- conditions ----------------------------------------------------------------------

    def _expressions(self) -> Iterator[tuple[Path_, str, str]]:
        journey = self.journey
        if journey.trigger.if_:
            yield ("trigger", "if"), journey.trigger.if_, "condition"
        for number, exit_when in enumerate(journey.exit_when):
            if exit_when.if_:
                yield ("exit_when", number, "if"), exit_when.if_, "condition"
        if journey.goal is not None:
            if journey.goal.if_:
                yield ("goal", "if"), journey.goal.if_, "condition"
            if journey.goal.value:
                yield ("goal", "value"), journey.goal.value, "value"
        for number, step in enumerate(self.steps):
            if step.wait_for is not None and step.wait_for.if_:
                yield ("steps", number, "wait_for", "if"), step.wait_for.if_, "condition"
            if step.send is not None and step.send.skip_if:
                yield ("steps", number, "send", "skip_if"), step.send.skip_if, "condition"
            for case_number, case in enumerate(step.branch or []):
                if case.if_:
                    yield ("steps", number, "branch", case_number, "if"), case.if_, "condition"

    def conditions(self) -> Iterator[Problem]:
        for path, expression, what in self._expressions():
            try:
                compile_condition(expression)
            except ConditionError as exc:
                line, column, reason = _condition_reason(str(exc))
                at = self.positions.inside(path, line, column, expression) if line else self.positions.value(path)
                yield Problem(self.positions.file, at[0], at[1], f"bad {what}: {reason}")
                continue
            roots = shapes.condition_roots(self.plan, self.journey.trigger.event_type, self._event_at(path))
            for problem in check_condition(expression, roots, self.plan):
                at = self.positions.inside(path, problem.line, problem.column, expression)
                yield Problem(self.positions.file, at[0], at[1], f"bad {what}: {problem.message}")

    def _event_at(self, path: Path_) -> str | None:
        """The type of the event a condition at ``path`` sees as ``event`` (None: there is none)."""
        journey = self.journey
        if path[0] == "trigger":
            return journey.trigger.event_type
        if path[0] == "exit_when" and isinstance(path[1], int):
            return journey.exit_when[path[1]].event
        if path[0] == "goal" and journey.goal is not None:
            return journey.goal.event
        if path[0] == "steps" and isinstance(path[1], int) and "wait_for" in path:
            wait_for = self.steps[path[1]].wait_for
            return wait_for.event if wait_for is not None else None
        return None

    # --- values --------------------------------------------------------------------------

    def durations(self) -> Iterator[Problem]:
        found: list[tuple[Path_, str]] = []
        if self.journey.goal is not None:
            found.append((("goal", "within"), self.journey.goal.within))
        if self.journey.trigger.max_age is not None:
            found.append((("trigger", "max_age"), self.journey.trigger.max_age))
        for number, step in enumerate(self.steps):
            if step.send is not None and step.send.late_after is not None:
                found.append((("steps", number, "send", "late_after"), step.send.late_after))
            if isinstance(step.wait, str):
                found.append((("steps", number, "wait"), step.wait))
            elif step.wait is not None and step.wait.after_trigger is not None:
                found.append((("steps", number, "wait", "after_trigger"), step.wait.after_trigger))
            if step.wait_for is not None:
                found.append((("steps", number, "wait_for", "timeout"), step.wait_for.timeout))
        yield from _duration_problems(self.positions, found)

    def _event_fields(self) -> Iterator[tuple[Path_, str]]:
        trigger = self.journey.trigger
        if trigger.event is not None:
            yield ("trigger", "event"), trigger.event
        if trigger.after is not None:
            yield ("trigger", "after", "event"), trigger.after.event
        for number, exit_when in enumerate(self.journey.exit_when):
            yield ("exit_when", number, "event"), exit_when.event
        if self.journey.goal is not None:
            yield ("goal", "event"), self.journey.goal.event
        for number, step in enumerate(self.steps):
            if step.wait_for is not None:
                yield ("steps", number, "wait_for", "event"), step.wait_for.event

    def event_types(self) -> Iterator[Problem]:
        """Every event type must be in the tracking plan: the API accepts no other, so a journey
        waiting for one would wait forever."""
        known = self.plan.types()
        for path, event_type in self._event_fields():
            if event_type in known:
                continue
            match = _suggest(event_type, known, cutoff=0.8)
            hint = f" — did you mean '{match}'?" if match else ": declare it in the tracking plan (plan/)"
            yield self.at(path, f"unknown event type '{event_type}'{hint}")

    def trigger_key(self) -> Iterator[Problem]:
        trigger = self.journey.trigger
        if trigger.key is None:
            return
        path: Path_ = ("trigger", "key")
        key = trigger.key.strip()
        if not key:
            yield self.at(path, "'key' is empty: name a property of the trigger event, like cart_id")
            return
        if "." in key or "[" in key:
            last = re.split(r"[.\[\]'\"]+", key.strip(".[]'\""))[-1]
            yield self.at(path, f"write the property name alone, like key: {last}")
            return
        model = PROPERTY_MODELS.get(trigger.event_type)
        if model is None:
            return  # a custom event: any property may be its key
        fields = model.model_fields
        if key in fields:
            annotation = fields[key].annotation
            shaped = [m for m in type_members(annotation) if get_origin(m) in (list, dict) or _is_model(m)]
            if shaped:
                yield self.at(path, f"'{key}' is not a single value: a key must be one, like an id")
            return
        match = _suggest(key, list(fields), cutoff=0.75)
        if match is not None:
            yield self.at(path, f"{trigger.event_type} events have no property '{key}' — did you mean '{match}'?")

    def timezone(self) -> Iterator[Problem]:
        name = self.journey.default_timezone
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            match = _suggest(name, _timezones(), cutoff=0.7)
            hint = f" — did you mean '{match}'?" if match else ": use an IANA name such as Europe/Paris"
            yield self.at(("default_timezone",), f"unknown time zone '{name}'{hint}")

    def quiet_hours(self) -> Iterator[Problem]:
        yield from _quiet_hours_problems(self.positions, self.journey.quiet_hours)

    # --- templates -----------------------------------------------------------------------

    def _sends(self) -> Iterator[tuple[Path_, str, str | None, str]]:
        for number, step in enumerate(self.steps):
            if step.send is None:
                continue
            base: Path_ = ("steps", number, "send")
            yield (*base, "template"), step.send.template, step.send.channel, "send"
            for fallback_number, fallback in enumerate(step.send.fallback):
                path: Path_ = (*base, "fallback", fallback_number, "template")
                yield path, fallback.template, fallback.channel, "fallback"

    def templates(self) -> Iterator[Problem]:
        rendered: dict[str, list[str]] = {}
        for path, name, channel, what in self._sends():
            if not TEMPLATE_NAME.match(name):
                yield self.at(path, f"bad template name '{name}': use letters, digits, _ and -")
                continue
            loaded = self.template_files.get(name)
            if loaded is None:
                match = _suggest(name, self.available)
                hint = f" — did you mean '{match}'?" if match else f": add templates/{name}.yaml"
                yield self.at(path, f"unknown template '{name}'{hint}")
                continue
            for problem in loaded.problems:
                yield self.at(path, f"template '{name}' has a problem: {problem}")
            template = loaded.template
            if template is None:
                continue
            if channel is not None and channel != template.channel:
                yield self.at(path, f"template '{name}' is for {template.channel}, but this {what} is for {channel}")
            if name not in rendered:
                failures = [
                    *self._render_problems(loaded),
                    *(problem for variant in loaded.variants.values() for problem in self._render_problems(variant)),
                ]
                rendered[name] = [f"does not render: {located}" for located in failures]
                rendered[name].extend(f"differs in a translation: {d}" for d in variant_differences(loaded))
            for message in rendered[name]:
                yield self.at(path, f"template '{name}' {message}")

    def _render_problems(self, loaded: TemplateFile) -> list[str]:
        """Where a template (or one of its locale variants) fails for this journey's trigger."""
        if loaded.template is None:
            return []
        errors = check_template(loaded.template, [self.journey.trigger.event_type])
        if not errors:
            errors = check_template_types(loaded.template, self.journey.trigger.event_type, self.plan)
        return [str(loaded.locate(error)) for error in errors]


def _duration_problems(positions: Positions, found: Iterable[tuple[Path_, str]]) -> Iterator[Problem]:
    """Durations of the right form that still mean nothing, such as ``0h``."""
    for path, text in found:
        try:
            parse_duration(text)
        except DurationError as exc:
            yield positions.problem(path, str(exc))


def _quiet_hours_problems(positions: Positions, windows: Mapping[Channel, QuietHours]) -> Iterator[Problem]:
    for channel, window in windows.items():
        if window.start == window.end:
            yield positions.problem(
                ("quiet_hours", channel, "end"),
                f"quiet hours for {channel} start and end at {window.start}: that is no window; "
                "give two different times",
            )


def check_policies(policies: Policies, positions: Positions) -> list[Problem]:
    """Every problem of a schema-valid policies file that its schema cannot express, in file order.

    Two caps on the same channel and window would leave the reader guessing which one counts, so
    that is a mistake too; ``7d`` and ``1w`` are the same window.
    """
    problems = [*_quiet_hours_problems(positions, policies.quiet_hours)]
    durations: list[tuple[Path_, str]] = []
    seen: dict[tuple[str, timedelta], int] = {}
    for number, cap in enumerate(policies.frequency_caps):
        durations.append((("frequency_caps", number, "per"), cap.per))
        durations.append((("frequency_caps", number, "max_hold"), cap.max_hold))
        try:
            window = (cap.channel, parse_duration(cap.per))
        except DurationError:
            continue
        if window in seen:
            line, _ = positions.value(("frequency_caps", seen[window]))
            what = "marketing messages on any channel" if cap.channel == "any" else f"{cap.channel} messages"
            problems.append(positions.problem(
                ("frequency_caps", number),
                f"{what} per {cap.per} are already capped by the frequency cap on line {line}: keep one",
            ))
        else:
            seen[window] = number
    problems.extend(_duration_problems(positions, durations))
    if policies.global_holdout is not None and percent(policies.global_holdout) > 1:
        message = f"bad percentage {policies.global_holdout!r}: at most 100%"
        problems.append(positions.problem(("global_holdout",), message))
    return sorted(problems, key=lambda p: (p.line, p.column))


def _why_not_next(step: Step) -> str:
    if step.exit is not None:
        return "the step before it ends the run"
    if step.branch is not None:
        return "the branch before it always chooses a step (it ends with else)"
    if step.wait_for is not None:
        return "the wait_for before it sends both outcomes elsewhere"
    if step.split is not None:
        return "the split before it sends every variant elsewhere"
    return f"the step before it always goes to '{step.goto}'"


_CEL_ERROR = re.compile(r"<input>:(\d+):(\d+): (.*)$", re.DOTALL)


def _condition_reason(message: str) -> tuple[int, int, str]:
    """CEL's message, shortened and pointing into the expression (line and column are 1-based)."""
    unknown = re.match(r"unknown name '([^']+)'", message)
    if unknown:
        name = unknown.group(1)
        match = _suggest(name, VARIABLES)
        hint = f" — did you mean '{match}'?" if match else f": use one of {', '.join(VARIABLES)}"
        return 0, 0, f"unknown name '{name}'{hint}"
    found = _CEL_ERROR.search(message)
    if not found:
        return 0, 0, message
    line, column, reason = int(found.group(1)), int(found.group(2)), found.group(3).strip()
    reason = reason.removeprefix("Syntax error: ")
    if "'<EOF>'" in reason:
        reason = "it ends too early: something is missing at the end"
    else:
        reason = re.sub(r"\s*expecting \{.*\}$", "", reason)
    return line, column, reason


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


@lru_cache(maxsize=1)
def _timezones() -> list[str]:
    return sorted(available_timezones())
