"""Per-customer data keys (envelope encryption): erase a customer by deleting one row.

Each customer's workflow gets its own random AES-256 data key. The key is kept in the product
database only *wrapped*, encrypted under the active master key, so a database dump without the
master key reveals nothing. Every payload of that workflow in Temporal is encrypted with it; deleting
the row ("crypto-shredding") makes all of them unreadable at once, wherever copies of the history
live, without touching Temporal. Payloads name their data key by id, so decrypting needs no context.

Unwrapped keys are cached in memory by id (bounded, short-lived), so decrypting rarely reads the
table, and a deleted key stops decrypting everywhere within the cache's lifetime. Encrypting always
asks the table which key is the owner's now (one indexed read): a process still holding a forgotten
customer's key in memory must never encrypt a new run's payloads with it, or that run would become
unreadable, and wedged, once the cache expired.
"""

from __future__ import annotations

import os
import secrets
import threading
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from cachetools import TTLCache
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import (
    Column,
    ColumnElement,
    DateTime,
    Engine,
    LargeBinary,
    Row,
    String,
    Table,
    delete,
    insert,
    inspect,
    select,
)
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

from omnicart.security.keys import DATA_KEY_PREFIX, KEY_BYTES, MasterKeys
from omnicart.storage import get_engine, metadata

NONCE_BYTES = 12
CACHE_SIZE = 10_000

customer_keys = Table(
    "customer_keys",
    metadata,
    Column("key_id", String(64), primary_key=True),
    Column("owner", String(300), nullable=False, unique=True, comment="The workflow id the key encrypts."),
    Column("master_key_id", String(64), nullable=False),
    Column("wrapped_key", LargeBinary, nullable=False, comment="nonce + AES-GCM(master key, data key)"),
    Column("created_at", DateTime(timezone=True), nullable=False),
)


class UnknownDataKey(LookupError):
    """The data key was deleted (the customer was forgotten) or never existed here."""


class DataKeyStore:
    """Creates, finds and deletes data keys; thread-safe, shared by every codec of a process."""

    def __init__(
        self, engine: Engine, master: MasterKeys, cache_seconds: float = 30.0, *, create_table: bool = True
    ) -> None:
        """``create_table``: for a key database of its own (``OMNICART_KEY_DATABASE_URL``), which the
        product's migrations do not manage; in the product database the migrations made the table."""
        self.engine = engine
        self.master = master
        self._by_id: TTLCache[str, bytes] = TTLCache(CACHE_SIZE, cache_seconds)
        self._lock = threading.Lock()
        self._table_ready = not create_table
        self._table_lock = threading.Lock()

    def cached_key(self, key_id: str) -> bytes | None:
        with self._lock:
            return self._by_id.get(key_id)

    def key_for(self, owner: str) -> tuple[str, bytes]:
        """``(key_id, key)`` that encrypts ``owner``'s payloads now, created on first use."""
        row = self._find(customer_keys.c.owner == owner) or self._create(owner)
        cached = self.cached_key(row.key_id)
        return row.key_id, cached if cached is not None else self._load(row)

    def key(self, key_id: str) -> bytes:
        """The data key with this id, or :class:`UnknownDataKey`."""
        found = self.cached_key(key_id)
        if found is not None:
            return found
        row = self._find(customer_keys.c.key_id == key_id)
        if row is None:
            raise UnknownDataKey(f"data key {key_id} does not exist (deleted when its customer was forgotten)")
        return self._load(row)

    def _find(self, where: ColumnElement[bool]) -> Row[Any] | None:
        self._ensure_table()
        with self.engine.connect() as conn:
            return conn.execute(select(customer_keys).where(where)).first()

    def _load(self, row: Row[Any]) -> bytes:
        """The row's key, unwrapped and remembered."""
        key = self._unwrap(row.key_id, row.master_key_id, row.wrapped_key)
        with self._lock:
            self._by_id[row.key_id] = key
        return key

    def delete(self, owner: str) -> bool:
        """Shred ``owner``'s key; True when there was one. Its payloads can never be decrypted again."""
        self._ensure_table()
        with self.engine.begin() as conn:
            row = conn.execute(select(customer_keys.c.key_id).where(customer_keys.c.owner == owner)).first()
            if row is not None:
                conn.execute(delete(customer_keys).where(customer_keys.c.key_id == row.key_id))
        if row is not None:
            with self._lock:
                self._by_id.pop(row.key_id, None)
        return row is not None

    def _create(self, owner: str) -> Row[Any]:
        key_id = DATA_KEY_PREFIX + secrets.token_hex(16)
        nonce = os.urandom(NONCE_BYTES)
        wrapped = nonce + AESGCM(self.master.active).encrypt(nonce, AESGCM.generate_key(KEY_BYTES * 8), key_id.encode())
        values = {
            "key_id": key_id,
            "owner": owner,
            "master_key_id": self.master.active_id,
            "wrapped_key": wrapped,
            "created_at": datetime.now(UTC),
        }
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(customer_keys).values(**values))
        except IntegrityError:
            pass  # another process created this owner's key first: use theirs
        row = self._find(customer_keys.c.owner == owner)
        assert row is not None, "a key just inserted (by us or another process) is there"
        return row

    def _unwrap(self, key_id: str, master_key_id: str, wrapped: bytes) -> bytes:
        master = self.master.keys.get(master_key_id)
        if master is None:
            raise UnknownDataKey(
                f"data key {key_id} is wrapped with master key {master_key_id!r}, which is no longer configured"
            )
        return AESGCM(master).decrypt(wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], key_id.encode())

    def _ensure_table(self) -> None:
        """Create the table on first use; safe when threads or processes race to do it."""
        if self._table_ready:
            return
        with self._table_lock:
            if not self._table_ready:
                try:
                    customer_keys.create(self.engine, checkfirst=True)
                except (OperationalError, ProgrammingError):
                    if not inspect(self.engine).has_table(customer_keys.name):
                        raise
                self._table_ready = True


@lru_cache(maxsize=8)
def shared_store(
    database_url: str, keys_setting: str, cache_seconds: float, *, create_table: bool = True
) -> DataKeyStore:
    """One store per database and key set in a process, so erasing a key clears every codec's cache."""
    return DataKeyStore(
        get_engine(database_url), MasterKeys.parse(keys_setting), cache_seconds, create_table=create_table
    )
