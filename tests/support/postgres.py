"""A throwaway PostgreSQL server for the tests, started from the installed server binaries.

``initdb`` refuses to run as root, so as root the cluster belongs to the ``postgres`` system user
(Debian's package creates it) in a temporary directory that user owns; otherwise it belongs to
whoever runs the tests. It listens on a free loopback port, trusts local connections (nothing
else can reach it) and skips fsync: it lives for one test session and is deleted afterwards.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

from sqlalchemy import create_engine, text

SUPERUSER = "postgres"


class PostgresNotInstalled(RuntimeError):
    pass


def find_server_binaries() -> Path:
    """The directory holding ``initdb`` and ``pg_ctl``: Debian's newest version first, then PATH."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_version, reverse=True)
    found = candidates[0] if candidates else shutil.which("initdb")
    if found is None:
        raise PostgresNotInstalled("no PostgreSQL server found (initdb): ./scripts/test installs it")
    return Path(found).parent


def _version(initdb: str) -> int:
    version = Path(initdb).parent.parent.name
    return int(version) if version.isdigit() else 0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class PostgresServer:
    """One cluster: ``start``, then ``create_database`` per test, then ``stop``."""

    def __init__(self, durable: bool = False) -> None:
        self.durable = durable  # commits survive a crash (the chaos run); tests trade that for speed
        self.bin = find_server_binaries()
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="omnicart-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self._user = SUPERUSER if os.geteuid() == 0 else None
        if self._user is not None:
            account = pwd.getpwnam(self._user)
            os.chown(self.root, account.pw_uid, account.pw_gid)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        self._run("initdb", "-D", str(self.data), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8", "--no-sync")
        self._serve()

    def restart(self) -> None:
        """Stop the server as a crash would (immediate: no checkpoint) and start it on the same data."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        self._serve()

    def _serve(self) -> None:
        options = " ".join(
            [
                f"-p {self.port}",
                f"-k {self.root}",
                "-c listen_addresses=127.0.0.1",
                *(() if self.durable else ("-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off")),
                "-c max_connections=300",
                # Not UTC on purpose: times must come back right whatever the server's zone is.
                "-c timezone=America/New_York",
            ]
        )
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "-t", "60", "start")

    def stop(self) -> None:
        try:
            if self.data.exists():
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def create_database(self) -> str:
        """A new, empty database; its SQLAlchemy URL."""
        name = f"t_{uuid.uuid4().hex[:16]}"
        admin = create_engine(self.url(), isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as connection:
                connection.execute(text(f'CREATE DATABASE "{name}"'))
        finally:
            admin.dispose()
        return self.url(name)

    def _run(self, program: str, *args: str) -> None:
        result = subprocess.run(
            [str(self.bin / program), *args],
            user=self._user,
            cwd=self.root,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{program} failed ({result.returncode}):\n{result.stdout}{result.stderr}\n{log}")
