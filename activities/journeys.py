"""The ``load_journeys`` activity: journey versions from the registry, for a customer's workflow.

Events name the journeys they may trigger by version; the workflow asks for the versions it has not
seen (a local activity: its answer is recorded once in the history, and versions never change, so
replays and every later run see the same content). The answer outlines the templates
(``JourneyBundle.for_workflow``): the send activity reads their words from the registry, so the
history and the customer's state carry only the journey.
"""

from __future__ import annotations

import asyncio

from temporalio import activity

from omnicart.journey.versions import JourneyVersions
from omnicart.signals import LOAD_JOURNEYS_ACTIVITY, LoadedJourneys


class JourneyActivities:
    def __init__(self, versions: JourneyVersions) -> None:
        self.versions = versions

    @activity.defn(name=LOAD_JOURNEYS_ACTIVITY)
    async def load_journeys(self, versions: list[str]) -> LoadedJourneys:
        found = await asyncio.gather(*(asyncio.to_thread(self.versions.bundle, version) for version in versions))
        bundles = [bundle.for_workflow() for bundle in found if bundle is not None]
        missing = [version for version, bundle in zip(versions, found, strict=True) if bundle is None]
        if missing:
            activity.logger.error("journey versions not in the registry: %s", ", ".join(missing))
        return LoadedJourneys(bundles=bundles, missing=missing)
