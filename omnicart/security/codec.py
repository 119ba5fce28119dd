"""The payload codec: every payload the product writes to Temporal is encrypted (AES-256-GCM).

Temporal keeps workflow inputs, signals, activity inputs and results, query answers and failures in
its history, readable by anyone with the Temporal UI or CLI. This codec turns each payload into
``nonce + ciphertext`` with metadata ``encoding: binary/encrypted`` and ``encryption-key-id``:

* payloads of a customer's workflow (the serialization context names the workflow) use that
  customer's own data key (:mod:`omnicart.security.data_keys`), so forgetting the customer is
  deleting one key;
* anything else (no context, or not a customer's workflow) uses the active master key.

Decoding reads only the payload's own metadata, never the context, so the codec server and
``temporal workflow show --codec-endpoint`` decrypt without knowing where a payload came from.
The key id is bound to the ciphertext as associated data: relabelling a payload fails to decrypt.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec, SerializationContext, WithSerializationContext

from omnicart.security.data_keys import DataKeyStore, UnknownDataKey
from omnicart.security.keys import DATA_KEY_PREFIX, MasterKeys

ENCODING = b"binary/encrypted"
KEY_ID = "encryption-key-id"
NONCE_BYTES = 12
CUSTOMER_WORKFLOW_PREFIX = "customer/"


class UndecryptablePayload(ValueError):
    """An encrypted payload this process cannot read: unknown or deleted key, or tampered bytes."""


class EncryptionCodec(PayloadCodec, WithSerializationContext):
    """AES-256-GCM with the customer's data key when the context names a customer's workflow."""

    def __init__(self, master: MasterKeys, data_keys: DataKeyStore | None, owner: str | None = None) -> None:
        self.master = master
        self.data_keys = data_keys
        self.owner = owner

    def with_context(self, context: SerializationContext) -> EncryptionCodec:
        """The same keys, bound to the workflow the payloads belong to (when it is a customer's)."""
        workflow_id = getattr(context, "workflow_id", None)
        owner = (
            workflow_id if isinstance(workflow_id, str) and workflow_id.startswith(CUSTOMER_WORKFLOW_PREFIX) else None
        )
        return EncryptionCodec(self.master, self.data_keys, owner)

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        if not payloads:
            return []  # no key lookup for nothing (a signal without arguments)
        key_id, key = await self._encryption_key()
        cipher = AESGCM(key)
        return [_encrypt(cipher, key_id, payload) for payload in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        decoded: list[Payload] = []
        for payload in payloads:
            if payload.metadata.get("encoding") != ENCODING:
                decoded.append(payload)  # written before encryption was on, or by another codec
                continue
            key_id = payload.metadata.get(KEY_ID, b"").decode()
            decoded.append(_decrypt(AESGCM(await self._decryption_key(key_id)), key_id, payload))
        return decoded

    async def _encryption_key(self) -> tuple[str, bytes]:
        if self.owner is None or self.data_keys is None:
            return self.master.active_id, self.master.active
        return await asyncio.to_thread(self.data_keys.key_for, self.owner)

    async def _decryption_key(self, key_id: str) -> bytes:
        if key_id.startswith(DATA_KEY_PREFIX):
            if self.data_keys is None:
                raise UndecryptablePayload(f"payload encrypted with data key {key_id}, but no key store is configured")
            cached = self.data_keys.cached_key(key_id)
            if cached is not None:
                return cached
            try:
                return await asyncio.to_thread(self.data_keys.key, key_id)
            except UnknownDataKey as exc:
                raise UndecryptablePayload(str(exc)) from None
        key = self.master.keys.get(key_id)
        if key is None:
            raise UndecryptablePayload(f"payload encrypted with master key {key_id!r}, which is not configured")
        return key


def _encrypt(cipher: AESGCM, key_id: str, payload: Payload) -> Payload:
    nonce = os.urandom(NONCE_BYTES)
    sealed = cipher.encrypt(nonce, payload.SerializeToString(), key_id.encode())
    return Payload(metadata={"encoding": ENCODING, KEY_ID: key_id.encode()}, data=nonce + sealed)


def _decrypt(cipher: AESGCM, key_id: str, payload: Payload) -> Payload:
    try:
        plain = cipher.decrypt(payload.data[:NONCE_BYTES], payload.data[NONCE_BYTES:], key_id.encode())
    except InvalidTag:
        raise UndecryptablePayload(
            f"payload under key {key_id!r} fails authentication (tampered or wrong key)"
        ) from None
    decoded = Payload()
    decoded.ParseFromString(plain)
    return decoded
