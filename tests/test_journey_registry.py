"""The journey registry: what is published, in which version, paused or not, and who did it.

Every API host and worker reads the same published set from the shared database; a version, once
written, never changes, so a run keeps the journey it began on. On SQLite and on PostgreSQL.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from omnicart.journey.registry import JourneyRegistry, PublishedJourneys, UnknownJourney, publish_files
from omnicart.storage import get_engine
from tests.support.bundles import JOURNEYS


def _journeys(target: Path) -> Path:
    shutil.copytree(JOURNEYS, target)
    return target


def test_publishing_makes_versions_and_republishing_the_same_content_changes_nothing(
    database: str, tmp_path: Path
) -> None:
    registry = JourneyRegistry(get_engine(database))
    folder = _journeys(tmp_path / "journeys")

    changed, problems = publish_files(registry, [folder], "ada@laptop")
    assert problems == [] and sorted(changed) == ["abandoned_cart", "browse_abandonment"]
    first = registry.published()["abandoned_cart"]
    assert first.status == "active" and first.updated_by == "ada@laptop"

    assert publish_files(registry, [folder], "ada@laptop") == ([], [])

    flagship = folder / "abandoned_cart.yaml"
    flagship.write_text(flagship.read_text().replace("within: 7d", "within: 5d"))
    changed, _ = publish_files(registry, [folder], "grace@laptop")
    second = registry.published()["abandoned_cart"]
    assert changed == ["abandoned_cart"] and second.version != first.version
    assert second.bundle.journey.goal is not None and second.bundle.journey.goal.within == "5d"
    old = registry.version(first.version)  # a run that began on the first version still finds it
    assert old is not None and old.journey.goal is not None and old.journey.goal.within == "7d"
    assert [(c.change, c.by) for c in registry.changes("abandoned_cart")] == [
        ("published", "ada@laptop"), ("published", "grace@laptop")]


def test_a_broken_file_publishes_nothing(database: str, tmp_path: Path) -> None:
    registry = JourneyRegistry(get_engine(database))
    folder = _journeys(tmp_path / "journeys")
    (folder / "browse_abandonment.yaml").write_text("name: browse_abandonment\nsteps: []\n")

    changed, problems = publish_files(registry, [folder], "ada@laptop")
    assert changed == [] and problems and all("browse_abandonment.yaml" in p.file for p in problems)
    assert registry.published() == {}


def test_pause_stops_new_entries_on_every_host_and_resume_restores_them(database: str, tmp_path: Path) -> None:
    registry = JourneyRegistry(get_engine(database))
    publish_files(registry, [_journeys(tmp_path / "journeys")], "ada@laptop")
    host_a = PublishedJourneys(JourneyRegistry(get_engine(database)), max_age=0)
    host_b = PublishedJourneys(JourneyRegistry(get_engine(database)), max_age=0)
    assert [b.journey.name for b in host_a.bundles_for("checkout_started")] == ["abandoned_cart"]

    assert registry.pause("abandoned_cart", "grace@laptop") is True
    assert registry.pause("abandoned_cart", "grace@laptop") is False
    assert host_a.bundles_for("checkout_started") == [] and host_b.bundles_for("checkout_started") == []
    assert host_b.all()["abandoned_cart"].status == "paused"

    assert registry.resume("abandoned_cart", "grace@laptop") is True
    assert [b.journey.name for b in host_b.bundles_for("checkout_started")] == ["abandoned_cart"]
    assert [c.change for c in registry.changes("abandoned_cart")] == ["published", "paused", "resumed"]
    with pytest.raises(UnknownJourney):
        registry.pause("no_such_journey", "grace@laptop")


def test_a_host_keeps_serving_what_it_read_while_the_database_is_unreachable(database: str, tmp_path: Path) -> None:
    registry = JourneyRegistry(get_engine(database))
    publish_files(registry, [_journeys(tmp_path / "journeys")], "ada@laptop")
    clock = [0.0]
    host = PublishedJourneys(registry, max_age=1.0, clock=lambda: clock[0])
    assert host.bundles_for("checkout_started")

    registry.engine = get_engine("sqlite:////nonexistent/dir/omnicart.db")
    clock[0] = 5.0
    assert [b.journey.name for b in host.bundles_for("checkout_started")] == ["abandoned_cart"]


def test_the_cli_publishes_lists_pauses_and_resumes(tmp_path: Path) -> None:
    env = {**os.environ, "OMNICART_DATA_DIR": str(tmp_path / "data"), "COLUMNS": "200"}

    def omnicart(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "omnicart.cli", *args], env=env, capture_output=True,
                              text=True, timeout=60)

    assert omnicart("db", "upgrade").returncode == 0
    folder = _journeys(tmp_path / "journeys")
    published = omnicart("publish", str(folder), "--by", "ada")
    assert published.returncode == 0 and "abandoned_cart" in published.stdout
    assert omnicart("publish", str(folder)).stdout.strip() == "nothing changed"
    assert "paused" in omnicart("pause", "abandoned_cart", "--by", "grace").stdout
    listing = omnicart("journeys").stdout
    assert "abandoned_cart" in listing and "paused" in listing and "grace" in listing
    assert "resumed" in omnicart("resume", "abandoned_cart").stdout

    (folder / "abandoned_cart.yaml").write_text("name: abandoned_cart\n")
    broken = omnicart("publish", str(folder))
    assert broken.returncode == 1
    assert "abandoned_cart.yaml:" in broken.stderr and "nothing was published" in broken.stderr
