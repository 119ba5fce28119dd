"""`omnicart dev` as a newcomer runs it: in a subprocess, on free ports, stopped with Ctrl-C.

What is checked is what the person at the terminal relies on: the API answers once the banner is
up, Ctrl-C leaves no Temporal dev server behind, state survives a restart (file database), and a
busy port is a clear message rather than a traceback. Running journeys end to end through `omnicart
dev` is the end-to-end test's job.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from temporalio.client import Client

from omnicart.routing import customer_workflow_id

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 90.0
STOP_TIMEOUT = 45.0


def free_port() -> int:
    """A free port below Linux's ephemeral range (32768+), so no other socket is handed it meanwhile.

    Port 0 would give an ephemeral port, which another process (the session's Temporal server opens
    many connections) can receive between this check and the dev server binding it.
    """
    for _ in range(200):
        port = random.randint(20000, 30000)
        if _bindable(port):
            return port
    raise RuntimeError("no free port found between 20000 and 30000")


def _bindable(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def listening(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def processes_mentioning(text: str) -> list[int]:
    """Pids whose command line contains ``text`` (the dev server's unique database path)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(int(entry.name))
    return found


_SESSION_KEYS = ("OMNICART_ENCRYPTION_KEYS", "OMNICART_KEY_DATABASE_URL")


class Dev:
    """One `omnicart dev` process with its own data dir and ports."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.api_port, self.temporal_port, self.ui_port = free_port(), free_port(), free_port()
        self.metrics_port = free_port()
        self.console_port = free_port()
        self.output = data_dir / "dev-output.txt"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def env(self) -> dict[str, str]:
        return {
            # Without the session's key: `omnicart dev` makes and keeps its own, as for a newcomer.
            **{name: value for name, value in os.environ.items() if name not in _SESSION_KEYS},
            "OMNICART_DATA_DIR": str(self.data_dir),
            "OMNICART_JOURNEYS_DIR": str(ROOT / "journeys"),
            "OMNICART_API_PORT": str(self.api_port),
            "OMNICART_DEV_TEMPORAL_PORT": str(self.temporal_port),
            "OMNICART_DEV_UI_PORT": str(self.ui_port),
            "OMNICART_METRICS_ADDRESS": f"127.0.0.1:{self.metrics_port}",
            "OMNICART_CONSOLE_ADDRESS": f"127.0.0.1:{self.console_port}",
            "OMNICART_TASK_QUEUE": f"dev-test-{uuid.uuid4()}",
            "COLUMNS": "200",
            "PYTHONUNBUFFERED": "1",
        }

    def start(self) -> None:
        with self.output.open("ab") as output:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "omnicart.cli", "dev"],
                cwd=self.data_dir,
                env=self.env,
                stdout=output,
                stderr=subprocess.STDOUT,
            )

    def text(self) -> str:
        return self.output.read_text(errors="replace")

    def wait_healthy(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"omnicart dev exited with {self.process.returncode}:\n{self.text()}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.api_port}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        pytest.fail(f"omnicart dev did not become healthy in {START_TIMEOUT}s:\n{self.text()}")

    def interrupt(self) -> int:
        """Ctrl-C, as the terminal sends it, and the exit code."""
        assert self.process is not None
        self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            pytest.fail(f"omnicart dev did not stop within {STOP_TIMEOUT}s of Ctrl-C:\n{self.text()}")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        for pid in processes_mentioning(str(self.data_dir / "temporal.db")):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def dev(tmp_path: Path) -> Iterator[Dev]:
    runner = Dev(tmp_path)
    yield runner
    runner.kill()  # only if a failed test left it running


def test_dev_serves_the_api_and_ctrl_c_stops_everything_keeping_state_for_the_next_run(dev: Dev) -> None:
    database = str(dev.data_dir / "temporal.db")
    customer_id = f"cus_{uuid.uuid4().hex[:10]}"
    event = {
        "id": f"evt_{uuid.uuid4().hex}",
        "type": "product_viewed",
        "customer_id": customer_id,
        "timestamp": "2026-11-22T10:00:00+01:00",
        "source": "web",
        "properties": {"sku": "MUG-1", "name": "Mug", "price": 12.5},
    }

    dev.start()
    dev.wait_healthy()
    dev_servers = processes_mentioning(database)
    accepted = httpx.post(f"http://127.0.0.1:{dev.api_port}/v1/events", json=event, timeout=10)
    docs = httpx.get(f"http://127.0.0.1:{dev.api_port}/docs", timeout=10)
    codec_endpoint = f"http://127.0.0.1:{dev.api_port}/codec"
    ui_uses_the_codec = processes_mentioning(f"--ui-codec-endpoint {codec_endpoint}")
    decoded = httpx.post(f"{codec_endpoint}/decode", json={"payloads": []}, timeout=10)
    worker_metrics_url = f"http://127.0.0.1:{dev.metrics_port}/metrics"
    worker_metrics = httpx.get(worker_metrics_url, timeout=10).text
    api_metrics = httpx.get(f"http://127.0.0.1:{dev.api_port}/metrics", timeout=10).text
    console_url = f"http://127.0.0.1:{dev.console_port}"
    console_login = httpx.get(f"{console_url}/", timeout=10, follow_redirects=True)
    key_file = dev.data_dir / "encryption-keys.txt"
    key = key_file.read_text()
    code = dev.interrupt()

    assert dev_servers, "the Temporal dev server should run with the data dir's database"
    assert accepted.status_code == 202 and accepted.json() == {"accepted": 1, "duplicates": 0}
    assert docs.status_code == 200
    assert ui_uses_the_codec, "the Temporal UI should decrypt through the codec server"
    assert decoded.status_code == 200 and decoded.json() == {"payloads": []}
    assert console_login.status_code == 200 and "Log in to the omnicart console" in console_login.text
    output = dev.text()
    assert code == 0, output
    shown_urls = (f"http://127.0.0.1:{dev.api_port}/docs", f"http://127.0.0.1:{dev.ui_port}", codec_endpoint,
                  f"http://127.0.0.1:{dev.api_port}/metrics", worker_metrics_url, console_url)
    assert "temporal_request_total" in worker_metrics, "the worker's SDK metrics should be served"
    assert "omnicart_events_accepted_total 1.0" in api_metrics
    for shown in (*shown_urls, "outbox.jsonl"):
        assert shown in output
    assert "Traceback" not in output
    assert processes_mentioning(database) == [], "the Temporal dev server outlived omnicart dev"
    assert not listening(dev.temporal_port) and not listening(dev.api_port) and not listening(dev.console_port)

    # A second run finds the customer's workflow from the first: the dev server keeps state on disk.
    dev.start()
    dev.wait_healthy()
    try:
        assert _workflow_exists(dev.temporal_port, customer_id)
        repeat = httpx.post(f"http://127.0.0.1:{dev.api_port}/v1/events", json=event, timeout=10)
        assert repeat.json() == {"accepted": 0, "duplicates": 1}
        assert key_file.read_text() == key, "the dev key is kept with the dev server's histories"
    finally:
        assert dev.interrupt() == 0
    assert processes_mentioning(database) == []


def _workflow_exists(port: int, customer_id: str) -> bool:
    async def describe() -> bool:
        client = await Client.connect(f"127.0.0.1:{port}")
        description = await client.get_workflow_handle(customer_workflow_id(customer_id)).describe()
        return description.id == customer_workflow_id(customer_id)

    return asyncio.run(describe())


def test_a_port_in_use_is_a_clear_message_and_nothing_is_left_running(dev: Dev) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", dev.api_port))
        squatter.listen()
        dev.start()
        assert dev.process is not None
        code = dev.process.wait(STOP_TIMEOUT)

    output = dev.text()
    assert code == 1
    assert f"port {dev.api_port}" in output and "already in use" in output and "--port" in output
    assert "Traceback" not in output
    assert processes_mentioning(str(dev.data_dir / "temporal.db")) == []


def test_a_sigkilled_dev_leaves_no_temporal_server_and_the_next_start_works(dev: Dev) -> None:
    database = str(dev.data_dir / "temporal.db")
    dev.start()
    dev.wait_healthy()
    assert dev.process is not None and processes_mentioning(database)

    dev.process.kill()  # what the OOM killer or `kill -9` does: no chance to clean up
    dev.process.wait()
    deadline = time.monotonic() + STOP_TIMEOUT
    while processes_mentioning(database) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert processes_mentioning(database) == [], "the Temporal dev server outlived a SIGKILLed omnicart dev"

    dev.start()  # same ports, same data dir
    dev.wait_healthy()
    assert dev.interrupt() == 0


def test_a_leftover_dev_server_from_an_earlier_crash_is_stopped_by_pidfile(dev: Dev) -> None:
    """A server that survived its `omnicart dev` (any platform without parent-death signals)."""
    database = dev.data_dir / "temporal.db"
    temporal = Path(sys.executable).parent / "temporal"
    leftover = subprocess.Popen(
        [str(temporal), "server", "start-dev", "--db-filename", str(database), "--ip", "127.0.0.1",
         "--port", str(dev.temporal_port), "--ui-port", str(dev.ui_port), "--log-level", "error"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        (dev.data_dir / "temporal-dev.pid").write_text(f"{leftover.pid}\n")
        deadline = time.monotonic() + START_TIMEOUT
        while not listening(dev.temporal_port) and time.monotonic() < deadline:
            time.sleep(0.2)

        dev.start()
        dev.wait_healthy()
        assert leftover.wait(STOP_TIMEOUT) is not None  # it was stopped, and a new server serves
        assert len(processes_mentioning(str(database))) == 1
        assert dev.interrupt() == 0
    finally:
        if leftover.poll() is None:
            leftover.kill()


def test_dev_restarts_its_temporal_server_when_it_dies_and_ingest_works_again(dev: Dev) -> None:
    database = str(dev.data_dir / "temporal.db")
    dev.start()
    dev.wait_healthy()
    [server] = processes_mentioning(database)
    os.kill(server, signal.SIGKILL)

    deadline = time.monotonic() + START_TIMEOUT
    while "Restarting it" not in dev.text() and time.monotonic() < deadline:
        time.sleep(0.2)
    dev.wait_healthy()
    event = {
        "id": f"evt_{uuid.uuid4().hex}", "type": "product_viewed", "customer_id": "cus_after_restart",
        "timestamp": "2026-11-22T10:00:00+01:00", "source": "web", "properties": {"sku": "MUG-1"},
    }
    for _ in range(50):  # the API's client reconnects on its own; give it a moment
        accepted = httpx.post(f"http://127.0.0.1:{dev.api_port}/v1/events", json=event, timeout=10)
        if accepted.status_code == 202:
            break
        time.sleep(0.5)
    output = dev.text()
    assert accepted.status_code == 202, output
    assert "The Temporal dev server exited" in output and "Restarting it (1 of 3)" in output
    assert processes_mentioning(database) not in ([], [server])
    assert dev.interrupt() == 0
    assert processes_mentioning(database) == []
