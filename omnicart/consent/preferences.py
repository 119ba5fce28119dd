"""The preference centre: the page an email's unsubscribe link opens, where customers choose channels and topics.

No login: the link's signed token (``omnicart.api.unsubscribe``) is the credential, and it carries an
expiry (``OMNICART_PREFERENCE_LINK_DAYS``), after which the page only offers to unsubscribe (opting out
must always stay possible; RFC 8058 one-click keeps working for ever). A link minted before expiries
existed shows the plain unsubscribe confirmation.

The page shows the customer's channels (those we have an address or a stated consent for) and the
topics of the published marketing journeys (a journey's ``topic:``, or its category), each ticked
as it stands now: channels as the profile projection holds them, topics from the consent history
(a topic nobody opted out of is on). Saving turns each change into a ``consent_changed`` event with
provenance ``preference_centre`` and its evidence, through the same ingest as every event, so it
reaches the customer's workflow (which skips sends of an opted-out topic, ``topic_opt_out``) and the
consent history.

CSRF: the form carries a token bound to the link and the time the page was served, signed with the
product's secret, valid for two hours; a browser's ``Sec-Fetch-Site: cross-site`` is refused too.
Another site can neither read the link nor forge the form token, and the page needs no JavaScript or
cookie. Submitting the same form twice produces the same event ids, so nothing changes twice.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse
from pydantic import SecretStr
from sqlalchemy import Engine

from omnicart.api.unsubscribe import InvalidToken, UnsubscribeToken, read_token
from omnicart.consent.catalogue import choose_language, direction, label, text
from omnicart.consent.history import ConsentHistory
from omnicart.consent.provenance import provenance
from omnicart.customers.profiles import CustomerProfile, CustomerProfiles
from omnicart.engine.interpreter import topic_consent_key
from omnicart.events import CHANNELS, Event
from omnicart.journey.model import JourneyBundle
from omnicart.security.pseudonym import customer_ref
from omnicart.settings import Settings, get_settings

log = logging.getLogger(__name__)

router = APIRouter(tags=["unsubscribe"])

MAX_FORM_BYTES = 16 * 1024  # a few dozen checkboxes; nobody's choices need more
CSRF_MAX_AGE_SECONDS = 2 * 3600  # long enough to read the page, short enough that a copied form goes stale
_PHONE_CHANNELS = ("sms", "whatsapp")
_PAGE_HEADERS = {
    "Referrer-Policy": "no-referrer",  # the URL is the credential: never pass it on to another site
    "Cache-Control": "no-store",  # a shared computer's back button must not show someone's choices
    "X-Frame-Options": "DENY",  # no other site may frame the form and trick a click (clickjacking)
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
    "frame-ancestors 'none'",
}


@dataclass
class Choices:
    """What the page offers and how each item stands now: channel or topic name → on."""

    channels: dict[str, bool]
    topics: dict[str, bool]
    language: str


async def show(token: UnsubscribeToken, raw_token: str, request: Request) -> HTMLResponse:
    """``GET /v1/unsubscribe/{token}``: the preference centre, or, for a link without a live expiry,
    the unsubscribe confirmation (expired: refused with 403, the unsubscribe button still there)."""
    settings = _settings(request)
    now = datetime.now(UTC)
    choices = await asyncio.to_thread(current_choices, request, token)
    language = choices.language
    unsubscribe = _unsubscribe_form(raw_token, language)
    if token.expires_at is None:
        return _page(language, text(language, "confirm_title"), text(language, "confirm_text"), unsubscribe)
    if not token.opens_preferences(now):
        return _page(language, text(language, "expired_title"), text(language, "expired_text"), unsubscribe, 403)
    csrf = csrf_token(settings.signing_secret, raw_token, now)
    form = _preferences_form(raw_token, csrf, choices) + unsubscribe
    return _page(language, text(language, "title"), text(language, "intro"), form)


async def unsubscribed(token: UnsubscribeToken, request: Request) -> HTMLResponse:
    """The answer to an unsubscribe, in the customer's language."""
    profile = await asyncio.to_thread(_profile, request, token.customer_id)
    language = _language(request, profile)
    return _page(language, text(language, "unsubscribed_title"), text(language, "unsubscribed_text"))


