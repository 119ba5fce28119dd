"""Master keys: the shop's own secrets, from ``OMNICART_ENCRYPTION_KEYS``.

The setting lists ``id:base64`` pairs, newest first: ``"k2:<base64>,k1:<base64>"``. The first key
encrypts everything new; every listed key still decrypts, so rotating is "put a new key in front,
keep the old ones until nothing written with them is still needed" and no history becomes unreadable.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pydantic import SecretStr

KEY_BYTES = 32  # AES-256
DEV_KEY_FILE = "encryption-keys.txt"
"""Under the data dir: the key ``omnicart dev`` generates when none is configured."""
DATA_KEY_PREFIX = "dek/"
"""Key ids of per-customer data keys start with this; master key ids must not."""

_KEY_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")


class KeyConfigError(ValueError):
    """``OMNICART_ENCRYPTION_KEYS`` is missing or malformed; the message says how to fix it."""


@dataclass(frozen=True)
class MasterKeys:
    """The configured master keys by id, and which one encrypts."""

    active_id: str
    keys: dict[str, bytes]

    @classmethod
    def parse(cls, setting: SecretStr | str | None) -> MasterKeys:
        text = setting.get_secret_value() if isinstance(setting, SecretStr) else setting
        if not text or not text.strip():
            raise KeyConfigError("no encryption key: set OMNICART_ENCRYPTION_KEYS (`omnicart keys new` prints one)")
        keys: dict[str, bytes] = {}
        for item in text.split(","):
            key_id, sep, encoded = item.strip().partition(":")
            if not sep or not _KEY_ID.fullmatch(key_id):
                raise KeyConfigError(f"OMNICART_ENCRYPTION_KEYS: {key_id!r} is not 'id:base64' with a short id")
            if key_id in keys:
                raise KeyConfigError(f"OMNICART_ENCRYPTION_KEYS: key id {key_id!r} appears twice")
            try:
                key = base64.b64decode(encoded, validate=True)
            except (binascii.Error, ValueError):
                raise KeyConfigError(f"OMNICART_ENCRYPTION_KEYS: key {key_id!r} is not base64") from None
            if len(key) != KEY_BYTES:
                raise KeyConfigError(f"OMNICART_ENCRYPTION_KEYS: key {key_id!r} must be {KEY_BYTES} bytes")
            keys[key_id] = key
        return cls(active_id=next(iter(keys)), keys=keys)

    @property
    def active(self) -> bytes:
        return self.keys[self.active_id]


def configured_keys(setting: SecretStr | None, data_dir: Path) -> SecretStr:
    """``OMNICART_ENCRYPTION_KEYS``, else the key ``omnicart dev`` keeps in the data dir.

    So ``omnicart forget`` or a second ``python worker.py`` next to ``omnicart dev`` read its
    histories without extra setup. Neither set: :class:`KeyConfigError`.
    """
    if setting is not None:
        return setting
    dev_key = data_dir / DEV_KEY_FILE
    if dev_key.is_file():
        return SecretStr(dev_key.read_text().strip())
    raise KeyConfigError("no encryption key: set OMNICART_ENCRYPTION_KEYS (`omnicart keys new` prints one)")


def new_key_spec(key_id: str | None = None) -> str:
    """A fresh random key as one ``id:base64`` item of ``OMNICART_ENCRYPTION_KEYS``."""
    key_id = key_id or "k" + datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    return f"{key_id}:{base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()}"
