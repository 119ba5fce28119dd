"""The product as an operator runs it: ``python worker.py`` and the API under uvicorn, as OS processes.

Used by the scale-out test and by the load and chaos runs (``benchmarks/load.py``,
``benchmarks/chaos.py``), which also kill them (SIGKILL, as a crashing host would) and read how much
CPU each one spent.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent.parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class Processes:
    """OS processes started by a test or a run, each logging to its own file, all stopped at the end."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.running: dict[str, subprocess.Popen[bytes]] = {}
        self.commands: dict[str, tuple[list[str], dict[str, str]]] = {}
        self.spent: dict[str, float] = {}  # CPU seconds of the killed incarnations of each name

    def start(self, name: str, command: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        with (self.log_dir / f"{name}.log").open("ab") as out:
            process = subprocess.Popen(command, cwd=self.log_dir, env=env, stdout=out, stderr=subprocess.STDOUT)
        self.running[name] = process
        self.commands[name] = (command, env)
        return process

    def kill(self, name: str) -> None:
        """SIGKILL, as a host that loses power: no clean-up runs. Its CPU time so far is kept."""
        process = self.running[name]
        self.spent[name] = self.spent.get(name, 0.0) + cpu_seconds(process.pid)
        process.send_signal(signal.SIGKILL)
        process.wait()

    def restart(self, name: str) -> subprocess.Popen[bytes]:
        command, env = self.commands[name]
        return self.start(name, command, env)

    def cpu(self, name: str) -> float:
        """CPU seconds (user and system) every incarnation of ``name`` has spent so far."""
        process = self.running[name]
        alive = cpu_seconds(process.pid) if process.poll() is None else 0.0
        return self.spent.get(name, 0.0) + alive

    def logs(self) -> str:
        return "\n".join(
            f"--- {name} (exit {process.poll()}):\n{self.log(name)[-2000:]}" for name, process in self.running.items()
        )

    def log(self, name: str) -> str:
        return (self.log_dir / f"{name}.log").read_text(errors="replace")

    def stop(self) -> None:
        for process in self.running.values():
            if process.poll() is None:
                process.terminate()
        for process in self.running.values():
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds of a live process (Linux ``/proc``), 0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime: fields 14 and 15 of stat


def worker_command() -> list[str]:
    return [sys.executable, str(ROOT / "worker.py")]


def api_command(port: int) -> list[str]:
    return [
        sys.executable, "-m", "uvicorn", "--factory", "omnicart.api.app:create_app_from_env",
        "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
    ]


async def until_healthy(http: httpx.AsyncClient, url: str, processes: Processes, timeout: float) -> None:
    """Wait for ``url``'s health check; AssertionError with every process's log if it never answers."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            if (await http.get(f"{url}/healthz")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if loop.time() > deadline or any(p.poll() is not None for p in processes.running.values()):
            raise AssertionError(f"{url} did not become healthy.\n{processes.logs()}")
        await asyncio.sleep(0.2)
