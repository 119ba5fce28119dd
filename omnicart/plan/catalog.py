"""Reading the tracking plan's files: one YAML file per event type (or per family of types).

Each file is a small JSON Schema (draft 2020-12) of an event's ``properties`` plus what a reader
needs around it: the type's name, what it concerns (a customer, the catalog or a store) and a
description. Shapes several events share live in ``_definitions.yaml`` and are referred to as
``{$ref: "#/$defs/<name>"}``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from ruamel.yaml import YAML

BUILT_IN = Path(__file__).resolve().parent / "events"
DEFINITIONS = "_definitions.yaml"
Concerns = Literal["customer", "catalog", "store"]
CONCERNS: tuple[Concerns, ...] = ("customer", "catalog", "store")


class PlanError(ValueError):
    """A plan file that cannot be used (the message names the file)."""


@dataclass(frozen=True)
class EventSpec:
    """One event type as the plan declares it."""

    type: str
    concerns: Concerns
    description: str
    schema: dict[str, Any]
    file: str

    @property
    def needs_customer(self) -> bool:
        """Customer events must say whose they are; catalog and store events concern no one."""
        return self.concerns == "customer"

    @property
    def required(self) -> frozenset[str]:
        return frozenset(self.schema.get("required", ()))

    @property
    def properties(self) -> dict[str, Any]:
        props: dict[str, Any] = self.schema.get("properties", {})
        return props


@dataclass(frozen=True, eq=False)  # compared and hashed by identity: validators are cached per plan
class TrackingPlan:
    """Every declared event type, by name, and the shared definitions their schemas refer to."""

    events: dict[str, EventSpec]
    definitions: dict[str, Any]

    def get(self, event_type: str) -> EventSpec | None:
        return self.events.get(event_type)

    def types(self) -> list[str]:
        return sorted(self.events)

    def resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        """A schema with a ``$ref`` to a shared definition replaced by that definition."""
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            resolved: dict[str, Any] = self.definitions.get(ref.removeprefix("#/$defs/"), {})
            return resolved
        return schema

    def json_schema(self) -> dict[str, Any]:
        """The whole plan as one JSON Schema document: an envelope per type, for producers' tools."""
        return {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": "omnicart tracking plan",
            "$defs": {
                **self.definitions,
                **{f"event:{spec.type}": _described(spec) for spec in self.events.values()},
            },
            "oneOf": [{"$ref": f"#/$defs/event:{name}"} for name in self.types()],
        }


def _described(spec: EventSpec) -> dict[str, Any]:
    envelope_required = ["id", "type", "timestamp", "source", "properties"]
    # A customer event names its customer, a visitor not known yet (anonymous_id), or both.
    who = {"anyOf": [{"required": ["customer_id"]}, {"required": ["anonymous_id"]}]} if spec.needs_customer else {}
    return {
        "description": spec.description,
        "type": "object",
        "required": envelope_required,
        **who,
        "properties": {"type": {"const": spec.type}, "properties": spec.schema},
    }


def _yaml_files(folder: Path) -> Iterator[Path]:
    if folder.is_dir():
        yield from sorted(p for p in folder.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())


def _read(path: Path) -> Any:
    try:
        return YAML(typ="safe", pure=True).load(path.read_text(encoding="utf-8"))
    except Exception as exc:  # a broken plan file must say which file
        raise PlanError(f"{path}: cannot be read: {exc}") from None


def load_plan(*folders: Path) -> TrackingPlan:
    """The built-in plan plus every folder given (a shop's own events); a type declared twice is an
    error, so a shop cannot silently redefine a built-in event the product relies on."""
    definitions: dict[str, Any] = {}
    events: dict[str, EventSpec] = {}
    for folder in (BUILT_IN, *folders):
        for path in _yaml_files(folder):
            data = _read(path)
            if path.name == DEFINITIONS:
                definitions.update(data or {})
                continue
            for spec in _specs(path, data):
                if spec.type in events:
                    raise PlanError(f"{path}: event '{spec.type}' is already declared in {events[spec.type].file}")
                events[spec.type] = spec
    return TrackingPlan(events, definitions)


def _specs(path: Path, data: Any) -> Iterator[EventSpec]:
    if not isinstance(data, dict):
        raise PlanError(f"{path}: a plan file is a mapping with event:, concerns: and properties:")
    names = data.get("events") or [data.get("event")]
    concerns = data.get("concerns", "customer")
    if concerns not in CONCERNS:
        raise PlanError(f"{path}: concerns must be one of {', '.join(CONCERNS)}, not {concerns!r}")
    schema: dict[str, Any] = {
        "type": "object",
        "properties": data.get("properties") or {},
        "required": list(data.get("required") or []),
        "additionalProperties": True,  # extra properties are kept; journeys may read declared ones
    }
    if data.get("anyOf"):  # e.g. consent_changed: a channel or a topic, at least one of them
        schema["anyOf"] = data["anyOf"]
    for name in names:
        if not isinstance(name, str) or not name:
            raise PlanError(f"{path}: name the event type with event: <type> (or events: [...])")
        yield EventSpec(name, concerns, str(data.get("description") or "").strip(), schema, str(path))


@lru_cache(maxsize=8)
def _plan_for(folder: Path, cwd: str) -> TrackingPlan:
    return load_plan((Path(cwd) / folder).resolve())


def default_plan() -> TrackingPlan:
    """The plan of this deployment: built-in events plus the folder ``OMNICART_PLAN_DIR`` names.

    Asked for every event, so it is looked up by the setting as written (and the working directory,
    for a relative one) rather than resolved on disk each time."""
    from omnicart.settings import get_settings

    folder = get_settings().plan_dir
    return _plan_for(folder, "" if folder.is_absolute() else os.getcwd())
