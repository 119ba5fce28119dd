"""The journey registry: published journeys as immutable versions in the product database.

Publishing (``omnicart publish``, ``omnicart dev`` on a file change, the console) validates the files
and writes each changed journey as a new version keyed by its content hash (``JourneyBundle.version``);
every API host and worker reads the same published set from the shared database, so two hosts can
never serve two versions, and a deploy needs no journey files on the API's disk.

A version never changes once written: a run that started on it keeps it for its whole life, and
anything holding only the hash (a workflow, a send) can always get the same content back. What
changes is which version of a journey is *current* and whether the journey is *paused* (no new
entries; runs under way go on, or, paused with ``exit_runs``, end: ``omnicart.journey_exit``). Every
publish, pause and resume is recorded with who did it.
"""

from __future__ import annotations

import getpass
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from sqlalchemy import Column, Connection, DateTime, Engine, ForeignKey, Integer, String, Table, Text, select, update
from sqlalchemy.exc import IntegrityError

from omnicart.journey.catalog import triggered_by
from omnicart.journey.loader import Problem, is_policies_file, load_files, named_files
from omnicart.journey.model import JourneyBundle
from omnicart.storage import metadata, utc

logger = logging.getLogger(__name__)

Status = Literal["active", "paused"]
Change = Literal["published", "paused", "paused_exit", "resumed"]

