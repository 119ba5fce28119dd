"""Running the console on its own listener: ``omnicart console`` alone, or beside the API in
``omnicart dev``. The address is ``OMNICART_CONSOLE_ADDRESS`` (loopback by default), never the
public port that providers' webhooks reach."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import uvicorn
from temporalio.client import Client

from omnicart.settings import Settings


def console_host_port(settings: Settings) -> tuple[str, int]:
    """``host:port`` split; a bare port means loopback."""
    host, _, port = settings.console_address.rpartition(":")
    return host or "127.0.0.1", int(port)


def console_url(settings: Settings) -> str:
    host, port = console_host_port(settings)
    return f"http://{host}:{port}"


class EmbeddedServer(uvicorn.Server):
    """uvicorn without its own signal handling: the process that embeds it decides when to stop."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def console_server(settings: Settings, client: Client | None = None) -> EmbeddedServer:
    from omnicart.console.app import create_console_app

    host, port = console_host_port(settings)
    config = uvicorn.Config(create_console_app(settings, client), host=host, port=port, log_level="warning",
                            lifespan="on")
    return EmbeddedServer(config)
