"""YAML journeys and templates → validated models, with every mistake as ``FILE:LINE:COL: message``.

Marketers write these files by hand and never see Python, so a mistake must come back the way an
editor or a compiler would show it: at the line and column where it is, in words about the journey
(``unknown step type 'wiat' — did you mean 'wait'?``), not as a pydantic traceback. ruamel.yaml
composes the file into nodes that know where every key, value and list item starts; pydantic
validates the plain data, and each of its errors is walked back to the node it is about. (The
round-trip loader would give the same positions, but its comment handling raises
NotImplementedError on some malformed files; the composed node tree has no such gaps.)
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from babel import Locale, UnknownLocaleError
from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic_core import ErrorDetails
from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from ruamel.yaml.reader import ReaderError

from omnicart.journey.durations import (
    DURATION_PATTERN,
    LOCAL_TIME_PATTERN,
    DurationError,
    parse_duration,
    parse_local_time,
)
from omnicart.journey.model import (
    LOCALE_TAG,
    STEP_KINDS,
    EmailTemplate,
    Journey,
    JourneyBundle,
    Percent,
    Policies,
    PushTemplate,
    SmsTemplate,
    Step,
    Template,
    WhatsAppTemplate,
)
from omnicart.journey.templates import TemplateError, check_template, text_fields, variable_uses

Path_ = tuple[str | int, ...]
"""Where a value sits in a document: keys and list indexes from the top, e.g. ('steps', 2, 'send')."""

YAML_SUFFIXES = (".yaml", ".yml")
POLICIES_FILES = tuple(f"policies{suffix}" for suffix in YAML_SUFFIXES)
"""The names reserved in a journeys folder for the rules across its journeys (never a journey)."""
PERCENT_PATTERN = str(TypeAdapter(Percent).json_schema()["pattern"])
TEMPLATE_MODELS: dict[str, type[EmailTemplate] | type[SmsTemplate] | type[PushTemplate] | type[WhatsAppTemplate]] = {
    "email": EmailTemplate,
    "sms": SmsTemplate,
    "push": PushTemplate,
    "whatsapp": WhatsAppTemplate,
}
TEMPLATE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")


@dataclass(frozen=True)
class Problem:
    """One mistake in one file, where an editor can jump to it (1-based line and column)."""

    file: str
    line: int
    column: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.message}"


class JourneyError(Exception):
    """A journey or template file that cannot be used, with every problem found in it."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(problem) for problem in problems))
        self.problems = problems


@dataclass
class LoadResult:
    """What a folder of journeys holds: the valid ones by name, and every problem of the others.

    ``files`` maps each journey file read to its bundle, or to None when it has problems, so that a
    caller such as the catalog can keep serving a file's last good version.
    """

    bundles: dict[str, JourneyBundle] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    files: dict[Path, JourneyBundle | None] = field(default_factory=dict)
    policies: dict[Path, Policies | None] = field(default_factory=dict)
    """Each policies file read (one per folder), or None when it has problems."""


# --- where things are in a file --------------------------------------------------------------


@dataclass(frozen=True)
class _Spot:
    key: tuple[int, int] | None
    value: tuple[int, int]
    style: str = "plain"


class Positions:
    """The line and column of every key, value and list item of one YAML document (1-based)."""

    def __init__(self, file: str, text: str = "") -> None:
        self.file = file
        self.lines = text.splitlines()
        self._spots: dict[Path_, _Spot] = {(): _Spot(None, (1, 1))}

    def record(self, path: Path_, key: tuple[int, int] | None, value: tuple[int, int], style: str = "plain") -> None:
        self._spots[path] = _Spot(key, value, style)

    def __contains__(self, path: object) -> bool:
        return path in self._spots

    def _spot(self, path: Path_) -> _Spot:
        while path not in self._spots:
            path = path[:-1]
        return self._spots[path]

    def value(self, path: Path_) -> tuple[int, int]:
        """Where the value at ``path`` starts (a list item's first character for list items)."""
        return self._spot(path).value

    def key(self, path: Path_) -> tuple[int, int]:
        """Where the key naming ``path`` is; a list item or the document has no key: its value."""
        spot = self._spot(path)
        return spot.key or spot.value

    def style(self, path: Path_) -> str:
        return self._spot(path).style if path in self._spots else "plain"

    def problem(self, path: Path_, message: str, *, at: Literal["value", "key"] = "value") -> Problem:
        line, column = self.key(path) if at == "key" else self.value(path)
        return Problem(self.file, line, column, message)

    def inside(self, path: Path_, line: int, column: int, value: str) -> tuple[int, int]:
        """The file position of (line, column) inside the string ``value`` at ``path`` (1-based).

        Exact for ``|`` block text and one-line values, which is how templates and conditions are
        written; for folded or multi-line flow text it is the value's start.
        """
        start_line, start_column = self.value(path)
        style = self.style(path)
        if style == "literal":
            file_line = start_line + line
            own = value.splitlines()[line - 1] if line - 1 < len(value.splitlines()) else ""
            if file_line - 1 < len(self.lines):
                text = self.lines[file_line - 1]
                indent = len(text) - len(own) if own and text.endswith(own) else len(text) - len(text.lstrip())
                return file_line, indent + column
            return start_line, start_column
        if line == 1 and style in ("plain", "single", "double"):
            return start_line, start_column + column - 1 + (style != "plain")
        return start_line, start_column


# --- reading YAML ----------------------------------------------------------------------------


_MERGE = "tag:yaml.org,2002:merge"
_STYLES = {"|": "literal", ">": "folded", "'": "single", '"': "double"}


