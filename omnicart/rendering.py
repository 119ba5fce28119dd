"""A send request's message as the customer gets it: one function the worker and the preview share.

The send activity adds what only a real send has (a single-use discount code from the database, a
signed unsubscribe link) and calls :func:`render_request`; ``omnicart simulate`` calls it with
stand-ins for those two. Everything else (the journey's context, the message id, the SMS opt-out
line) is built here, so a template that fails for a customer fails the same way in both.
"""

from __future__ import annotations

from typing import Any

from omnicart.channels.sms_segments import with_opt_out
from omnicart.journey.model import EmailTemplate, SmsTemplate
from omnicart.journey.templates import RenderedParts, render_template
from omnicart.messages import SendRequest


def send_context(
    request: SendRequest, *, discount: dict[str, Any] | None = None, unsubscribe_url: str | None = None
) -> dict[str, Any]:
    """The template's variables for this send (``discount`` and ``unsubscribe_url`` only for email)."""
    context: dict[str, Any] = dict(request.context)
    context["message"] = {"id": request.message_id, "channel": request.channel}
    context.setdefault("journey", {"name": request.journey, "run_id": request.run_id, "step_id": request.step_id})
    if isinstance(request.template, EmailTemplate):
        if discount is not None:
            context["discount"] = discount
        if unsubscribe_url is not None:
            context["unsubscribe_url"] = unsubscribe_url
    return context


def render_request(request: SendRequest, context: dict[str, Any], *, derive_text: bool = True) -> RenderedParts:
    """Render every part; a marketing SMS gets its opt-out line. Raises ``TemplateError``."""
    template = request.template
    parts = render_template(template, context, derive_text=derive_text)
    if isinstance(template, SmsTemplate) and parts.body:
        parts = parts.model_copy(update={"body": with_opt_out(parts.body, template.marketing)})
    return parts
