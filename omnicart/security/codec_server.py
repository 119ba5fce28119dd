"""The codec server: lets the Temporal UI and CLI show decrypted payloads to people allowed to see them.

Temporal's remote codec protocol: ``POST /codec/decode`` (and ``/codec/encode``) with
``{"payloads": [{"metadata": {...}, "data": "<base64>"}]}`` (the protobuf JSON form of
``Payloads``), answered in the same shape. The UI calls it from the browser, so it needs CORS for
the UI's origin (``OMNICART_CODEC_CORS_ORIGINS``), and it has its own bearer token
(``OMNICART_CODEC_TOKEN``), distinct from the ingest token: reading customers' data is a
different permission from sending events. Without a token it refuses everything, except under
``omnicart dev``, which serves it on loopback only.

A payload it cannot decrypt (its customer was forgotten) is returned unchanged, so the UI still
shows the rest of the history.
"""

from __future__ import annotations

import logging
import secrets
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.converter import PayloadCodec

from omnicart.security.codec import UndecryptablePayload
from omnicart.settings import Settings

log = logging.getLogger(__name__)

_bearer = HTTPBearer(auto_error=False, description="OMNICART_CODEC_TOKEN.")


def codec_app(settings: Settings, codec: PayloadCodec) -> FastAPI:
    """The codec endpoints as an application of their own, mounted at ``/codec`` by the API.

    A separate application keeps its CORS rules to itself: the UI's origin may call the codec,
    not the ingest API.
    """

    def authorized(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> None:
        token = settings.codec_token
        if token is None:
            if settings.codec_without_token:
                return
            raise HTTPException(status_code=403, detail="the codec server is off: set OMNICART_CODEC_TOKEN")
        given = credentials.credentials.encode() if credentials is not None else b""
        if not secrets.compare_digest(given, token.get_secret_value().encode()):
            raise HTTPException(
                status_code=401, detail="missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"}
            )

    app = FastAPI(title="omnicart codec server", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.codec_cors_origins,
        allow_methods=["POST"],
        allow_headers=["authorization", "content-type", "x-namespace"],
        allow_credentials=True,
    )

    @app.post("/encode", dependencies=[Depends(authorized)])
    async def encode(request: Request) -> dict[str, Any]:
        payloads = _read(await request.body())
        return _write(await codec.encode(payloads))

    @app.post("/decode", dependencies=[Depends(authorized)])
    async def decode(request: Request) -> dict[str, Any]:
        decoded: list[Payload] = []
        for payload in _read(await request.body()):
            try:
                decoded += await codec.decode([payload])
            except UndecryptablePayload as exc:
                log.info("codec server: a payload stays encrypted: %s", exc)
                decoded.append(payload)
        return _write(decoded)

    return app


def _read(body: bytes) -> list[Payload]:
    payloads = Payloads()
    try:
        json_format.Parse(body, payloads, ignore_unknown_fields=True)
    except json_format.ParseError as exc:
        raise HTTPException(status_code=400, detail=f'expected {{"payloads": [...]}}: {exc}') from None
    return list(payloads.payloads)


def _write(payloads: list[Payload]) -> dict[str, Any]:
    return {"payloads": [json_format.MessageToDict(payload) for payload in payloads]}
