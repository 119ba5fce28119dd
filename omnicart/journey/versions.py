"""Journey versions by content hash, for the worker: the send activity's templates and the workflow's
``load_journeys``. Versions never change, so each is read from the registry once per process."""

from __future__ import annotations

import threading
from collections import OrderedDict

from omnicart.journey.model import JourneyBundle, Template
from omnicart.journey.registry import JourneyRegistry

CACHED_VERSIONS = 256


class UnknownVersion(LookupError):
    """A version that is not in this registry (a worker on another database, or replication lag)."""


class JourneyVersions:
    """A bounded, thread-safe cache in front of ``JourneyRegistry.version``."""

    def __init__(self, registry: JourneyRegistry) -> None:
        self.registry = registry
        self._cache: OrderedDict[str, JourneyBundle] = OrderedDict()
        self._lock = threading.Lock()

    def bundle(self, version: str) -> JourneyBundle | None:
        with self._lock:
            if version in self._cache:
                self._cache.move_to_end(version)
                return self._cache[version]
        bundle = self.registry.version(version)
        if bundle is not None:
            with self._lock:
                self._cache[version] = bundle
                while len(self._cache) > CACHED_VERSIONS:
                    self._cache.popitem(last=False)
        return bundle

    def template(self, version: str, name: str) -> Template:
        bundle = self.bundle(version)
        if bundle is None or name not in bundle.templates:
            raise UnknownVersion(f"journey version {version} (template {name!r}) is not in the journey registry")
        return bundle.templates[name]
