"""The codec server as the Temporal UI and CLI call it: Temporal's remote codec protocol over HTTP."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest_asyncio
from pydantic import SecretStr
from temporalio.api.common.v1 import Payload
from temporalio.converter import WorkflowSerializationContext

from omnicart.api.app import create_app
from omnicart.security.data_keys import DataKeyStore
from omnicart.settings import Settings
from omnicart.storage import get_engine
from omnicart.temporal import data_key_store, payload_codec

UI = "http://127.0.0.1:8233"
TOKEN = "codec-token-for-tests"
INGEST_TOKEN = "ingest-token-for-tests"
ORIGINAL = b'{"email":"grace@example.org"}'


def settings_for(tmp_path: Path, **values: Any) -> Settings:
    return Settings(_env_file=None, data_dir=tmp_path / "data", codec_cors_origins=[UI], **values)


@pytest_asyncio.fixture
async def http(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings_for(tmp_path, codec_token=SecretStr(TOKEN), api_token=SecretStr(INGEST_TOKEN)))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://omnicart.test") as client:
        yield client


def as_json(payload: Payload) -> dict[str, Any]:
    """A payload as the UI sends it: protobuf JSON, bytes in base64."""
    return {
        "metadata": {name: base64.b64encode(value).decode() for name, value in payload.metadata.items()},
        "data": base64.b64encode(payload.data).decode(),
    }


async def encrypted(settings: Settings, workflow_id: str = "customer/cus_grace") -> Payload:
    context = WorkflowSerializationContext(namespace="default", workflow_id=workflow_id)
    [sealed] = await payload_codec(settings).with_context(context).encode(
        [Payload(metadata={"encoding": b"json/plain"}, data=ORIGINAL)]
    )
    return sealed


def bearer(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "X-Namespace": "default", "Origin": UI}


async def test_decode_with_the_token_gives_the_ui_the_original_payload(
    http: httpx.AsyncClient, tmp_path: Path
) -> None:
    sealed = await encrypted(settings_for(tmp_path))
    response = await http.post("/codec/decode", json={"payloads": [as_json(sealed)]}, headers=bearer())
    assert response.status_code == 200, response.text
    assert response.headers["access-control-allow-origin"] == UI
    [decoded] = response.json()["payloads"]
    assert base64.b64decode(decoded["data"]) == ORIGINAL
    assert base64.b64decode(decoded["metadata"]["encoding"]) == b"json/plain"


async def test_encode_then_decode_round_trips(http: httpx.AsyncClient) -> None:
    payload = {"metadata": {"encoding": base64.b64encode(b"json/plain").decode()},
               "data": base64.b64encode(ORIGINAL).decode()}
    encoded = await http.post("/codec/encode", json={"payloads": [payload]}, headers=bearer())
    [sealed] = encoded.json()["payloads"]
    assert base64.b64decode(sealed["metadata"]["encoding"]) == b"binary/encrypted"
    decoded = await http.post("/codec/decode", json=encoded.json(), headers=bearer())
    assert decoded.json() == {"payloads": [payload]}


async def test_without_or_with_a_wrong_token_nothing_is_decoded(http: httpx.AsyncClient, tmp_path: Path) -> None:
    body = {"payloads": [as_json(await encrypted(settings_for(tmp_path)))]}
    missing = await http.post("/codec/decode", json=body)
    wrong = await http.post("/codec/decode", json=body, headers=bearer("not-the-token"))
    ingest_token_is_not_enough = await http.post("/codec/decode", json=body, headers=bearer(INGEST_TOKEN))
    for response in (missing, wrong, ingest_token_is_not_enough):
        assert response.status_code in (401, 403) and "payloads" not in response.text


async def test_without_a_codec_token_it_is_off_except_under_omnicart_dev(tmp_path: Path) -> None:
    sealed = await encrypted(settings_for(tmp_path))
    for dev, expected in ((False, 403), (True, 200)):
        app = create_app(settings_for(tmp_path, codec_without_token=dev))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            response = await client.post("/codec/decode", json={"payloads": [as_json(sealed)]})
        assert response.status_code == expected, response.text


async def test_the_ui_origin_passes_the_cors_preflight_and_others_do_not(http: httpx.AsyncClient) -> None:
    preflight = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type,x-namespace",
    }
    allowed = await http.options("/codec/decode", headers={"Origin": UI, **preflight})
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == UI
    assert "x-namespace" in allowed.headers["access-control-allow-headers"].lower()
    refused = await http.options("/codec/decode", headers={"Origin": "https://evil.example", **preflight})
    assert "access-control-allow-origin" not in refused.headers
    # The ingest API itself is not opened to the UI's origin.
    ingest = await http.options("/v1/events", headers={"Origin": UI, **preflight})
    assert "access-control-allow-origin" not in ingest.headers


async def test_a_forgotten_customers_payloads_come_back_still_encrypted(
    http: httpx.AsyncClient, tmp_path: Path
) -> None:
    settings = settings_for(tmp_path)
    forgotten, kept = await encrypted(settings, "customer/cus_gone"), await encrypted(settings, "customer/cus_kept")
    before = await http.post("/codec/decode", json={"payloads": [as_json(forgotten)]}, headers=bearer())
    assert base64.b64decode(before.json()["payloads"][0]["data"]) == ORIGINAL
    # `omnicart forget` in another process: its own key store on the same table.
    master = data_key_store(settings).master
    DataKeyStore(get_engine(settings.key_database()), master).delete("customer/cus_gone")
    response = await http.post(
        "/codec/decode", json={"payloads": [as_json(forgotten), as_json(kept)]}, headers=bearer()
    )
    assert response.status_code == 200
    first, second = response.json()["payloads"]
    assert first == as_json(forgotten)
    assert base64.b64decode(second["data"]) == ORIGINAL
