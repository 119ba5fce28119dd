"""``omnicart validate``: every problem of the journeys given, one ``FILE:LINE:COL: message`` a line.

The output is the format compilers use, so editors and CI annotate the exact line; the exit code
says whether everything is valid, so a pre-publish check is one command.
"""

from __future__ import annotations

import sys
from pathlib import Path

from omnicart.journey.loader import (
    YAML_SUFFIXES,
    JourneyError,
    Problem,
    journey_files,
    load_files,
    load_template,
    policies_file,
)


def _is_template_folder(path: Path) -> bool:
    return path.name == "templates"


def _yaml_files(folder: Path) -> list[Path]:
    """The templates of a folder; a locale variant (``name.tr.yaml``) is checked with its template."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in YAML_SUFFIXES and "." not in p.stem)


def _template_of(path: Path) -> Path:
    """The template a file stands for: itself, or for a locale variant the template it translates."""
    return path.with_name(path.stem.split(".")[0] + path.suffix) if "." in path.stem else path


def _collect(paths: list[Path]) -> tuple[list[Path], list[Path], list[Problem]]:
    """Journey and policies files, template files, and paths that do not exist.

    A folder means the journeys directly inside it and its policies file plus, checked on their own,
    the templates in its ``templates/`` folder; a file inside a ``templates`` folder is a template.
    """
    journeys: dict[Path, None] = {}
    templates: dict[Path, None] = {}
    missing: list[Problem] = []
    for path in paths:
        if path.is_dir():
            if _is_template_folder(path):
                templates.update(dict.fromkeys(_yaml_files(path)))
                continue
            journeys.update(dict.fromkeys(journey_files(path)))
            policies = policies_file(path)
            if policies is not None:
                journeys[policies] = None
            if (path / "templates").is_dir():
                templates.update(dict.fromkeys(_yaml_files(path / "templates")))
        elif path.is_file():
            if _is_template_folder(path.parent):
                templates[_template_of(path)] = None
            else:
                journeys[path] = None
        else:
            missing.append(Problem(str(path), 1, 1, "no such file or folder"))
    return list(journeys), list(templates), missing


def validate_paths(paths: list[Path]) -> int:
    """Print every problem to stdout; return 0 when every journey, template and policies file is valid,
    else 1."""
    journeys, templates, problems = _collect(paths)
    result = load_files(journeys)
    problems.extend(result.problems)
    for template in templates:
        try:
            load_template(template)
        except JourneyError as exc:
            problems.extend(exc.problems)
    for problem in sorted(problems, key=lambda p: (p.file, p.line, p.column)):
        print(problem)
    if problems:
        files = len({problem.file for problem in problems})
        print(f"{_count(len(problems), 'problem')} in {_count(files, 'file')}", file=sys.stderr)
        return 1
    if not journeys and not templates:
        print(f"no journey files in {', '.join(str(p) for p in paths)}", file=sys.stderr)
        return 1
    counts = [(len(result.bundles), "journey"), (len(templates), "template"), (len(result.policies), "policies file")]
    print(", ".join(f"{_count(number, noun)} valid" for number, noun in counts if number), file=sys.stderr)
    return 0


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"
