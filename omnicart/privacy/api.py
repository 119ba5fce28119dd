"""``POST /v1/customers/{customer_id}/forget``: erasure on request, for a shop's back office."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request

from omnicart.privacy.forget import forget_customer


def forget_router(require_token: Callable[..., None]) -> APIRouter:
    """The route, behind the same bearer token as the ingest API (``OMNICART_API_TOKEN``)."""
    router = APIRouter()

    @router.post(
        "/v1/customers/{customer_id}/forget",
        dependencies=[Depends(require_token)],
        summary="Erase a customer everywhere (right to be forgotten)",
        responses={401: {"description": "Missing or wrong bearer token."}},
    )
    async def forget(customer_id: str, request: Request) -> dict[str, Any]:
        """End the customer's workflow, shred its data key (its Temporal history becomes unreadable),
        delete recipients and error texts, pseudonymise ledger, event-log and discount rows.

        Idempotent: asking again reports that nothing was left. A later event for the same id
        starts afresh, with a new key.
        """
        temporal = getattr(request.app.state, "temporal", None)
        if temporal is None:
            raise HTTPException(status_code=503, detail="not ready yet, please try again", headers={"Retry-After": "5"})
        report = await forget_customer(temporal, request.app.state.settings, customer_id)
        return {**asdict(report), "summary": report.lines()}

    return router
