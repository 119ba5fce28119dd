"""``GET /healthz/channels``: is a channel stopped because a provider refuses our configuration?

Sends run on workers, but every worker writes what happened to the shared message ledger: a message
waiting because its provider refused our credentials, sender or project is a ``deferred`` row whose
error begins with ``CONFIGURATION_ERROR_PREFIX`` (``omnicart.channels.base``). This endpoint reads
those rows from the last ``WINDOW`` and answers ``503`` naming each stopped channel, so a load
balancer's or an uptime checker's probe goes red until an operator fixes the setting and the
waiting messages go out. It names channels, providers and counts only: no customer, no address.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import Engine, func, select

from omnicart.channels.base import CONFIGURATION_ERROR_PREFIX
from omnicart.ledger import LedgerStatus, message_ledger

router = APIRouter(tags=["health"])

WINDOW = timedelta(minutes=15)
"""Three retry periods of a configuration error (5 minutes each): a fixed setting clears it in time."""


def stopped_channels(engine: Engine, now: datetime | None = None) -> dict[str, dict[str, Any]]:
    """Each channel with messages waiting on a configuration error updated within ``WINDOW``."""
    since = (now or datetime.now(UTC)) - WINDOW
    query = (
        select(
            message_ledger.c.channel,
            message_ledger.c.provider,
            func.count().label("waiting"),
            func.max(message_ledger.c.updated_at).label("last_refused"),
        )
        .where(
            message_ledger.c.status == LedgerStatus.DEFERRED.value,
            message_ledger.c.error.startswith(CONFIGURATION_ERROR_PREFIX, autoescape=True),
            message_ledger.c.updated_at >= since,
        )
        .group_by(message_ledger.c.channel, message_ledger.c.provider)
    )
    with engine.connect() as connection:
        rows = connection.execute(query).all()
    return {
        row.channel: {"provider": row.provider, "waiting": row.waiting, "last_refused": str(row.last_refused)}
        for row in rows
    }


@router.get("/healthz/channels")
async def channel_health(request: Request) -> JSONResponse:
    """``200 {"stopped": {}}``, or ``503`` with the channels a provider's refusal of our settings stops."""
    stopped = await asyncio.to_thread(stopped_channels, request.app.state.ledger.engine)
    return JSONResponse({"stopped": stopped}, status_code=503 if stopped else 200)
