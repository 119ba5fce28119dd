"""What the journey pages show, gathered from the registry and the analytics report (no numbers of
its own: every count is the report's, read from the pre-summed report tables, which
``tests/test_rollups.py`` holds equal to what ``omnicart report`` computes from the raw rows)."""

from __future__ import annotations

import shutil
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from pathlib import Path

from ruamel.yaml import YAML
from sqlalchemy import Engine

from omnicart.analytics.report import JourneyReport
from omnicart.analytics.rollup_report import rollup_journey_report
from omnicart.journey.loader import Problem, load_files, policies_file
from omnicart.journey.model import JourneyBundle
from omnicart.journey.registry import JourneyRegistry, Published


@dataclass(frozen=True)
class JourneySummary:
    """One line of the journeys page."""

    published: Published
    report: JourneyReport | None

    @property
    def entered(self) -> int:
        return self.report.entered_customers if self.report else 0

    @property
    def converted(self) -> int:
        return self.report.converted_customers if self.report else 0


def journey_summaries(
    registry: JourneyRegistry, engine: Engine, since: datetime, until: datetime
) -> list[JourneySummary]:
    """Every published journey with its report for the runs that entered in [since, until) (without
    the steps and experiments' readouts, which only a journey's own page shows)."""
    published = sorted(registry.published().items())
    return [JourneySummary(item, rollup_journey_report(engine, name, since=since, until=until, steps=False))
            for name, item in published]


@dataclass(frozen=True)
class CheckedSource:
    """A journey file's text, numbered, with each problem on the line it is about."""

    text: str
    problems: list[Problem]
    bundle: JourneyBundle | None = None
    by_line: dict[int, list[str]] = field(default_factory=dict)

    def lines(self) -> list[tuple[int, str, list[str]]]:
        return [(number, line, self.by_line.get(number, []))
                for number, line in enumerate(self.text.splitlines() or [""], start=1)]


def journey_source(journeys_dir: Path, bundle: JourneyBundle) -> str:
    """The YAML a marketer edits: the journey's file when this host has it, else the published
    model written out as YAML (a registry without files, e.g. in production)."""
    path = journeys_dir / f"{bundle.journey.name}.yaml"
    if path.is_file():
        return path.read_text(encoding="utf-8")
    yaml = YAML()
    yaml.default_flow_style = False
    out = _Text()
    yaml.dump(bundle.journey.model_dump(mode="json", by_alias=True, exclude_defaults=True), out)
    return out.value


def check_source(journeys_dir: Path, name: str, text: str) -> CheckedSource:
    """Validate edited YAML exactly as ``omnicart publish`` does: with the folder's templates and
    policies, in a copy of the folder so nothing on disk changes until it is published.

    Checking takes a good part of a page's budget (templates parsed, conditions compiled) and every
    view of a journey checks the same text: the answer is kept for the same text and the same
    templates and policies on disk (by their modification times)."""
    return _checked(journeys_dir, name, text, _folder_signature(journeys_dir))


def _folder_signature(journeys_dir: Path) -> tuple[tuple[str, int], ...]:
    """What the check reads besides the text: the templates' and policies' files and their times."""
    files = [*(journeys_dir / "templates").glob("*"), *journeys_dir.glob("policies.*")]
    return tuple(sorted((str(path), path.stat().st_mtime_ns) for path in files if path.is_file()))


@lru_cache(maxsize=64)
def _checked(journeys_dir: Path, name: str, text: str, _signature: tuple[tuple[str, int], ...]) -> CheckedSource:
    with tempfile.TemporaryDirectory(prefix="omnicart-console-") as scratch:
        folder = Path(scratch)
        templates = journeys_dir / "templates"
        if templates.is_dir():
            shutil.copytree(templates, folder / "templates")
        policies = policies_file(journeys_dir)
        if policies is not None:
            shutil.copy(policies, folder / policies.name)
        path = folder / f"{name}.yaml"
        path.write_text(text, encoding="utf-8")
        result = load_files([path])
    problems = [problem for problem in result.problems if Path(problem.file).name == path.name]
    others = [problem for problem in result.problems if Path(problem.file).name != path.name]
    problems += [Problem(f"{name}.yaml", 1, 1, f"{Path(problem.file).name}:{problem.line}: {problem.message}")
                 for problem in others]
    bundle = result.bundles.get(name)
    if bundle is None and not problems:
        declared = ", ".join(result.bundles) or "none"
        message = f"the file must declare journey '{name}' (it declares {declared})"
        problems.append(Problem(f"{name}.yaml", 1, 1, message))
    by_line: dict[int, list[str]] = defaultdict(list)
    for problem in problems:
        by_line[problem.line].append(f"column {problem.column}: {problem.message}")
    return CheckedSource(text, problems, bundle if not problems else None, dict(by_line))


class _Text:
    """A write target for ruamel.yaml that keeps the text."""

    def __init__(self) -> None:
        self.value = ""

    def write(self, data: str | bytes) -> None:
        self.value += data.decode() if isinstance(data, bytes) else data
