"""The published journeys: what the ingest API attaches to each event, reloaded when files change.

Publishing is saving a file under ``journeys/``. The catalog notices (a stat of the folder at most
once a second, so asking it on every event costs nothing) and reloads. A file that becomes invalid
does not unpublish its journey: the catalog keeps serving that journey's last valid version and
logs the problem, so a typo saved mid-edit never stops a running campaign; fixing the file
publishes the fix. Runs already under way are unaffected either way: they keep the bundle they
started with.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from omnicart.journey.loader import YAML_SUFFIXES, Problem, load_directory
from omnicart.journey.model import JourneyBundle

logger = logging.getLogger(__name__)

_Signature = frozenset[tuple[str, int, int]]


def triggered_by(bundles: Iterable[JourneyBundle], event_type: str) -> list[JourneyBundle]:
    """The enabled journeys among ``bundles`` that an event of this type starts, by journey name.

    What ingest attaches to each event (from this catalog or the registry) and what ``omnicart
    simulate`` offers each event of a timeline: one rule, so a preview chooses as production does.
    """
    chosen = [b for b in bundles if b.journey.enabled and b.journey.trigger.event_type == event_type]
    return sorted(chosen, key=lambda bundle: bundle.journey.name)


class JourneyCatalog:
    """The valid journeys of a folder, by name, as of the last change on disk."""

    by_reference = False  # no registry behind it: events carry these journeys whole

    def __init__(
        self,
        directory: Path,
        *,
        min_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.directory = directory
        self._min_interval = min_interval
        self._clock = clock
        self._lock = threading.Lock()
        self._signature: _Signature | None = None
        self._checked_at: float | None = None
        self._last_good: dict[Path, JourneyBundle] = {}
        self._bundles: dict[str, JourneyBundle] = {}
        self._problems: list[Problem] = []
        self.refresh(force=True)

    def bundles_for(self, event_type: str) -> list[JourneyBundle]:
        """The enabled journeys an event of this type starts, by journey name."""
        return triggered_by(self.all().values(), event_type)

    def all(self) -> dict[str, JourneyBundle]:
        """Every published journey (enabled or not), by name."""
        self.refresh()
        with self._lock:
            return dict(self._bundles)

    @property
    def problems(self) -> list[Problem]:
        """The problems of the files as they are on disk now (their journeys may still be served)."""
        self.refresh()
        with self._lock:
            return list(self._problems)

    def refresh(self, *, force: bool = False) -> bool:
        """Reload if a file changed (checked at most once per ``min_interval``); True if it reloaded."""
        with self._lock:
            now = self._clock()
            if not force and self._checked_at is not None and now - self._checked_at < self._min_interval:
                return False
            self._checked_at = now
            signature = self._scan()
            if not force and signature == self._signature:
                return False
            self._signature = signature
            self._reload()
            return True

    def _scan(self) -> _Signature:
        """Name, modification time and size of every YAML file under the folder: cheap to compare."""
        found: set[tuple[str, int, int]] = set()
        for root, _dirs, files in os.walk(self.directory):
            for name in files:
                if not name.endswith(YAML_SUFFIXES):
                    continue
                path = os.path.join(root, name)
                try:
                    stat = os.stat(path)
                except OSError:
                    continue  # removed while we looked; the next scan sees it gone
                found.add((path, stat.st_mtime_ns, stat.st_size))
        return frozenset(found)

    def _reload(self) -> None:
        if not self.directory.is_dir():
            logger.warning("journey folder %s does not exist: no journeys are published", self.directory)
            self._last_good, self._bundles, self._problems = {}, {}, []
            return
        result = load_directory(self.directory)
        last_good: dict[Path, JourneyBundle] = {}
        for file, bundle in result.files.items():
            if bundle is not None:
                last_good[file] = bundle
                continue
            previous = self._last_good.get(file)
            if previous is not None:
                last_good[file] = previous
                outcome = f"still serving its last valid version {previous.version}"
            else:
                outcome = "not published"
            for problem in result.problems:
                if problem.file == str(file):
                    logger.warning("%s (%s)", problem, outcome)
        journey_files = {str(file) for file in result.files}
        for problem in result.problems:
            if problem.file not in journey_files:  # the policies file: every journey keeps what it had
                logger.warning("%s (every journey keeps its last valid version)", problem)
        bundles: dict[str, JourneyBundle] = {}
        for file in sorted(last_good):
            bundles.setdefault(last_good[file].journey.name, last_good[file])
        changed = {
            name
            for name, bundle in bundles.items()
            if getattr(self._bundles.get(name), "version", None) != bundle.version
        }
        if changed:
            logger.info("published journeys: %s", ", ".join(sorted(changed)))
        self._last_good, self._bundles, self._problems = last_good, bundles, result.problems