@router.post("/v1/preferences/{token}", response_class=HTMLResponse)
async def save_preferences(token: str, request: Request) -> HTMLResponse:
    """The preference centre's form: each change becomes a ``consent_changed`` event (provenance
    ``preference_centre``). 403 for a forged, expired or stale link or form."""
    settings = _settings(request)
    parsed = _read(settings, token)
    now = datetime.now(UTC)
    if not parsed.opens_preferences(now):
        raise HTTPException(status_code=403, detail="This link has expired: open the link in a newer message.")
    if request.headers.get("sec-fetch-site") == "cross-site":
        raise HTTPException(status_code=403, detail="The form must be sent from its own page.")
    form = parse_qs((await _bounded_body(request)).decode("utf-8", "replace"), keep_blank_values=True)
    csrf = (form.get("csrf") or [""])[0]
    if not csrf_valid(settings.signing_secret, token, csrf, now):
        raise HTTPException(status_code=403, detail="The form is stale or not ours: open the link again.")
    ingest = getattr(request.app.state, "ingest", None)
    if ingest is None:
        raise HTTPException(status_code=503, detail="not ready yet, please try again", headers={"Retry-After": "5"})
    choices = await asyncio.to_thread(current_choices, request, parsed)
    evidence = {
        "message_id": parsed.message_id,
        "ip": request.client.host if request.client else None,
        "user_agent": (request.headers.get("user-agent") or "")[:512] or None,
        "language": choices.language,
    }
    events = preference_events(parsed, token, form, choices, now, csrf, **evidence)
    if events:
        await ingest.submit(events)
    log.info("customer %s saved %d preference changes", customer_ref(parsed.customer_id), len(events))
    language = choices.language
    return _page(language, text(language, "saved_title"), text(language, "saved_text"))


def preference_events(
    token: UnsubscribeToken,
    raw_token: str,
    form: dict[str, list[str]],
    choices: Choices,
    now: datetime,
    csrf: str,
    **evidence: str | None,
) -> list[Event]:
    """One ``consent_changed`` per channel or topic the form changed; ids derived from the form, so
    a double submit is one change."""
    chosen_channels, chosen_topics = set(form.get("channel", [])), set(form.get("topic", []))
    changes: list[tuple[str, str, bool, str]] = [
        ("channel", name, name in chosen_channels, label(choices.language, "channel", name))
        for name, was in choices.channels.items()
        if (name in chosen_channels) != was
    ]
    changes += [
        ("topic", name, name in chosen_topics, label(choices.language, "topic", name))
        for name, was in choices.topics.items()
        if (name in chosen_topics) != was
    ]
    events = []
    for kind, name, granted, shown in changes:
        digest = hashlib.sha256(f"{raw_token}:{csrf}:{kind}:{name}:{granted}".encode()).hexdigest()[:32]
        events.append(
            Event.parse(
                {
                    "id": f"pref_{digest}",
                    "type": "consent_changed",
                    "customer_id": token.customer_id,
                    "timestamp": now.isoformat(),
                    "source": "web",
                    "properties": {
                        kind: name,
                        "granted": granted,
                        **provenance("preference_centre", text=f"{text(choices.language, 'title')}: {shown}",
                                     **evidence),
                    },
                }
            )
        )
    return events


def current_choices(request: Request, token: UnsubscribeToken) -> Choices:
    """The channels and topics the page offers this customer, each as it stands now."""
    settings = _settings(request)
    engine: Engine = request.app.state.ledger.engine
    profile = _profile(request, token.customer_id)
    current = ConsentHistory(engine, settings.signing_secret).export(token.customer_id).current
    channels: dict[str, bool] = {}
    for channel in CHANNELS:
        stated = profile.consent.get(channel) if profile is not None else None
        known = stated.granted if stated is not None and stated.granted is not None else None
        if known is None and channel in current:
            known = current[channel].granted
        has_address = profile is not None and bool(profile.phone if channel in _PHONE_CHANNELS else
                                                   profile.email if channel == "email" else None)
        if channel == token.channel or has_address or known is not None:
            channels[channel] = known is True
    topics = {
        topic: current[topic_consent_key(topic)].granted if topic_consent_key(topic) in current else True
        for topic in marketing_topics(_published(request))
    }
    return Choices(channels=channels, topics=topics, language=_language(request, profile))


