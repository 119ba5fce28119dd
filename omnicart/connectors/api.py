"""The connectors' HTTP routes, mounted in the public API app (``omnicart.api.app``).

Webhooks (``/webhooks/shopify``, ``/webhooks/woocommerce``) and the Segment-compatible API are
authenticated by the platform's own means (signature, write key), not by the API token; the
operators' quarantine routes are behind the API token like the rest of ``/v1``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from omnicart.api.webhook_inbox import read_body
from omnicart.connectors import segment, shopify, shopify_privacy, woocommerce, woocommerce_checkout
from omnicart.connectors.core import MAX_WEBHOOK_BYTES, ConnectorAnswer, ConnectorInbox, json_object, require_signature
from omnicart.connectors.mappings import mappings_for
from omnicart.connectors.quarantine import ConnectorQuarantine
from omnicart.settings import Settings


class QuarantineEntry(BaseModel):
    connector: str
    delivery_id: str
    topic: str
    reason: str
    occurred_at: datetime
    quarantined_at: datetime


class ReplayOutcome(BaseModel):
    connector: str
    delivery_id: str
    answer: ConnectorAnswer


def build_inbox(request: Request) -> ConnectorInbox:
    """The app's inbox, made on first use (the ingest exists only once Temporal is connected)."""
    state = request.app.state
    ingest = getattr(state, "ingest", None)
    if ingest is None:
        raise HTTPException(status_code=503, detail="not ready yet", headers={"Retry-After": "5"})
    inbox: ConnectorInbox | None = getattr(state, "connector_inbox", None)
    if inbox is None or inbox.ingest is not ingest:
        settings: Settings = state.settings
        engine = state.event_log.engine
        inbox = ConnectorInbox(ingest, ConnectorQuarantine(engine), mappings_for(engine, settings),
                               settings.max_event_bytes)
        state.connector_inbox = inbox
    return inbox


