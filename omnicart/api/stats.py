"""``GET /v1/journeys/{name}/stats``: a journey's report (``omnicart.analytics.report``) as JSON.

Behind the ingest API's bearer token, like every ``/v1`` route. The same numbers as
``omnicart report NAME --format json``, for a dashboard; docs/ANALYTICS.md says what each means.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import Engine

from omnicart.analytics.report import GroupBy, JourneyReport, stored_journey_report


def stats_router(require_token: Callable[..., None], engine: Engine) -> APIRouter:
    """The route, reading the analytics store in ``engine``."""
    router = APIRouter(dependencies=[Depends(require_token)], tags=["analytics"])
    responses: dict[int | str, dict[str, Any]] = {
        401: {"description": "Missing or wrong bearer token."},
        404: {"description": "No run of this journey was ever recorded."},
    }

    @router.get(
        "/v1/journeys/{name}/stats",
        response_model=JourneyReport,
        summary="A journey's entries, sends, outcomes, conversions and revenue",
        responses=responses,
    )
    async def journey_stats(
        name: str,
        since: Annotated[datetime | None, Query(description="Runs that entered at or after (ISO 8601).")] = None,
        until: Annotated[datetime | None, Query(description="Runs that entered before (ISO 8601).")] = None,
        by: Annotated[GroupBy, Query(description="One group per step, variant, channel or version.")] = "step",
    ) -> JourneyReport:
        """The report of the runs that entered in [since, until); a time without a zone is UTC."""
        since, until = as_utc(since), as_utc(until)
        report = await run_in_threadpool(
            lambda: stored_journey_report(engine, name, by=by, since=since, until=until)
        )
        if report is None:
            raise HTTPException(status_code=404, detail=f"no run of journey {name!r} was recorded")
        return report

    return router


def as_utc(value: datetime | None) -> datetime | None:
    """A time as given, or UTC when it has no zone: what "2026-11-01" means to a marketer's query."""
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value