def _yaml() -> YAML:
    # The pure-Python safe loader: plain dicts, lists and scalars, YAML 1.2 (so 09:00 stays text),
    # and a composed node tree whose every key, value and item carries its start position.
    yaml = YAML(typ="safe", pure=True)
    yaml.allow_duplicate_keys = True  # reported by _duplicate_keys, all of them, not just the first
    return yaml


def _read(path: Path, display: str) -> tuple[Any, Positions, list[Problem]]:
    """Parse a file: the plain data, where each part of it is, and the problems of the YAML itself."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        return None, Positions(display), [Problem(display, 1, 1, f"not UTF-8 text ({exc.reason})")]
    except OSError as exc:
        return None, Positions(display), [Problem(display, 1, 1, f"cannot read the file: {exc.strerror}")]
    positions = Positions(display, text)
    yaml = _yaml()
    try:
        node = yaml.compose(text)
        loop = _alias_loop(node, [])
        if loop is not None:
            line, column = _mark(loop)
            message = "an alias (*name) is used inside the anchor (&name) it refers to: it would never end"
            return None, positions, [Problem(display, line, column, message)]
        data = _yaml().load(text)
    except MarkedYAMLError as exc:
        return None, positions, [_syntax_problem(display, exc)]
    except ReaderError as exc:
        line, column = _line_column(text, exc.position)
        return None, positions, [Problem(display, line, column, f"YAML syntax error: {exc.reason}")]
    except YAMLError as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return None, positions, [Problem(display, 1, 1, f"YAML syntax error: {reason}")]
    _record(node, (), positions, yaml, set())
    return data, positions, list(_duplicate_keys(node, display))


def _line_column(text: str, index: int) -> tuple[int, int]:
    index = max(0, min(index, len(text)))
    return text.count("\n", 0, index) + 1, index - (text.rfind("\n", 0, index) + 1) + 1


def _alias_loop(node: Node | None, open_nodes: list[Node]) -> Node | None:
    """A mapping or list that contains itself through an alias (``a: &x [*x]``), if there is one."""
    if node is None:
        return None
    if any(node is other for other in open_nodes):
        return node
    children: list[Node] = []
    if isinstance(node, MappingNode):
        children = [part for pair in node.value for part in pair]
    elif isinstance(node, SequenceNode):
        children = list(node.value)
    open_nodes.append(node)
    try:
        for child in children:
            found = _alias_loop(child, open_nodes)
            if found is not None:
                return found
    finally:
        open_nodes.pop()
    return None


def _syntax_problem(display: str, exc: MarkedYAMLError) -> Problem:
    mark = exc.problem_mark or exc.context_mark
    line, column = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
    problem = exc.problem or exc.context or "cannot be read"
    message = f"YAML syntax error: {problem}"
    if exc.context and exc.problem:
        message += f" ({exc.context})"
    special = _special_start(problem)
    if special is not None:
        return Problem(display, line, column, special)
    if "\\t" in problem or "tab" in problem:
        message += "; indent with spaces, not tabs"
    elif problem.startswith("expected <block end>"):
        message = "YAML syntax error: this line is indented differently from the lines above it"
    elif "mapping values are not allowed" in problem:
        message += "; put a space after each ':' and quote text that contains ': '"
    return Problem(display, line, column, message)


_SPECIAL_STARTS = (
    (re.compile(r"constructor for the tag '(!.*)'"), "!"),
    (re.compile(r"found undefined alias"), "*"),
    (re.compile(r"found character '([@`%])' that cannot start"), None),
)


def _special_start(problem: str) -> str | None:
    """A value YAML read as markup because of its first character: most often a condition such as
    ``if: !customer.consent.sms``. Say how to write it, in the journey's terms."""
    for pattern, character in _SPECIAL_STARTS:
        found = pattern.search(problem)
        if found is None:
            continue
        first = character or found.group(1)
        example = "if: '!customer.consent.sms' (inside, write \"...\" for text)" if first == "!" else "'...'"
        return (
            f"a value that starts with '{first}' means something else to YAML: "
            f"put the condition or text in quotes, like {example}"
        )
    return None


def _duplicate_keys(node: Node | None, display: str) -> Iterator[Problem]:
    if isinstance(node, MappingNode):
        seen: dict[object, int] = {}
        for key, value in node.value:
            if isinstance(key, ScalarNode) and key.tag != _MERGE:
                if key.value in seen:
                    yield Problem(
                        display,
                        key.start_mark.line + 1,
                        key.start_mark.column + 1,
                        f"duplicate key '{key.value}': it is already set on line {seen[key.value]}",
                    )
                else:
                    seen[key.value] = key.start_mark.line + 1
            yield from _duplicate_keys(value, display)
    elif isinstance(node, SequenceNode):
        for item in node.value:
            yield from _duplicate_keys(item, display)


def _mark(node: Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _record(node: Node | None, path: Path_, positions: Positions, yaml: YAML, open_nodes: set[int]) -> None:
    """Remember where every key, value and list item under ``node`` starts, by its data path."""
    if node is None or id(node) in open_nodes:
        return  # an alias that contains itself: its data has no end, its positions are the first ones
    open_nodes.add(id(node))
    if isinstance(node, MappingNode):
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode) or key_node.tag == _MERGE:
                continue  # merged keys are reported at the mapping that merges them
            key = yaml.constructor.construct_object(key_node, deep=True)
            if (*path, key) in positions:
                continue  # a duplicate key: the data holds the first one
            style = _STYLES.get(value_node.style or "", "plain") if isinstance(value_node, ScalarNode) else "plain"
            positions.record((*path, key), _mark(key_node), _mark(value_node), style)
            _record(value_node, (*path, key), positions, yaml, open_nodes)
    elif isinstance(node, SequenceNode):
        for index, item in enumerate(node.value):
            style = _STYLES.get(item.style or "", "plain") if isinstance(item, ScalarNode) else "plain"
            positions.record((*path, index), None, _mark(item), style)
            _record(item, (*path, index), positions, yaml, open_nodes)
    open_nodes.discard(id(node))


