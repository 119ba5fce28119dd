"""Every shipped template renders sensibly for events that carry only their required properties.

A field the envelope lets a shop leave out (an item's price, name, picture or link; a cart's total,
currency or restore link; the customer's first name) must never make a send fail for good, nor print
"None", an empty link or half a sentence. The context is the one a real send renders with: the
interpreter's ``send_request`` after the minimal trigger, plus what the send activity adds.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from omnicart.engine import context as engine_context
from omnicart.engine import interpreter
from omnicart.events import Event
from omnicart.journey.loader import load_template
from omnicart.journey.model import EmailTemplate, Template
from omnicart.journey.templates import RenderedParts, html_to_text, render_template

TEMPLATES = Path(__file__).resolve().parent.parent / "journeys" / "templates"

MINIMAL_PROPERTIES: dict[str, dict[str, Any]] = {
    "checkout_started": {"cart_id": "cart_1", "items": [{"sku": "MUG-1"}]},
    "cart_updated": {"cart_id": "cart_1", "items": [{"sku": "MUG-1"}]},
    "product_viewed": {"sku": "MUG-1"},
    "date_reached": {"journey": "win_back", "due_at": "2026-11-22T10:00:00+00:00"},
    "order_placed": {"order_id": "order_1"},
    "back_in_stock": {"sku": "MUG-1"},
    "price_dropped": {"sku": "MUG-1", "price": 8.0, "reference_price": 10.0, "drop_percent": 20.0},
}

# Signs that a sentence or a piece of markup broke on a missing value.
ARTEFACTS = [
    (re.compile(r"\bNone\b|\bnil\b|\bundefined\b"), "a missing value printed as a word"),
    (re.compile(r"—[ \t]*$|:\s*\Z", re.MULTILINE), "a dash or a final colon with nothing after it"),
    (re.compile(r"\bat\s*\."), '"at ." where a price was meant'),
    (re.compile(r",\s*\)"), "an empty amount in parentheses"),
]


def trigger_for(template_name: str) -> Event:
    event_type = ("product_viewed" if template_name.startswith("browse")
                  else "back_in_stock" if template_name.startswith("back_in_stock")
                  else "price_dropped" if template_name.startswith("price_drop")
                  else "date_reached" if template_name.startswith(("win_back", "birthday")) else "checkout_started")
    return Event.parse(
        {
            "id": "evt_1",
            "type": event_type,
            "customer_id": "cus_1",
            "timestamp": "2026-11-22T10:00:00Z",
            "source": "web",
            "properties": MINIMAL_PROPERTIES[event_type],
        }
    )


def render_as_a_send_would(template: Template, trigger: Event) -> RenderedParts:
    """The journey's context after the trigger (``interpreter.send_request`` builds it this way) plus
    what ``activities/send.py`` adds before it calls ``render_template``."""
    state = interpreter.new_state(trigger.customer_id)
    interpreter.handle_event(state, trigger, [], datetime(2026, 11, 22, 10, tzinfo=UTC))
    context = engine_context.message(state, trigger.context(), "a_journey", "run_1", "step_1")
    context["message"] = {"id": "msg_1", "channel": template.channel}
    if isinstance(template, EmailTemplate):
        if template.discount_percent:
            context["discount"] = {"code": "SAVE-123", "percent": template.discount_percent}
        context["unsubscribe_url"] = "https://shop.example/v1/unsubscribe/token"
    return render_template(template, context)


# Each shipped template file, a locale variant (``cart_reminder_1.tr.yaml``) as its template in that locale.
SHIPPED = sorted(TEMPLATES.glob("*.yaml"))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda path: path.stem)
def test_a_shipped_template_renders_sensibly_with_only_the_required_properties(path: Path) -> None:
    name, _, locale = path.stem.partition(".")
    template = load_template(path.with_name(f"{name}.yaml"))
    if locale:
        template = template.locales[locale]

    parts = render_as_a_send_would(template, trigger_for(path.stem))

    texts = {name: value for name, value in parts.model_dump().items() if value and name != "html"}
    if parts.html:
        texts["html as text"] = html_to_text(parts.html)
        assert not re.search(r'(?:href|src)="\s*"', parts.html), f"{path.stem}: an empty link or picture"
        assert not re.search(r"\bNone\b", parts.html), f"{path.stem}: None printed in the HTML"
    assert texts, "nothing rendered"
    for name, text in texts.items():
        for pattern, meaning in ARTEFACTS:
            found = pattern.search(text)
            where = "" if found is None else text[max(0, found.start() - 60) : found.end() + 20]
            assert found is None, f"{path.stem}.{name}: {meaning}: ...{where!r}"
    if isinstance(template, EmailTemplate) and "items" in MINIMAL_PROPERTIES[trigger_for(path.stem).type]:
        assert "MUG-1" in " ".join(texts.values()), "the item is named by its SKU when it has no name"
