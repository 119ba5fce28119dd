"""How much the payload codec costs: payloads encrypted and decrypted per second, and bytes added.

    .venv/bin/python -m benchmarks.codec_speed

Uses a send request's size (about 2 KB of JSON) and a customer's data key, warm in the cache as it
is on a busy worker; the key database is a throwaway SQLite file.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

from pydantic import SecretStr
from temporalio.api.common.v1 import Payload
from temporalio.converter import WorkflowSerializationContext

from omnicart.security.keys import new_key_spec
from omnicart.settings import Settings
from omnicart.temporal import payload_codec

PAYLOAD = Payload(metadata={"encoding": b"json/plain"}, data=b'{"context": "' + b"x" * 2000 + b'"}')


async def main(rounds: int = 20_000) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            _env_file=None,
            data_dir=Path(tmp),
            encryption_keys=SecretStr(new_key_spec("bench")),
            key_database_url=f"sqlite:///{Path(tmp) / 'keys.db'}",
        )
        context = WorkflowSerializationContext(namespace="default", workflow_id="customer/cus_bench")
        codec = payload_codec(settings).with_context(context)
        [sealed] = await codec.encode([PAYLOAD])  # creates the data key, warms the cache
        started = time.perf_counter()
        for _ in range(rounds):
            await codec.encode([PAYLOAD])
        encode_rate = rounds / (time.perf_counter() - started)
        started = time.perf_counter()
        for _ in range(rounds):
            await codec.decode([sealed])
        decode_rate = rounds / (time.perf_counter() - started)
    print(f"encrypt: {encode_rate:,.0f} payloads/s, decrypt: {decode_rate:,.0f} payloads/s "
          f"({len(PAYLOAD.data):,}-byte payloads; +{sealed.ByteSize() - PAYLOAD.ByteSize()} bytes each)")


if __name__ == "__main__":
    asyncio.run(main())