# --- the model at a place in the document ----------------------------------------------------


def type_members(annotation: Any) -> list[Any]:
    """The alternatives of a type: ``A | B | None`` → [A, B]; Annotated wrappers removed."""
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    origin = get_origin(annotation)
    if origin is Union or type(annotation).__name__ == "UnionType":
        found: list[Any] = []
        for member in get_args(annotation):
            found.extend(type_members(member))
        return found
    return [] if annotation is type(None) else [annotation]


def _model_of(annotation: Any, value: Any) -> type[BaseModel] | None:
    models = [m for m in type_members(annotation) if isinstance(m, type) and issubclass(m, BaseModel)]
    if len(models) > 1 and isinstance(value, dict):
        for model in models:
            channel = model.model_fields.get("channel")
            if channel is not None and value.get("channel") in get_args(channel.annotation):
                return model
    return models[0] if models else None


def _field_annotation(model: type[BaseModel], key: object) -> Any:
    for name, info in model.model_fields.items():
        if key in (name, info.alias):
            return info.annotation
    return None


def _model_at(root: type[BaseModel], data: Any, path: Path_) -> type[BaseModel] | None:
    """The model that validates the mapping at ``path``, e.g. SendSpec at ('steps', 1, 'send')."""
    annotation: Any = root
    value = data
    for key in path:
        model = _model_of(annotation, value)
        if model is not None:
            annotation = _field_annotation(model, key)
        else:
            containers = [m for m in type_members(annotation) if get_origin(m) in (list, dict)]
            if not containers:
                return None
            annotation = get_args(containers[0])[-1]
        if annotation is None:
            return None
        value = (
            value.get(key)
            if isinstance(value, dict)
            else (value[key] if isinstance(value, list) and isinstance(key, int) and key < len(value) else None)
        )
    return _model_of(annotation, value)


def _keys_of(model: type[BaseModel]) -> list[str]:
    """The keys a marketer writes (``locales`` is filled from the variant files, never written)."""
    return [info.alias or name for name, info in model.model_fields.items() if name != "locales"]


def _required_keys(model: type[BaseModel]) -> list[str]:
    required = [info.alias or name for name, info in model.model_fields.items() if info.is_required()]
    return required or _keys_of(model)[:3]


_SCHEMAS: dict[type[BaseModel], dict[str, Any]] = {}


def _pattern_of(model: type[BaseModel] | None, key: object) -> str | None:
    """The regular expression a field's text must match, read from the model's JSON Schema."""
    if model is None:
        return None
    if model not in _SCHEMAS:
        _SCHEMAS[model] = model.model_json_schema(by_alias=True)
    prop = _SCHEMAS[model].get("properties", {}).get(str(key), {})
    for option in [prop, *prop.get("anyOf", [])]:
        if "pattern" in option:
            return str(option["pattern"])
    return None


# --- pydantic errors in a marketer's words ---------------------------------------------------

_SINGULAR = {
    "steps": "step",
    "exit_when": "exit_when",
    "branch": "branch case",
    "fallback": "fallback",
    "frequency_caps": "frequency cap",
}
_KIND_EXAMPLES = {
    "wait": "wait: 1h",
    "send": "send: with template: under it",
    "wait_for": "wait_for: with event: and timeout: under it",
    "branch": "branch: with a list of cases",
    "split": "split: with variants: under it",
    "exit": "exit: completed",
}
_UNION_HINTS = {
    "wait": 'write a duration like 1h, or {after_trigger: 24h}, or {until: "09:00"}',
}


def _section(path: Path_, root_label: str) -> str:
    if not path:
        return root_label
    last = path[-1]
    if isinstance(last, int):
        parent = str(path[-2]) if len(path) >= 2 else "list"
        return _SINGULAR.get(parent, parent)
    if len(path) >= 2 and path[-2] == "quiet_hours":
        return f"quiet_hours for {last}"
    return str(last)


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return f"{str(value).lower()}"
    if isinstance(value, int | float):
        return f"the number {value}"
    return f"the text {value!r}"


def _suggest(word: str, choices: Iterable[str], cutoff: float = 0.6) -> str | None:
    """The choice the marketer most likely meant: a near spelling, or a longer name it begins."""
    options = list(choices)
    close = difflib.get_close_matches(word, options, n=1, cutoff=cutoff)
    if close:
        return close[0]
    longer = [option for option in options if len(word) >= 3 and option.startswith(word)]
    return longer[0] if len(longer) == 1 else None


def _get(data: Any, path: Path_) -> Any:
    for key in path:
        if isinstance(data, dict):
            data = data.get(key)
        elif isinstance(data, list) and isinstance(key, int) and key < len(data):
            data = data[key]
        else:
            return None
    return data


@dataclass
class _Located:
    path: Path_
    error: ErrorDetails
    union_at: Path_ | None = None
    tag: str | None = None
    about_key: bool = False


