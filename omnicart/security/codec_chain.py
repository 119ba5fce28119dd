"""Several payload codecs applied in order, as one codec the data converter can hold.

The order matters and is fixed here: encoding runs the codecs first to last (a later step can put
"store large payloads by reference, then compress" in front of encryption, since ciphertext does not
compress), decoding runs them last to first. The serialization context reaches every codec that
wants it, so encryption still learns which customer's workflow a payload belongs to.
"""

from __future__ import annotations

from collections.abc import Sequence

from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec, SerializationContext, WithSerializationContext


class CodecChain(PayloadCodec, WithSerializationContext):
    def __init__(self, codecs: Sequence[PayloadCodec]) -> None:
        self.codecs = list(codecs)

    def with_context(self, context: SerializationContext) -> CodecChain:
        return CodecChain(
            [
                codec.with_context(context) if isinstance(codec, WithSerializationContext) else codec
                for codec in self.codecs
            ]
        )

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        encoded = list(payloads)
        for codec in self.codecs:
            encoded = await codec.encode(encoded)
        return encoded

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        decoded = list(payloads)
        for codec in reversed(self.codecs):
            decoded = await codec.decode(decoded)
        return decoded