def connectors_router(require_token: Callable[..., None], settings: Settings) -> APIRouter:
    """Every connector route; ``require_token`` guards the operators' ones (``settings``: secrets, origins)."""
    router = APIRouter(tags=["connectors"])
    guard = woocommerce_checkout.CheckoutGuard(settings.woocommerce_shop_origins, settings.woocommerce_checkout_rate)
    unauthorised: dict[int | str, dict[str, Any]] = {401: {"description": "Forged or missing signature."}}

    @router.post(shopify.PATH, response_model=ConnectorAnswer, responses=unauthorised,
                 summary="Shopify webhooks (every topic)")
    async def shopify_webhook(request: Request) -> Any:
        """Verified with `X-Shopify-Hmac-Sha256`; a genuine payload that cannot be mapped is `200` and quarantined."""
        body = await read_body(request, MAX_WEBHOOK_BYTES)
        require_signature("shopify", settings.shopify_api_secret, body, request.headers.get(shopify.HMAC_HEADER))
        delivery = shopify.delivery_of(request, body)
        if delivery.topic in shopify.PRIVACY_TOPICS:
            return await _privacy(request, delivery.topic, body)
        return await build_inbox(request).take(delivery)

    @router.post(woocommerce.PATH, response_model=ConnectorAnswer, responses=unauthorised,
                 summary="WooCommerce webhooks (every topic)")
    async def woocommerce_webhook(request: Request) -> Any:
        """Verified with `X-WC-Webhook-Signature`; WooCommerce's unsigned ping on saving a webhook is `200`."""
        body = await read_body(request, MAX_WEBHOOK_BYTES)
        if woocommerce.is_ping(request, body):
            return ConnectorAnswer(accepted=0, duplicates=0)
        secret = settings.woocommerce_webhook_secret
        require_signature("woocommerce", secret, body, request.headers.get(woocommerce.SIGNATURE_HEADER))
        return await build_inbox(request).take(woocommerce.delivery_of(request, body))

    @router.post(woocommerce_checkout.PATH, response_model=ConnectorAnswer,
                 summary="A WooCommerce checkout, posted by omnicart's script on the shop's checkout page")
    async def woocommerce_checkout_post(request: Request) -> Any:
        """Public: origin-checked, rate-limited, and the customer proven by the token the shop prints."""
        origin = guard.allowed_origin(request)
        guard.within_rate(request)
        body = await read_body(request, woocommerce_checkout.MAX_BODY_BYTES)
        delivery = woocommerce_checkout.checkout_delivery(body, origin, settings.woocommerce_webhook_secret)
        answer = await build_inbox(request).take(delivery)
        return JSONResponse(answer.model_dump(), headers={"Access-Control-Allow-Origin": origin, "Vary": "Origin"})

    @router.get(woocommerce_checkout.SCRIPT_PATH, include_in_schema=False)
    async def woocommerce_checkout_script() -> Response:
        return Response(woocommerce_checkout.SCRIPT.read_text(encoding="utf-8"),
                        media_type="text/javascript", headers={"Cache-Control": "public, max-age=3600"})

    for prefix in ("/v1/segment", "/segment/v1"):  # ours, and Segment's own paths under a host of /segment
        for call in ("identify", "track", "page", "batch", *(("import",) if prefix == "/segment/v1" else ())):
            router.add_api_route(f"{prefix}/{call}", _segment_route(settings, call), methods=["POST"],
                                 response_model=None, summary=f"Segment {call} call",
                                 include_in_schema=prefix == "/v1/segment")

    @router.get("/v1/connectors/quarantine", response_model=list[QuarantineEntry],
                dependencies=[Depends(require_token)], summary="Connector deliveries kept for an operator")
    async def quarantine_list(request: Request, connector: str | None = None, limit: int = 100) -> Any:
        """Genuine deliveries that could not be mapped, oldest first (no payloads: they may be personal)."""
        entries = ConnectorQuarantine(request.app.state.event_log.engine).open_entries(connector, min(limit, 1000))
        return [QuarantineEntry(connector=e.delivery.connector, delivery_id=e.delivery.delivery_id,
                                topic=e.delivery.topic, reason=e.reason, occurred_at=e.delivery.occurred_at,
                                quarantined_at=e.quarantined_at) for e in entries]

    @router.post("/v1/connectors/quarantine/replay", response_model=list[ReplayOutcome],
                 dependencies=[Depends(require_token)], summary="Map quarantined deliveries again, after a fix")
    async def quarantine_replay(request: Request, connector: str | None = None) -> Any:
        outcomes = await build_inbox(request).replay(connector)
        return [ReplayOutcome(connector=d.connector, delivery_id=d.delivery_id, answer=a) for d, a in outcomes]

    return router


def _segment_route(settings: Settings, call: str) -> Callable[[Request], Any]:
    async def segment_call(request: Request) -> Any:
        body = await read_body(request, segment.MAX_BATCH_BYTES)
        data = json_object(body)
        segment.require_write_key(settings.segment_write_keys, request.headers.get("authorization"), data or {})
        if data is None:
            raise HTTPException(status_code=400, detail="the body is not a JSON object")
        deliveries = segment.deliveries_of(call, data, datetime.now(UTC))
        answer = await build_inbox(request).take_all(deliveries)
        return {"success": True, **answer.model_dump()}

    segment_call.__name__ = f"segment_{call}"
    return segment_call


async def _privacy(request: Request, topic: str, body: bytes) -> Any:
    temporal = getattr(request.app.state, "temporal", None)
    if temporal is None:
        raise HTTPException(status_code=503, detail="not ready yet", headers={"Retry-After": "5"})
    payload = json_object(body) or {}
    done = await shopify_privacy.carry_out(topic, payload, temporal, request.app.state.settings)
    return JSONResponse({"accepted": 0, "duplicates": 0, "quarantined": 0, "privacy": done})