def _locate(error: ErrorDetails, data: Any) -> _Located:
    """Follow an error's ``loc`` through the data; union member names in it are noted, not followed."""
    loc = error["loc"]
    located = _Located((), error)
    node = data
    for index, part in enumerate(loc):
        last = index == len(loc) - 1
        if part == "[key]":
            located.about_key = True
        elif _has(node, part):
            located.path = (*located.path, part)
            node = node[part]
        elif isinstance(node, dict) and last and error["type"] == "missing":
            located.path = (*located.path, part)
            node = None
        elif located.union_at is None:
            located.union_at, located.tag = located.path, str(part)
    return located


def _has(node: Any, part: object) -> bool:
    if isinstance(node, dict):
        return part in node
    return isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)


def _branch_kind(tag: str) -> str:
    tag = tag.lower()
    if tag.startswith(("list[", "tuple[", "set[")):
        return "list"
    if tag in ("str", "int", "float", "bool", "none") or tag.startswith(("constrained-", "literal[")):
        return "scalar"
    return "mapping"


def _value_kind(value: Any) -> str:
    return "mapping" if isinstance(value, dict) else "list" if isinstance(value, list) else "scalar"


def _one_literal(items: list[_Located]) -> _Located:
    """``channel: emial`` against ``email | sms | push`` or ``any``: one error listing every choice."""
    expected_each = [str((item.error.get("ctx") or {}).get("expected", "")) for item in items]
    choices = [choice for text in expected_each for choice in re.findall(r"'[^']*'", text)]
    expected = ", ".join(choices[:-1]) + f" or {choices[-1]}"
    error: ErrorDetails = {**items[0].error, "ctx": {"expected": expected}}
    return _Located(items[0].path, error)


