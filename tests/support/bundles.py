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
