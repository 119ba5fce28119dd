"""Preview a journey for a sample customer or a pasted timeline: what ``simulate`` says, and each
message rendered as the customer would see it, then in every other locale its template has (a
marketer checks each translation before customers read it). Nothing is sent and no discount code
is issued (simulate renders with the stand-in code ``PREVIEW-CODE``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from omnicart.channels.sms_segments import count_segments
from omnicart.engine.state import Action
from omnicart.events import Event
from omnicart.journey.model import JourneyBundle
from omnicart.journey.templates import RenderedParts
from omnicart.limits import InvalidJson, load_json
from omnicart.locales import babel_locale, text_direction
from omnicart.simulate import simulate, timeline_event


class TimelineError(ValueError):
    """A pasted timeline the API would refuse, with the line it is about."""


@dataclass(frozen=True)
class Translation:
    """A sent message in one locale of its template."""

    locale: str
    parts: RenderedParts
    customers: bool  # the locale this customer gets

    @property
    def label(self) -> str:
        """The language's English name and its tag: ``Turkish (tr)``."""
        return f"{babel_locale(self.locale).get_display_name('en')} ({self.locale})"

    @property
    def direction(self) -> str:
        return text_direction(self.locale)

    @property
    def segments(self) -> int | None:
        """An SMS's segment count in this language, as the carrier bills it (Persian costs more)."""
        return count_segments(self.parts.body).segments if self.parts.body else None


@dataclass(frozen=True)
class PreviewLine:
    action: Action
    parts: RenderedParts | None
    translations: tuple[Translation, ...] = ()

    @property
    def segments(self) -> int | None:
        """An SMS's segment count, as the carrier bills it."""
        if self.action.channel != "sms" or self.parts is None or not self.parts.body:
            return None
        return count_segments(self.parts.body).segments


def parse_timeline(text: str) -> list[Event]:
    """JSON lines, read as the ingest API reads them."""
    events = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            events.append(timeline_event(load_json(line)))
        except (InvalidJson, ValidationError) as exc:
            raise TimelineError(f"line {number}: {exc}") from None
    return events


def sample_timelines(path: Path) -> dict[str, str]:
    """The sample customers of an example timeline (``examples/events.jsonl``): id -> their lines."""
    if not path.is_file():
        return {}
    samples: dict[str, list[str]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            samples.setdefault(str(json.loads(line).get("customer_id")), []).append(line)
    return {customer: "\n".join(lines) for customer, lines in samples.items()}


def preview(bundles: list[JourneyBundle], events: list[Event], journey: str | None = None) -> list[PreviewLine]:
    """Every action of the journeys for the timeline (of ``journey`` only, when named), sends rendered
    as the customer gets them and in each locale of their template, the customer's first."""
    contents: dict[str, RenderedParts] = {}
    translations: dict[str, dict[str, RenderedParts]] = {}
    actions = simulate(bundles, events, contents=contents, translations=translations)
    return [
        PreviewLine(action, contents.get(action.message_id), _translations(translations.get(action.message_id)))
        if action.action == "send" and action.message_id else PreviewLine(action, None)
        for action in actions
        if journey is None or action.journey == journey
    ]


def _translations(by_locale: dict[str, RenderedParts] | None) -> tuple[Translation, ...]:
    """The message in each locale; simulate puts the customer's first."""
    return tuple(Translation(tag, parts, number == 0) for number, (tag, parts) in enumerate((by_locale or {}).items()))