class _Translator:
    """Turns one document's pydantic errors into Problems, one clear message per mistake."""

    def __init__(self, root: type[BaseModel], data: Any, positions: Positions, root_label: str) -> None:
        self.root = root
        self.data = data
        self.positions = positions
        self.root_label = root_label

    def problems(self, exc: ValidationError) -> list[Problem]:
        located = [_locate(error, self.data) for error in exc.errors(include_url=False)]
        located = self._one_branch_per_union(located)
        located = self._drop_missing_explained_by_typo(located)
        found: list[Problem] = []
        for item in located:
            problem = self._problem(item)
            if problem not in found:
                found.append(problem)
        return found

    def _one_branch_per_union(self, located: list[_Located]) -> list[_Located]:
        """A value that fits no alternative of a union: keep only the alternative it was written as."""
        result = [item for item in located if item.union_at is None]
        groups: dict[Path_, list[_Located]] = {}
        for item in located:
            if item.union_at is not None:
                groups.setdefault(item.union_at, []).append(item)
        for union_at, items in groups.items():
            kind = _value_kind(_get(self.data, union_at))
            chosen = [item for item in items if _branch_kind(item.tag or "") == kind]
            if len(chosen) > 1 and all(item.error["type"] == "literal_error" for item in chosen):
                result.append(_one_literal(chosen))
            elif chosen:
                result.extend(chosen)
            else:
                shape: ErrorDetails = {
                    "type": "omnicart_shape",
                    "loc": union_at,
                    "msg": "",
                    "input": _get(self.data, union_at),
                }
                result.append(_Located(union_at, shape))
        return result

    def _drop_missing_explained_by_typo(self, located: list[_Located]) -> list[_Located]:
        """``templte: x`` already says what is wrong; "missing 'template'" next to it is noise."""
        typos: set[Path_] = set()
        for item in located:
            if item.error["type"] == "extra_forbidden" and item.path:
                model = _model_at(self.root, self.data, item.path[:-1])
                if model is not None:
                    match = _suggest(str(item.path[-1]), _keys_of(model))
                    if match is not None:
                        typos.add((*item.path[:-1], match))
        return [item for item in located if not (item.error["type"] == "missing" and item.path in typos)]

    def _problem(self, item: _Located) -> Problem:
        error, path = item.error, item.path
        kind = error["type"]
        if kind == "missing" or (kind == "extra_forbidden") or item.about_key:
            at: Literal["value", "key"] = "key"
        elif kind == "value_error" and isinstance(_get(self.data, path), dict):
            at = "key"
        else:
            at = "value"
        where = path[:-1] if kind == "missing" else path
        return self.positions.problem(where, self._message(item), at=at)

    def _message(self, item: _Located) -> str:
        error, path = item.error, item.path
        kind = error["type"]
        value = error.get("input")
        key = next((str(part) for part in reversed(path) if isinstance(part, str)), self.root_label)
        name = _section(path, self.root_label) if path and isinstance(path[-1], int) else key
        parent_model = _model_at(self.root, self.data, path[:-1]) if path else None
        own_model = _model_at(self.root, self.data, path)
        ctx: dict[str, Any] = dict(error.get("ctx") or {})

        if item.about_key:
            expected = str(ctx.get("expected", ""))
            choices = re.findall(r"'([^']*)'", expected)
            hint = _suggest(str(key), choices)
            parent = _section(path[:-1], self.root_label)
            guess = f" — did you mean '{hint}'?" if hint else f": use {expected}"
            noun = "channel" if parent == "quiet_hours" else "key"
            return f"unknown {noun} '{key}' in {parent}{guess}"
        if kind == "extra_forbidden":
            return self._unknown_key(path, parent_model)
        if kind == "missing":
            return f"missing '{key}' in {_section(path[:-1], self.root_label)}"
        if kind == "omnicart_shape":
            hint = _UNION_HINTS.get(key, "see `omnicart schema` for what it accepts")
            return f"'{key}' cannot be {_describe(value)}: {hint}"
        if kind in ("string_pattern_mismatch", "string_type"):
            pattern = str(ctx.get("pattern") or _pattern_of(parent_model, key) or "")
            special = self._pattern_message(key, value, pattern)
            if special is not None:
                return special
            if kind == "string_type":
                return f"'{key}' must be text, not {_describe(value)}"
            return f"'{key}' has the wrong form: {value!r} does not match {pattern}"
        if kind == "string_too_short":
            return f"'{key}' is empty"
        if kind == "literal_error":
            expected = str(ctx.get("expected", ""))
            hint = _suggest(str(value), re.findall(r"'([^']*)'", expected))
            guess = f" — did you mean '{hint}'?" if hint else f": use {expected}"
            if key == "channel":
                return f"unknown channel {value!r}{guess}"
            return f"'{key}' cannot be {value!r}{guess}"
        if kind in ("bool_type", "bool_parsing"):
            return f"'{key}' must be true or false, not {_describe(value)}"
        if kind in ("int_type", "int_parsing", "int_from_float"):
            return f"'{key}' must be a whole number, not {_describe(value)}"
        if kind in ("greater_than_equal", "greater_than"):
            return f"'{key}' must be at least {ctx.get('ge', ctx.get('gt'))}, not {value}"
        if kind in ("less_than_equal", "less_than"):
            return f"'{key}' must be at most {ctx.get('le', ctx.get('lt'))}, not {value}"
        if kind in ("model_type", "model_attributes_type", "dict_type"):
            if name == "step":
                return f"a step must be a mapping such as '- wait: 1h', not {_describe(value)}"
            keys = ", ".join(f"{k}:" for k in _required_keys(own_model)) if own_model else ""
            under = f" with {keys} ... under it" if keys else ""
            return f"'{name}' must be a mapping{under}, not {_describe(value)}"
        if kind == "list_type":
            return f"'{key}' must be a list, one item per line starting with '- ', not {_describe(value)}"
        if kind == "too_short":
            noun = {"steps": "step", "branch": "case"}.get(key, "item")
            return f"'{key}' needs at least one {noun}"
        if kind == "value_error":
            return self._rule_message(path, str(ctx.get("error") or error["msg"]))
        return f"{name}: {error['msg']}"

    def _unknown_key(self, path: Path_, model: type[BaseModel] | None) -> str:
        key = str(path[-1])
        where = _section(path[:-1], self.root_label)
        choices = _keys_of(model) if model is not None else []
        if model is Step:
            kind = _suggest(key, STEP_KINDS)
            if kind is not None:
                return f"unknown step type '{key}' — did you mean '{kind}'?"
            step = _get(self.data, path[:-1])
            if isinstance(step, dict) and not any(k in step for k in STEP_KINDS):
                return f"unknown step type '{key}': a step is one of {', '.join(STEP_KINDS)}"
        match = _suggest(key, choices)
        if match is not None:
            return f"unknown key '{key}' in {where} — did you mean '{match}'?"
        if choices:
            return f"unknown key '{key}' in {where}: use one of {', '.join(choices)}"
        return f"unknown key '{key}' in {where}"

    def _pattern_message(self, key: str, value: Any, pattern: str) -> str | None:
        text = "" if value is None else str(value)
        if pattern == DURATION_PATTERN:
            try:
                parse_duration(text)
            except DurationError as exc:
                return str(exc)
            return f"bad duration {text!r}: write it like 30m, 1h, 1h30m, 2d or 1w"
        if pattern == LOCAL_TIME_PATTERN:
            try:
                parse_local_time(text)
            except DurationError as exc:
                return str(exc) + (' (quote it: "09:00")' if not isinstance(value, str) else "")
            return f"bad time of day {text!r}"
        if pattern == PERCENT_PATTERN:
            return f"bad percentage {text!r} in '{key}': write it like 10% or 2.5%, at most 100%"
        if not isinstance(value, str):
            return None
        if key == "name" and pattern.startswith("^[a-z][a-z0-9_]"):
            return f"bad journey name {text!r}: use lower_snake_case, like abandoned_cart"
        if key == "id":
            return f"bad step id {text!r}: use lower_snake_case, like first_reminder"
        if pattern == r"^[a-z][a-z0-9_]*$":
            return f"bad step id {text!r} in '{key}': step ids are lower_snake_case, like first_reminder"
        if key == "event":
            return f"bad event type {text!r}: event types are snake_case, like order_placed"
        if key == "domains":
            return f"bad domain {text!r}: write the host alone, in lower case, like shop.example.com"
        return None

    def _rule_message(self, path: Path_, message: str) -> str:
        message = message.removeprefix("Value error, ")
        node = _get(self.data, path)
        if isinstance(node, dict) and _model_at(self.root, self.data, path) is Step:
            empty = [kind for kind in STEP_KINDS if kind in node and node[kind] is None]
            if empty:
                return f"'{empty[0]}' has no value: write it like {_KIND_EXAMPLES[empty[0]]}"
        return message


def _validate(model: type[BaseModel], data: Any, positions: Positions, label: str) -> tuple[Any, list[Problem]]:
    try:
        return model.model_validate(data), []
    except ValidationError as exc:
        return None, _Translator(model, data, positions, label).problems(exc)


def _not_a_mapping(data: Any, positions: Positions, what: str, example: str) -> Problem | None:
    if isinstance(data, dict):
        return None
    if data is None:
        return positions.problem((), f"the file is empty: a {what} starts with {example}")
    return positions.problem((), f"a {what} file must be a mapping of keys such as {example}, not {_describe(data)}")


