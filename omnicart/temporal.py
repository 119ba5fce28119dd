"""Connecting to Temporal the way every Temporal tool does, so operators configure it once.

``temporalio.envconfig`` reads ``TEMPORAL_ADDRESS``, ``TEMPORAL_NAMESPACE``, ``TEMPORAL_API_KEY``,
the ``TEMPORAL_TLS*`` variables and the ``temporal`` CLI's profile file: a laptop, a self-hosted
cluster and Temporal Cloud differ only in those variables.

Every client of the product (worker, API, CLI, ``omnicart dev``, tests) uses :func:`data_converter`,
so everything written to Temporal is encrypted the same way (``docs/PRIVACY.md``).
"""

from __future__ import annotations

from typing import Any

from temporalio.client import Client
from temporalio.contrib.pydantic import PydanticPayloadConverter
from temporalio.converter import DataConverter, DefaultFailureConverterWithEncodedAttributes
from temporalio.envconfig import ClientConfig

from omnicart.observability import client_options
from omnicart.security.codec import EncryptionCodec
from omnicart.security.codec_chain import CodecChain
from omnicart.security.compression import CompressionCodec
from omnicart.security.data_keys import DataKeyStore, shared_store
from omnicart.security.keys import configured_keys
from omnicart.settings import Settings, get_settings


def data_key_store(settings: Settings) -> DataKeyStore:
    """This process's store of customers' data keys for these settings."""
    keys = configured_keys(settings.encryption_keys, settings.data_dir)
    return shared_store(settings.key_database(), keys.get_secret_value(), settings.data_key_cache_seconds,
                        create_table=settings.key_database_url is not None)


def payload_codec(settings: Settings) -> CodecChain:
    """The codecs every payload goes through, in order: compression, then encryption (ciphertext
    does not compress). Decoding runs them backwards, and passes through what they did not encode,
    so histories written before a step was added still read."""
    store = data_key_store(settings)
    return CodecChain([CompressionCodec(), EncryptionCodec(store.master, store)])


def data_converter(settings: Settings) -> DataConverter:
    """Pydantic payloads, encrypted; failures' messages and stack traces moved into encrypted payloads.

    ``DefaultFailureConverterWithEncodedAttributes`` matters: without it a failure's message (a
    provider error quoting an address) is stored in the clear beside the encrypted payloads.
    """
    return DataConverter(
        payload_converter_class=PydanticPayloadConverter,
        payload_codec=payload_codec(settings),
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )


def connect_config(
    settings: Settings | None = None, *, serve_metrics: bool = False, **overrides: Any
) -> dict[str, Any]:
    """The keyword arguments for ``Client.connect`` from the environment, plus our data converter.

    ``serve_metrics``: a long-running process (worker, API) serving the SDK's Prometheus metrics on
    ``OMNICART_METRICS_ADDRESS``; tracing interceptors come whenever tracing is on (``omnicart.observability``).
    """
    settings = settings if settings is not None else get_settings()
    config: dict[str, Any] = dict(ClientConfig.load_client_connect_config())
    config.setdefault("target_host", "localhost:7233")
    config.update(client_options(settings, serve_metrics=serve_metrics))
    config.update(overrides)
    config["data_converter"] = data_converter(settings)
    return config


async def connect(settings: Settings | None = None, *, serve_metrics: bool = False, **overrides: Any) -> Client:
    """A client for the Temporal the environment names (``localhost:7233`` when it names none)."""
    config = connect_config(settings, serve_metrics=serve_metrics, **overrides)
    target = config.pop("target_host")
    return await Client.connect(target, **config)
