"""A send request's message as the customer gets it: one function the worker and the preview share.

The send activity adds what only a real send has (a single-use discount code from the database, a
signed unsubscribe link) and calls :func:`render_message`; ``omnicart simulate`` calls it with
stand-ins for those two. Everything else (the journey's context, the message id, the SMS opt-out
line, the links' UTM parameters) is built here, so a template that fails for a customer fails the same
way in both, and a preview shows the links the customer gets.
"""

from __future__ import annotations

from typing import Any

from omnicart.channels.sms_segments import with_opt_out
from omnicart.journey.model import DEFAULT_LOCALE, EmailTemplate, SmsTemplate, Template
from omnicart.journey.templates import RenderedParts, render_template
from omnicart.locales import localized, mark_language
from omnicart.messages import SendRequest
from omnicart.utm import UtmTagger


def send_context(
    base: dict[str, Any],
    *,
    message_id: str,
    channel: str,
    template: Template,
    journey: dict[str, str],
    discount: dict[str, Any] | None = None,
    unsubscribe_url: str | None = None,
) -> dict[str, Any]:
    """The template's variables for one send: the journey's context (``base``) plus the message
    itself, and ``discount`` and ``unsubscribe_url`` for email."""
    context = dict(base)
    context["message"] = {"id": message_id, "channel": channel}
    context.setdefault("journey", journey)
    if isinstance(template, EmailTemplate):
        if discount is not None:
            context["discount"] = discount
        if unsubscribe_url is not None:
            context["unsubscribe_url"] = unsubscribe_url
    return context


def request_context(
    request: SendRequest,
    template: Template,
    *,
    discount: dict[str, Any] | None = None,
    unsubscribe_url: str | None = None,
) -> dict[str, Any]:
    """:func:`send_context` for a send request, as the send activity has it (with its template, which
    a request of a registered journey names rather than carries)."""
    journey = {"name": request.journey, "run_id": request.run_id, "step_id": request.step_id}
    return send_context(request.context, message_id=request.message_id, channel=request.channel,
                        template=template, journey=journey, discount=discount,
                        unsubscribe_url=unsubscribe_url)


def render_message(
    template: Template,
    context: dict[str, Any],
    *,
    derive_text: bool = True,
    utm: UtmTagger | None = None,
    default_locale: str = DEFAULT_LOCALE,
) -> RenderedParts:
    """Render every part in the customer's language; links get the journey's UTM parameters
    (``utm``: after Liquid, which writes most links), then a marketing SMS gets its opt-out line,
    so that the segments a carrier bills are counted on the final body. Raises ``TemplateError``.

    The words are the template's variant for ``customer.locale`` (``omnicart.locales``, falling back
    to the journey's ``default_locale``); ``message.locale`` tells the formatting filters which
    language that is, the email's root element says it (and ``dir="rtl"`` for Persian or Arabic),
    and the SMS opt-out line is in it."""
    words, locale = localized(template, _customer_locale(context), default_locale)
    context = {**context, "message": {**context.get("message", {}), "locale": locale}}
    parts = render_template(words, context, derive_text=derive_text)
    if isinstance(template, EmailTemplate) and parts.html:
        parts = parts.model_copy(update={"html": mark_language(parts.html, locale)})
    if utm is not None:
        parts = utm.parts(parts)
    if isinstance(template, SmsTemplate) and parts.body:
        parts = parts.model_copy(update={"body": with_opt_out(parts.body, template.marketing, locale)})
    return parts


def _customer_locale(context: dict[str, Any]) -> str | None:
    customer = context.get("customer")
    locale = customer.get("locale") if isinstance(customer, dict) else None
    return locale if isinstance(locale, str) else None