# --- templates -------------------------------------------------------------------------------


@dataclass(frozen=True)
class TemplateFile:
    """A template file as read: the model when it is well-formed, and its own problems.

    ``locate`` turns a rendering error into the place in this file where the failing text is,
    which is what the journey that uses the template points the marketer to.
    """

    name: str
    file: str
    template: Template | None
    problems: list[Problem]
    positions: Positions
    variants: dict[str, TemplateFile] = field(default_factory=dict)
    """The locale variants read next to it (``cart_reminder_1.tr.yaml``), by locale."""

    def locate(self, error: TemplateError) -> Problem:
        path = tuple(error.field.split("."))  # a WhatsApp placeholder is "content_variables.1"
        source = getattr(self.template, path[0], None)
        if isinstance(source, dict):
            source = source.get(path[-1])
        line, column = self.positions.inside(path, error.line, error.column, source or "")
        return Problem(self.file, line, column, f"{error.field}: {error.reason}")


def read_template(path: Path) -> TemplateFile:
    """Read and schema-check a template file and its locale variants; problems are returned, not raised."""
    display = str(path)
    data, positions, problems = _read(path, display)
    template: Template | None = None
    if isinstance(data, dict) and "locales" in data:
        problems.append(positions.problem(
            ("locales",), f"write each language in a file of its own, such as {path.stem}.tr{path.suffix}, "
            "next to this one", at="key"))
        data = {key: value for key, value in data.items() if key != "locales"}
    if not problems:
        wrong = _not_a_mapping(data, positions, "template", "channel:, subject:, html:")
        if wrong is not None:
            problems.append(wrong)
        else:
            channel = data.get("channel")
            if "channel" not in data:
                problems.append(
                    positions.problem((), "missing 'channel' in template: write channel: email, sms, push or whatsapp")
                )
            elif channel not in TEMPLATE_MODELS:
                hint = _suggest(str(channel), TEMPLATE_MODELS)
                guess = f" — did you mean '{hint}'?" if hint else ": use email, sms, push or whatsapp"
                problems.append(positions.problem(("channel",), f"unknown channel {channel!r}{guess}"))
            else:
                template, found = _validate(TEMPLATE_MODELS[channel], data, positions, "template")
                problems.extend(found)
    elif isinstance(data, dict) and data.get("channel") in TEMPLATE_MODELS:
        # Duplicate keys are the only problems that leave the data readable: check the rest too.
        template, found = _validate(TEMPLATE_MODELS[data["channel"]], data, positions, "template")
        problems.extend(found)
    return _with_variants(TemplateFile(path.stem, display, template, problems, positions), path)


# --- locale variants -------------------------------------------------------------------------


def variant_files(path: Path) -> dict[str, Path]:
    """The locale variants of the template at ``path``, by the locale in their names:
    ``cart_reminder_1.tr.yaml`` and ``cart_reminder_1.fa-IR.yaml`` next to ``cart_reminder_1.yaml``."""
    if "." in path.stem or not path.parent.is_dir():
        return {}
    found: dict[str, Path] = {}
    for candidate in sorted(path.parent.iterdir()):
        stem, _, locale = candidate.stem.rpartition(".")
        if candidate.suffix in YAML_SUFFIXES and stem == path.stem and candidate.is_file():
            found.setdefault(locale, candidate)
    return found


def _with_variants(base: TemplateFile, path: Path) -> TemplateFile:
    """The template with its locale variants attached (``Template.locales``), and their problems."""
    files = variant_files(path)
    if not files:
        return base
    variants = {locale: read_variant(file, locale, base) for locale, file in files.items()}
    problems = [*base.problems, *(problem for variant in variants.values() for problem in variant.problems)]
    template = base.template
    if template is not None:
        words = {locale: v.template for locale, v in variants.items() if v.template is not None}
        template = template.model_copy(update={"locales": words})
    return TemplateFile(base.name, base.file, template, problems, base.positions, variants)


def read_variant(path: Path, locale: str, base: TemplateFile) -> TemplateFile:
    """A locale variant: the base template's settings (channel, categories, discount, marketing)
    with this file's words. A variant holds only words, so a translation can never change what a
    message does, only what it says."""
    display = str(path)
    name = f"{base.name}.{locale}"
    data, positions, problems = _read(path, display)
    if not LOCALE_FILE_TAG.match(locale) or not _known_locale(locale):
        problems.append(Problem(display, 1, 1, f"'{locale}' in the file name is not a locale: name a variant "
                                f"like {base.name}.tr{path.suffix} or {base.name}.fa-IR{path.suffix}"))
    if problems or base.template is None:
        return TemplateFile(name, display, None, problems, positions)
    wrong = _not_a_mapping(data, positions, "template variant", "subject:, html:")
    if wrong is not None:
        return TemplateFile(name, display, None, [wrong], positions)
    fields = text_fields(base.template.channel)
    for key, value in data.items():
        if key == "channel" and value != base.template.channel:
            problems.append(positions.problem(("channel",), f"'{base.name}' is for {base.template.channel}: a "
                                              f"variant is for the same channel (leave channel out)"))
        elif key not in fields and key != "channel":
            problems.append(positions.problem((key,), f"a locale variant holds only the message's words "
                                              f"({', '.join(fields)}); '{key}' comes from {Path(base.file).name}",
                                              at="key"))
    settings = base.template.model_dump(exclude={*fields, "locales"})
    words = {key: value for key, value in data.items() if key in fields}
    template, found = _validate(TEMPLATE_MODELS[base.template.channel], {**settings, **words}, positions, "template")
    return TemplateFile(name, display, template, [*problems, *found], positions)


