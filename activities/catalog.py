"""The ``catalog_for_conditions`` activity: what the catalog says now of a cart's skus, for a branch.

The interpreter is pure and the workflow cannot read the database, so when a run is about to
reach a condition that reads ``catalog`` (a low-stock branch), the workflow asks this local
activity first (``interpreter.catalog_wanted`` names the skus) and hands the answer to the
interpreter as an input: its answer is in the history, so a replay decides the same way.
"""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import Engine
from temporalio import activity

from omnicart.catalog.availability import condition_view
from omnicart.catalog.snapshot import load_snapshot
from omnicart.signals import CATALOG_FOR_CONDITIONS_ACTIVITY


class CatalogActivities:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @activity.defn(name=CATALOG_FOR_CONDITIONS_ACTIVITY)
    async def catalog_for_conditions(self, skus: list[str]) -> dict[str, dict[str, Any]]:
        snapshot = await asyncio.to_thread(load_snapshot, self.engine, skus)
        return condition_view(snapshot, skus)
