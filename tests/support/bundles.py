"""The shipped journeys, loaded exactly as the product loads them."""

from __future__ import annotations

from pathlib import Path

from omnicart.journey.loader import load_journey
from omnicart.journey.model import EmailTemplate, Journey, JourneyBundle, SmsTemplate, Template

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


def order_thanks() -> JourneyBundle:
    """A thank-you whose email loops over the order's items: it cannot render for a store order
    without items. ``omnicart validate`` refuses it, so it is built here without the loader, as a
    journey published before the type checks existed would be."""
    journey = Journey.model_validate({
        "name": "order_thanks",
        "trigger": {"event": "order_placed"},
        "steps": [{"id": "thanks", "send": {"template": "thanks", "fallback": [{"template": "thanks_sms"}]}}],
    })
    html = "{% for item in trigger.properties.items %}{{ item.name }}{% endfor %} {{ unsubscribe_url }}"
    templates: dict[str, Template] = {
        "thanks": EmailTemplate(channel="email", subject="Thank you", html=html),
        "thanks_sms": SmsTemplate(channel="sms", body="Thank you for your order!"),
    }
    return JourneyBundle(journey=journey, templates=templates)