def variant_differences(loaded: TemplateFile) -> Iterator[Problem]:
    """A locale variant that reads other variables than its template: an error, not a warning.

    A translation says the same thing in another language. A variant that drops ``discount.code``
    or ``unsubscribe_url`` sends every customer of that language a broken or unlawful message, and
    one that reads a variable the template does not (``customer.last_name``) was checked against
    nobody's data but the sample's. Either is a mistake to fix before the journey goes live; a
    difference that is meant (say, no first name in a formal Persian greeting) is still written
    with the variable, e.g. ``{% if customer.first_name %}{% endif %}``, so the files stay comparable.
    """
    if loaded.template is None or not loaded.variants:
        return
    expected = variable_uses(loaded.template)
    for locale, variant in loaded.variants.items():
        if variant.template is None:
            continue
        used = variable_uses(variant.template)
        for path, (part, line, column) in used.items():
            if path not in expected:
                error = TemplateError(part, line, column, f"the {locale} variant uses '{path}', which "
                                      f"{Path(loaded.file).name} does not: a translation must read the same variables")
                yield variant.locate(error)
        missing = [path for path in expected if path not in used]
        if missing:
            names = ", ".join(f"'{path}'" for path in missing)
            yield Problem(variant.file, 1, 1, f"the {locale} variant leaves out {names}, which "
                          f"{Path(loaded.file).name} uses: a translation must read the same variables")


LOCALE_FILE_TAG = re.compile(LOCALE_TAG)


def _known_locale(tag: str) -> bool:
    try:
        Locale.parse(tag.replace("-", "_"))
    except (UnknownLocaleError, ValueError):
        return False
    return True


def load_template(path: Path) -> Template:
    """A template that is well-formed and renders with a sample context; JourneyError otherwise."""
    loaded = read_template(path)
    problems = list(loaded.problems)
    for checked in (loaded, *loaded.variants.values()):
        if checked.template is not None:
            problems.extend(checked.locate(error) for error in check_template(checked.template))
    problems.extend(variant_differences(loaded))
    if problems or loaded.template is None:
        raise JourneyError(_sorted(problems))
    return loaded.template


def template_path(templates_dir: Path, name: str) -> Path | None:
    """The file a template name refers to (``<name>.yaml`` or ``.yml``), if there is one."""
    if not TEMPLATE_NAME.match(name):
        return None
    for suffix in YAML_SUFFIXES:
        candidate = templates_dir / f"{name}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def available_templates(templates_dir: Path) -> list[str]:
    """Template names that exist, for "did you mean" suggestions."""
    if not templates_dir.is_dir():
        return []
    return sorted(p.stem for p in templates_dir.iterdir()
                  if p.suffix in YAML_SUFFIXES and p.is_file() and "." not in p.stem)


# --- journeys --------------------------------------------------------------------------------


@dataclass
class _JourneyFile:
    path: Path
    bundle: JourneyBundle | None
    problems: list[Problem]
    positions: Positions
    name: str | None


def _read_journey(path: Path, templates_dir: Path | None = None, policies: Policies | None = None) -> _JourneyFile:
    from omnicart.journey.validate import check_journey

    display = str(path)
    data, positions, problems = _read(path, display)
    name = data.get("name") if isinstance(data, dict) and isinstance(data.get("name"), str) else None
    if data is None and problems:
        return _JourneyFile(path, None, problems, positions, name)
    wrong = _not_a_mapping(data, positions, "journey", "name:, trigger:, steps:")
    if wrong is not None:
        return _JourneyFile(path, None, [*problems, wrong], positions, name)
    journey, found = _validate(Journey, data, positions, "journey")
    problems.extend(found)
    if journey is None:
        return _JourneyFile(path, None, _sorted(problems), positions, name)

    folder = templates_dir if templates_dir is not None else path.parent / "templates"
    templates: dict[str, TemplateFile] = {}
    for template_name in _template_names(journey):
        file = template_path(folder, template_name)
        if file is not None and template_name not in templates:
            templates[template_name] = read_template(file)
    problems.extend(check_journey(journey, templates, positions, available_templates(folder)))
    if problems:
        return _JourneyFile(path, None, _sorted(problems), positions, name)
    bundle = JourneyBundle(
        journey=journey,
        templates={n: t.template for n, t in templates.items() if t.template is not None},
        policies=policies or Policies(),
    )
    return _JourneyFile(path, bundle, [], positions, name)


def _template_names(journey: Journey) -> Iterator[str]:
    for step in journey.steps:
        if step.send is not None:
            yield step.send.template
            for fallback in step.send.fallback:
                yield fallback.template


def load_journey(path: Path, templates_dir: Path | None = None) -> JourneyBundle:
    """A journey and the templates it uses, validated; JourneyError with every problem otherwise.

    Templates are looked up in ``templates_dir``, by default the ``templates`` folder next to the
    journey file. The bundle carries the policies of the journey's folder (``policies.yaml``), so a
    journey whose policies are broken cannot be loaded either.
    """
    policies, problems = folder_policies(path.parent)
    loaded = _read_journey(path, templates_dir, policies)
    if loaded.bundle is None or problems:
        raise JourneyError(problems + loaded.problems)
    return loaded.bundle