def marketing_topics(bundles: Iterable[JourneyBundle]) -> list[str]:
    """The topics customers may choose: those of the published marketing journeys (transactional
    messages, such as a receipt, are not a customer's choice)."""
    return sorted({bundle.journey.effective_topic for bundle in bundles if bundle.journey.category == "marketing"})


def csrf_token(secret: SecretStr, raw_token: str, now: datetime) -> str:
    """``<issued>.<signature>``: binds a served form to its link and to when it was served."""
    issued = str(int(now.timestamp()))
    return f"{issued}.{_csrf_signature(secret, raw_token, issued)}"


def csrf_valid(secret: SecretStr, raw_token: str, csrf: str, now: datetime) -> bool:
    issued, _, signature = csrf.partition(".")
    if not issued.isdigit() or not hmac.compare_digest(signature, _csrf_signature(secret, raw_token, issued)):
        return False
    age = now.timestamp() - int(issued)
    return -60 <= age <= CSRF_MAX_AGE_SECONDS


def _csrf_signature(secret: SecretStr, raw_token: str, issued: str) -> str:
    key = secret.get_secret_value().encode()
    digest = hmac.new(key, f"preferences-csrf:{raw_token}:{issued}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:16]).rstrip(b"=").decode()


async def _bounded_body(request: Request) -> bytes:
    """The form's body, refused with 413 past ``MAX_FORM_BYTES`` before more of it is read."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise HTTPException(status_code=413, detail="The form is too large.")
    return body


def _published(request: Request) -> list[JourneyBundle]:
    catalog = getattr(request.app.state, "catalog", None)
    if catalog is None:
        return []
    items: dict[str, Any] = catalog.all()
    return [item if isinstance(item, JourneyBundle) else item.bundle for item in items.values()]


def _profile(request: Request, customer_id: str) -> CustomerProfile | None:
    settings = _settings(request)
    return CustomerProfiles(request.app.state.ledger.engine, settings.signing_secret).find_by_id(customer_id)


def _language(request: Request, profile: CustomerProfile | None) -> str:
    return choose_language(profile.locale if profile else None, request.headers.get("accept-language"))


def _settings(request: Request) -> Settings:
    settings: Settings = getattr(request.app.state, "settings", None) or get_settings()
    return settings


def _read(settings: Settings, token: str) -> UnsubscribeToken:
    try:
        return read_token(settings.signing_secret, token)
    except InvalidToken as exc:
        log.warning("preference centre link refused: %s", exc)
        raise HTTPException(status_code=403, detail=f"This link is not valid: {exc}") from None


def _preferences_form(raw_token: str, csrf: str, choices: Choices) -> str:
    language = choices.language

    def boxes(kind: str, items: dict[str, bool]) -> str:
        return "".join(
            f"<p><label><input type='checkbox' name='{kind}' value='{escape(name)}'{' checked' if on else ''}> "
            f"{escape(label(language, kind, name))}</label></p>"
            for name, on in items.items()
        )

    parts = [f"<form method='post' action='/v1/preferences/{escape(raw_token)}'>",
             f"<input type='hidden' name='csrf' value='{escape(csrf)}'>",
             f"<fieldset><legend>{escape(text(language, 'channels'))}</legend>{boxes('channel', choices.channels)}"
             "</fieldset>"]
    if choices.topics:
        parts.append(f"<fieldset><legend>{escape(text(language, 'topics'))}</legend>"
                     f"{boxes('topic', choices.topics)}</fieldset>")
    parts.append(f"<button type='submit'>{escape(text(language, 'save'))}</button></form>")
    return "".join(parts)


def _unsubscribe_form(raw_token: str, language: str) -> str:
    return (f"<form method='post' action='/v1/unsubscribe/{escape(raw_token)}'>"
            f"<button type='submit'>{escape(text(language, 'unsubscribe'))}</button></form>")


def _page(language: str, title: str, intro: str, body: str = "", status: int = 200) -> HTMLResponse:
    html = (
        f"<!doctype html><html lang='{language}' dir='{direction(language)}'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{escape(title)}</title></head>"
        f"<body><h1>{escape(title)}</h1><p>{escape(intro)}</p>{body}</body></html>"
    )
    return HTMLResponse(html, status_code=status, headers=_PAGE_HEADERS)
