"""Anonymous visitors who become known: events and a welcome journey the identity tests share."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from omnicart.events import Event
from omnicart.journey.model import EmailTemplate, Journey, JourneyBundle, Template


def welcome() -> JourneyBundle:
    """Once per customer, started by a sign-up (a profile update that names the customer)."""
    journey = Journey.model_validate({
        "name": "welcome",
        "trigger": {"event": "customer_updated", "if": "has(event.properties.first_name)", "once": True},
        "steps": [{"id": "hello", "send": {"channel": "email", "template": "hello"}}],
    })
    templates: dict[str, Template] = {
        "hello": EmailTemplate(channel="email", subject="Welcome", html="Welcome! {{ unsubscribe_url }}"),
    }
    return JourneyBundle(journey=journey, templates=templates)


def event(event_id: str, type_: str, at: datetime, *, customer_id: str = "", anonymous_id: str = "",
          **properties: Any) -> Event:
    data: dict[str, Any] = {"id": event_id, "type": type_, "timestamp": at.isoformat(), "source": "web",
                            "properties": properties}
    if customer_id:
        data["customer_id"] = customer_id
    if anonymous_id:
        data["anonymous_id"] = anonymous_id
    return Event.parse(data)