def journey_files(directory: Path) -> list[Path]:
    """The journey files of a folder: every ``*.yaml``/``*.yml`` directly inside it but the policies
    file, by name."""
    return sorted(
        p for p in directory.iterdir() if p.suffix in YAML_SUFFIXES and p.is_file() and not is_policies_file(p)
    )


def named_files(paths: Iterable[Path]) -> list[Path]:
    """The files that journey paths name, each once: a folder means its journey files, a file itself."""
    files = [file for path in paths for file in (journey_files(path) if path.is_dir() else [path])]
    return list(dict.fromkeys(files))


def load_files(paths: Iterable[Path]) -> LoadResult:
    """Load journey files, each with its folder's policies; a journey name declared by two files is a
    problem in the later one.

    A policies file among ``paths`` is checked (it is never a journey). A folder whose policies file
    has problems has no valid journey: a journey is published with its policies or not at all.
    """
    result = LoadResult()
    declared: dict[str, _JourneyFile] = {}
    folders: dict[Path, Policies | None] = {}
    for path in paths:
        if path.parent not in folders:
            policies, problems = folder_policies(path.parent)
            folders[path.parent] = policies
            result.problems.extend(problems)
            file = policies_file(path.parent)
            if file is not None:
                result.policies[file] = policies
        if is_policies_file(path):
            continue
        loaded = _read_journey(path, policies=folders[path.parent])
        problems = list(loaded.problems)
        first = declared.get(loaded.name) if loaded.name is not None else None
        if first is not None:
            problems.append(
                loaded.positions.problem(
                    ("name",),
                    f"journey name '{loaded.name}' is already used by {first.path}: each journey needs its own name",
                )
            )
        elif loaded.name is not None:
            declared[loaded.name] = loaded
        result.problems.extend(problems)
        bundle = loaded.bundle if not problems and folders[path.parent] is not None else None
        result.files[path] = bundle
        if bundle is not None:
            result.bundles[bundle.journey.name] = bundle
    return result


def load_directory(path: Path) -> LoadResult:
    """Every journey in a folder (``*.yaml``/``*.yml`` directly inside; templates in ``templates/``),
    with the folder's policies."""
    return load_files(journey_files(path))


# --- policies --------------------------------------------------------------------------------


def is_policies_file(path: Path) -> bool:
    """Whether a file is a journeys folder's policies (``policies.yaml`` or ``policies.yml``)."""
    return path.name in POLICIES_FILES


def policies_file(directory: Path) -> Path | None:
    """The policies file of a journeys folder, if it has one."""
    for name in POLICIES_FILES:
        if (directory / name).is_file():
            return directory / name
    return None


def read_policies(path: Path) -> tuple[Policies | None, list[Problem]]:
    """Read and check a policies file: the policies when it has no problem, and its problems.

    A file with nothing but comments sets no policy, which is how the shipped one shows the options
    it leaves unset.
    """
    from omnicart.journey.validate import check_policies

    display = str(path)
    data, positions, problems = _read(path, display)
    if problems and not isinstance(data, dict):
        return None, problems
    if data is None:
        return Policies(), []
    wrong = _not_a_mapping(data, positions, "policies", "frequency_caps:, global_holdout:, quiet_hours:")
    if wrong is not None:
        return None, [wrong]
    policies, found = _validate(Policies, data, positions, "policies")
    problems.extend(found)
    if policies is not None:
        problems.extend(check_policies(policies, positions))
    return (None if problems else policies), _sorted(problems)


def load_policies(path: Path) -> Policies:
    """A valid policies file's policies; JourneyError with every problem otherwise."""
    policies, problems = read_policies(path)
    if policies is None:
        raise JourneyError(problems)
    return policies


def folder_policies(directory: Path) -> tuple[Policies | None, list[Problem]]:
    """The policies every journey of a folder runs with: its policies file's, or none when it has
    no such file; None, with the problems, when the file is broken or there are two of them."""
    found = [directory / name for name in POLICIES_FILES if (directory / name).is_file()]
    if not found:
        return Policies(), []
    policies, problems = read_policies(found[0])
    for extra in found[1:]:
        problems.append(Problem(str(extra), 1, 1, f"{found[0]} already holds this folder's policies: keep one file"))
    return (None if len(found) > 1 else policies), problems


def _sorted(problems: list[Problem]) -> list[Problem]:
    return sorted(problems, key=lambda p: (p.file, p.line, p.column))


# --- JSON Schema for editors -----------------------------------------------------------------


def journey_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a journey file, for the YAML language server.

    Generated from the same models the loader validates with, plus the "exactly one of" rules the
    models check in code, so an editor flags a step with two kinds or none as you type.
    """
    schema = Journey.model_json_schema(by_alias=True, mode="validation")
    defs = schema.get("$defs", {})
    _one_of_required(defs.get("Step"), [[kind] for kind in STEP_KINDS])
    _one_of_required(defs.get("WaitSpec"), [["after_trigger"], ["until"]])
    branch_case = defs.get("BranchCase")
    if branch_case is not None:
        branch_case["oneOf"] = [
            {"required": ["if", "goto"], "not": {"required": ["else"]}},
            {"required": ["else"], "not": {"anyOf": [{"required": ["if"]}, {"required": ["goto"]}]}},
        ]
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **schema,
        "title": "omnicart journey",
    }


def policies_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a ``policies.yaml`` file, for the YAML language server."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **Policies.model_json_schema(by_alias=True, mode="validation"),
        "title": "omnicart policies",
    }


def _one_of_required(definition: dict[str, Any] | None, alternatives: list[list[str]]) -> None:
    if definition is not None:
        definition["oneOf"] = [{"required": keys} for keys in alternatives]
