"""The shipped journeys, loaded exactly as the product loads them."""

from __future__ import annotations

from pathlib import Path

from omnicart.journey.loader import load_journey
from omnicart.journey.model import JourneyBundle

ROOT = Path(__file__).resolve().parents[2]
JOURNEYS = ROOT / "journeys"


def flagship() -> JourneyBundle:
    return load_journey(JOURNEYS / "abandoned_cart.yaml")


def browse() -> JourneyBundle:
    return load_journey(JOURNEYS / "browse_abandonment.yaml")


def publish_folder(database_url: str, folder: Path) -> None:
    """Publish a journey folder to the registry of a migrated database, as ``omnicart publish`` does."""
    from omnicart.journey.registry import JourneyRegistry, publish_files
    from omnicart.storage import get_engine

    _, problems = publish_files(JourneyRegistry(get_engine(database_url)), [folder], "tests")
    assert not problems, problems
