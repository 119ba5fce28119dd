"""The compression step of the payload chain: smaller histories, nothing lost, no decompression bomb."""

from __future__ import annotations

import json
import os
import zlib

import pytest
from temporalio.api.common.v1 import Payload

from omnicart.security.codec import EncryptionCodec
from omnicart.security.compression import ENCODING, MAX_INFLATED_BYTES, CompressionCodec, PayloadTooLarge
from omnicart.settings import Settings
from omnicart.temporal import data_converter, payload_codec
from tests.support.bundles import flagship


def _json(value: object) -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=json.dumps(value).encode())


async def test_a_journey_bundle_shrinks_and_comes_back_byte_for_byte() -> None:
    original = _json(flagship().model_dump(mode="json"))
    [packed] = await CompressionCodec().encode([original])
    assert packed.metadata["encoding"] == ENCODING
    assert packed.ByteSize() < original.ByteSize() / 3
    [back] = await CompressionCodec().decode([packed])
    assert back == original


async def test_small_and_random_payloads_are_left_alone() -> None:
    small = _json({"id": "evt_1"})
    noise = Payload(metadata={"encoding": b"binary/plain"}, data=os.urandom(4096))
    assert await CompressionCodec().encode([small, noise]) == [small, noise]


async def test_a_payload_that_inflates_past_the_bound_is_refused() -> None:
    bomb = Payload(metadata={"encoding": ENCODING}, data=zlib.compress(b"\0" * (MAX_INFLATED_BYTES + 1)))
    with pytest.raises(PayloadTooLarge):
        await CompressionCodec().decode([bomb])


async def test_the_product_chain_compresses_then_encrypts_and_still_reads_older_payloads() -> None:
    codec = data_converter(Settings(_env_file=None)).payload_codec  # the session's key (tests/conftest.py)
    assert codec is not None
    original = _json({"cart": [{"sku": f"SKU-{i}", "name": "Linen shirt"} for i in range(50)]})
    [stored] = await codec.encode([original])
    assert b"Linen" not in stored.SerializeToString()  # encrypted, and smaller than the JSON
    assert stored.ByteSize() < original.ByteSize()
    assert await codec.decode([stored]) == [original]

    chain = payload_codec(Settings(_env_file=None))
    encrypt_only = chain.codecs[-1]  # what the product wrote before compression was added
    assert isinstance(encrypt_only, EncryptionCodec)
    [older] = await encrypt_only.encode([original])
    assert await codec.decode([older]) == [original]
