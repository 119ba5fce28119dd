"""Compressing payloads before they are encrypted (ciphertext does not compress).

Journey payloads are repetitive JSON (a cart's items, a journey's steps and templates), so zlib
shrinks them several times over; what Temporal stores and sends shrinks with them. A payload is
compressed only when that saves something worth having, and decompression is bounded, so a
crafted payload cannot expand into gigabytes inside a worker.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

ENCODING = b"binary/zlib"
MIN_BYTES = 256
"""Payloads smaller than this are left alone: the saving would not pay for the work."""
MAX_INFLATED_BYTES = 8 * 1024 * 1024
"""Four times Temporal's 2 MB payload limit: more than any payload we write, less than a bomb."""


class PayloadTooLarge(ValueError):
    """A compressed payload that inflates past ``MAX_INFLATED_BYTES``."""


class CompressionCodec(PayloadCodec):
    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [_compress(payload) for payload in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [_inflate(payload) if payload.metadata.get("encoding") == ENCODING else payload
                for payload in payloads]


def _compress(payload: Payload) -> Payload:
    raw = payload.SerializeToString()
    if len(raw) < MIN_BYTES:
        return payload
    packed = zlib.compress(raw, 6)
    if len(packed) >= len(raw) * 0.9:
        return payload  # random-looking data: keep it as it is
    return Payload(metadata={"encoding": ENCODING}, data=packed)


def _inflate(payload: Payload) -> Payload:
    inflater = zlib.decompressobj()
    raw = inflater.decompress(payload.data, MAX_INFLATED_BYTES)
    if inflater.unconsumed_tail:
        raise PayloadTooLarge(f"a compressed payload inflates past {MAX_INFLATED_BYTES} bytes")
    return Payload.FromString(raw)
