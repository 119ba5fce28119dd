"""Connecting to Temporal the way every Temporal tool does, so operators configure it once.

``temporalio.envconfig`` reads ``TEMPORAL_ADDRESS``, ``TEMPORAL_NAMESPACE``, ``TEMPORAL_API_KEY``,
the ``TEMPORAL_TLS*`` variables and the ``temporal`` CLI's profile file: a laptop, a self-hosted
cluster and Temporal Cloud differ only in those variables.
"""

from __future__ import annotations

from typing import Any

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.envconfig import ClientConfig


def connect_config(**overrides: Any) -> dict[str, Any]:
    """The keyword arguments for ``Client.connect`` from the environment, plus our data converter."""
    config: dict[str, Any] = dict(ClientConfig.load_client_connect_config())
    config.setdefault("target_host", "localhost:7233")
    config.update(overrides)
    config["data_converter"] = pydantic_data_converter
    return config


async def connect(**overrides: Any) -> Client:
    """A client for the Temporal the environment names (``localhost:7233`` when it names none)."""
    config = connect_config(**overrides)
    target = config.pop("target_host")
    return await Client.connect(target, **config)
