"""Test sends: one step's message, rendered with the template's sample customer, sent to the
marketer's own address or phone through the channel the product uses (so it looks exactly as it
will), and kept out of everything that counts.

* It never goes through the workflow, the ledger or analytics: its message id (``test-...``) is on no
  journey action, so even an open or click a provider reports for it joins no report.
* It never issues or spends a discount code: the code in it is a stand-in that no checkout accepts.
* It is marked as a test for the person reading it (``[TEST]`` before the subject or text) and for
  the provider (the ``omnicart-test`` category).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from omnicart.channels.base import Delivery, RenderedMessage
from omnicart.channels.registry import build_senders
from omnicart.events import Channel
from omnicart.journey.model import JourneyBundle
from omnicart.journey.templates import sample_context
from omnicart.rendering import render_message
from omnicart.settings import Settings

TEST_PREFIX = "[TEST] "
TEST_CATEGORY = "omnicart-test"
STAND_IN_CODE = "TEST-NOT-A-CODE"


class TestSendError(ValueError):
    """The step sends nothing, or the template is not one of its messages."""


@dataclass(frozen=True)
class SendChoice:
    """One message a step may send (its channel or a fallback), as the form offers it."""

    step_id: str
    template: str
    channel: Channel

    @property
    def value(self) -> str:
        return f"{self.step_id}:{self.template}"


def send_choices(bundle: JourneyBundle) -> list[SendChoice]:
    """Every message of every send step, fallbacks included."""
    choices = []
    for step_id, step in zip(bundle.journey.step_ids(), bundle.journey.steps, strict=True):
        if step.send is None:
            continue
        for template in [step.send.template, *(fallback.template for fallback in step.send.fallback)]:
            choices.append(SendChoice(step_id, template, bundle.templates[template].channel))
    return choices


async def send_test(settings: Settings, bundle: JourneyBundle, choice: str, to: str, by: str) -> Delivery:
    """Render ``choice`` (``step:template``) with sample values and send it to ``to``."""
    found = next((item for item in send_choices(bundle) if item.value == choice), None)
    if found is None:
        raise TestSendError(f"{choice!r} is not a message of journey {bundle.journey.name!r}")
    if not to.strip():
        raise TestSendError("say where the test goes: your email address, phone number or device token")
    template = bundle.templates[found.template]
    context = sample_context(template)
    if "discount" in context:
        context["discount"] = {**context["discount"], "code": STAND_IN_CODE}
    parts = render_message(template, context)
    marked = {name: TEST_PREFIX + value for name in ("subject", "title", "body")
              if (value := getattr(parts, name)) is not None}
    message = RenderedMessage(
        **{**parts.model_dump(), **marked},
        message_id=f"test-{uuid.uuid4().hex}",
        customer_id=f"console-test:{by}",
        journey=bundle.journey.name,
        run_id="test",
        step_id=found.step_id,
        channel=found.channel,
        template_name=found.template,
        to=[to.strip()],
        categories=[TEST_CATEGORY],
        marketing=bool(getattr(template, "marketing", False)),
    )
    return await build_senders(settings)[found.channel].send(message)