journey_versions = Table(
    "journey_versions",
    metadata,
    Column("version", String(64), primary_key=True),
    Column("name", String(200), nullable=False, index=True),
    Column("bundle", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("created_by", String(200), nullable=False),
)

published_journeys = Table(
    "published_journeys",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("version", String(64), ForeignKey("journey_versions.version"), nullable=False),
    Column("status", String(20), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("updated_by", String(200), nullable=False),
)

journey_changes = Table(
    "journey_changes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False, index=True),
    Column("change", String(20), nullable=False),
    Column("version", String(64), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("by", String(200), nullable=False),
)


@dataclass(frozen=True)
class Published:
    """A journey as it is published now: its current version and whether it takes new entries."""

    bundle: JourneyBundle
    status: Status
    updated_at: datetime
    updated_by: str

    @property
    def name(self) -> str:
        return self.bundle.journey.name

    @property
    def version(self) -> str:
        return self.bundle.version


@dataclass(frozen=True)
class ChangeRecord:
    name: str
    change: Change
    version: str
    at: datetime
    by: str


class UnknownJourney(LookupError):
    """No journey of that name was ever published."""


class JourneyRegistry:
    """Versions, the published set and their history, in the product database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def publish(self, bundles: Iterable[JourneyBundle], by: str) -> list[str]:
        """Make these the current versions of their journeys; the names whose version changed.

        Publishing content that is already current changes nothing (and records nothing), so it is
        safe to publish the whole folder on every change. A paused journey stays paused.
        """
        changed = []
        now = datetime.now(UTC)
        for bundle in bundles:
            name = bundle.journey.name
            with self.engine.begin() as connection:
                self._store_version(connection, bundle, now, by)
                current = connection.execute(
                    select(published_journeys.c.version).where(published_journeys.c.name == name)
                ).scalar_one_or_none()
                if current == bundle.version:
                    continue
                if current is None:
                    connection.execute(published_journeys.insert().values(
                        name=name, version=bundle.version, status="active", updated_at=now, updated_by=by))
                else:
                    connection.execute(update(published_journeys).where(published_journeys.c.name == name).values(
                        version=bundle.version, updated_at=now, updated_by=by))
                connection.execute(journey_changes.insert().values(
                    name=name, change="published", version=bundle.version, at=now, by=by))
            changed.append(name)
        return changed

    def pause(self, name: str, by: str, *, exit_runs: bool = False) -> bool:
        """Stop new entries into a journey; False if it was paused already and nothing changed.

        Runs under way go on, unless ``exit_runs``: then the change is recorded as ``paused_exit``
        (also for a journey paused before, whose runs now end) and the caller tells the customers'
        workflows (``omnicart.journey_exit``).
        """
        return self._set_status(name, "paused", "paused_exit" if exit_runs else "paused", by)

    def resume(self, name: str, by: str) -> bool:
        """Let a paused journey take new entries again; False if it was not paused."""
        return self._set_status(name, "active", "resumed", by)

    def published(self) -> dict[str, Published]:
        """Every published journey, paused or not, by name."""
        query = select(published_journeys, journey_versions.c.bundle).join(
            journey_versions, journey_versions.c.version == published_journeys.c.version
        )
        with self.engine.connect() as connection:
            rows = connection.execute(query).all()
        return {
            row.name: Published(
                bundle=JourneyBundle.model_validate_json(row.bundle),
                status=row.status,
                updated_at=utc(row.updated_at),
                updated_by=row.updated_by,
            )
            for row in rows
        }

    def version(self, version: str) -> JourneyBundle | None:
        """A version by its content hash, current or not: what a run that started on it still runs."""
        with self.engine.connect() as connection:
            text = connection.execute(
                select(journey_versions.c.bundle).where(journey_versions.c.version == version)
            ).scalar_one_or_none()
        return None if text is None else JourneyBundle.model_validate_json(text)

    def changes(self, name: str | None = None) -> list[ChangeRecord]:
        """Who published, paused and resumed what, oldest first."""
        query = select(journey_changes).order_by(journey_changes.c.id)
        if name is not None:
            query = query.where(journey_changes.c.name == name)
        with self.engine.connect() as connection:
            rows = connection.execute(query).all()
        return [ChangeRecord(row.name, row.change, row.version, utc(row.at), row.by) for row in rows]

    def _store_version(self, connection: Connection, bundle: JourneyBundle, now: datetime, by: str) -> None:
        """Insert the version unless it exists (content-addressed: the same hash is the same content)."""
        exists = connection.execute(
            select(journey_versions.c.version).where(journey_versions.c.version == bundle.version)
        ).first()
        if exists is None:
            try:
                with connection.begin_nested():  # another publisher may insert the same version now
                    connection.execute(journey_versions.insert().values(
                        version=bundle.version, name=bundle.journey.name,
                        bundle=bundle.model_dump_json(by_alias=True), created_at=now, created_by=by))
            except IntegrityError:
                pass

    def _set_status(self, name: str, status: Status, change: Change, by: str) -> bool:
        now = datetime.now(UTC)
        with self.engine.begin() as connection:
            row = connection.execute(
                select(published_journeys.c.status, published_journeys.c.version).where(
                    published_journeys.c.name == name)
            ).first()
            if row is None:
                raise UnknownJourney(f"no journey named {name!r} was ever published")
            if row.status == status and change != "paused_exit":
                return False
            connection.execute(update(published_journeys).where(published_journeys.c.name == name).values(
                status=status, updated_at=now, updated_by=by))
            connection.execute(journey_changes.insert().values(
                name=name, change=change, version=row.version, at=now, by=by))
        return True


def publish_files(registry: JourneyRegistry, paths: Iterable[Path], by: str) -> tuple[list[str], list[Problem]]:
    """Validate journey files and publish them all, or none: ``(changed names, problems)``.

    One broken file stops the whole publish, so a folder is never half published. Each journey is
    published with its folder's policies, so publishing a folder after an edit of its policies file
    makes a new version of every journey in it; naming the policies file means its whole folder.
    """
    result = load_files(named_files(path.parent if is_policies_file(path) else path for path in paths))
    if result.problems:
        return [], result.problems
    return registry.publish(result.bundles.values(), by), []


def default_author() -> str:
    """Who publishes from this terminal, for the registry's history: user@host."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


class PublishedJourneys:
    """The published set as an API host or worker sees it: read from the registry, refreshed at most
    once per ``max_age`` seconds, so asking it on every event costs nothing."""

    by_reference = True  # workers read the same registry: events name journeys by version

    def __init__(
        self,
        registry: JourneyRegistry,
        *,
        max_age: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.registry = registry
        self._max_age = max_age
        self._clock = clock
        self._lock = threading.Lock()
        self._loaded_at: float | None = None
        self._published: dict[str, Published] = {}

    def bundles_for(self, event_type: str) -> list[JourneyBundle]:
        """The active, enabled journeys an event of this type starts, by journey name."""
        return triggered_by((item.bundle for item in self.all().values() if item.status == "active"), event_type)

    def all(self) -> dict[str, Published]:
        with self._lock:
            now = self._clock()
            if self._loaded_at is None or now - self._loaded_at >= self._max_age:
                first = self._loaded_at is None
                self._loaded_at = now  # after a failure too: ask again in max_age, not on every event
                try:
                    self._published = self.registry.published()
                except Exception:
                    if first:
                        self._loaded_at = None
                        raise
                    logger.warning("journey registry unreachable: serving the set read before")
            return dict(self._published)
