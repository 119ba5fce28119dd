"""``GET /v1/customers/{customer_id}/consent``: a customer's consent history, for a back office,
a data-subject access request (GDPR art. 15) or reconciling with a registry such as İYS."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from fastapi import APIRouter, Depends

from omnicart.consent.history import ConsentExport, ConsentHistory


def consent_router(require_token: Callable[..., None], history: ConsentHistory) -> APIRouter:
    """The route, behind the ingest API's bearer token (``OMNICART_API_TOKEN``), beside the customer routes."""
    router = APIRouter(dependencies=[Depends(require_token)], tags=["customers"])

    @router.get(
        "/v1/customers/{customer_id}/consent",
        response_model=ConsentExport,
        summary="One customer's consent history, with provenance",
        responses={401: {"description": "Missing or wrong bearer token."}},
    )
    async def consent_history(customer_id: str) -> ConsentExport:
        """Every consent change of the customer, oldest first (channel or topic, granted, when, source,
        evidence, the address it was about), and the latest per channel and topic. A customer with no
        recorded change (or forgotten) has an empty history."""
        return await asyncio.to_thread(history.export, customer_id)

    return router
