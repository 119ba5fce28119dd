"""Unsubscribe links: minted into every email, honoured with one click.

The link carries a token signed with the product's secret, naming the customer and the message it
came from, so nobody can craft a link that unsubscribes someone else, and the link itself holds no
email address (URLs end up in proxies' and browsers' logs). ``GET`` only shows a page, the
preference centre (``omnicart.consent.preferences``), with an unsubscribe button: mail security
scanners fetch every link in an email, and a GET that unsubscribed would unsubscribe customers who
never clicked. The token also says until when it may change preferences (its expiry, signed).
``POST`` (that button, or a mail client's RFC 8058 one-click unsubscribe via
``List-Unsubscribe-Post``) turns the token into a ``consent_changed`` event (email, granted false,
provenance ``email_unsubscribe``), with an id derived from the message, so a second POST changes
nothing, expiry or not; the message's ``unsubscribed`` outcome is stored for analytics, once, the
same way.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse
from pydantic import SecretStr

from omnicart.analytics.outcomes import outcomes_of
from omnicart.analytics.store import record_outcomes
from omnicart.consent.provenance import provenance
from omnicart.events import CHANNELS, Channel, Event
from omnicart.security.pseudonym import customer_ref
from omnicart.settings import Settings, get_settings

log = logging.getLogger(__name__)

router = APIRouter(tags=["unsubscribe"])

_SIGNATURE_BYTES = 16  # 128-bit HMAC tag: unguessable, and short enough for a tidy link


PUBLIC_DEFAULT_SECRET = Settings.model_fields["signing_secret"].default.get_secret_value()
"""The signing secret's default, published in this repository: anyone could mint links with it."""


def warn_about_public_defaults(settings: Settings, process: str) -> list[str]:
    """Log (loudly, at start-up of the API and the worker) settings that are unsafe in production.

    * The default ``OMNICART_SIGNING_SECRET`` is public: anyone can mint an unsubscribe link for any
      customer (and discount codes). ``omnicart dev`` may use it; nothing public should.
    * A plain-HTTP ``OMNICART_PUBLIC_URL`` leaves the one-click ``List-Unsubscribe-Post`` header out
      of emails (RFC 8058 requires HTTPS), see ``omnicart.channels.sendgrid_email``.

    Returns the warnings, for tests and for callers that want to refuse instead.
    """
    warnings = []
    if settings.signing_secret.get_secret_value() == PUBLIC_DEFAULT_SECRET:
        warnings.append(
            "OMNICART_SIGNING_SECRET is the public default: anyone can forge unsubscribe links and "
            "discount codes; set a long random secret before exposing this service"
        )
    if not settings.public_url.startswith("https://"):
        warnings.append(
            "OMNICART_PUBLIC_URL is not HTTPS: emails go without one-click unsubscribe (RFC 8058) "
            "and providers call webhooks in clear text"
        )
    for warning in warnings:
        log.warning("%s start-up: %s", process, warning)
    return warnings


@dataclass(frozen=True)
class UnsubscribeToken:
    customer_id: str
    message_id: str
    channel: Channel
    expires_at: datetime | None = None  # until when it opens the preference centre; None: links from before it

    def opens_preferences(self, now: datetime) -> bool:
        """Whether the link may still change preferences; any signed link can always unsubscribe."""
        return self.expires_at is not None and now < self.expires_at


class InvalidToken(ValueError):
    """The token is malformed, or its signature is not ours."""


def make_token(
    secret: SecretStr,
    customer_id: str,
    message_id: str,
    channel: Channel = "email",
    expires_at: datetime | None = None,
) -> str:
    """``<payload>.<signature>``, both base64url: the payload names customer, message and channel,
    and until when the link opens the preference centre (signed with the rest, so it cannot be moved)."""
    content: dict[str, str | int] = {"c": customer_id, "m": message_id, "ch": channel}
    if expires_at is not None:
        content["e"] = int(expires_at.timestamp())
    payload = json.dumps(content, separators=(",", ":"))
    encoded = _b64encode(payload.encode())
    return f"{encoded}.{_b64encode(_sign(secret, encoded))}"


def read_token(secret: SecretStr, token: str) -> UnsubscribeToken:
    """The token's content, or ``InvalidToken`` when it was not signed with ``secret``."""
    encoded, dot, signature = token.partition(".")
    if not dot or not encoded or not signature:
        raise InvalidToken("not an unsubscribe token")
    try:
        given = _b64decode(signature)
    except (binascii.Error, ValueError):
        raise InvalidToken("not an unsubscribe token") from None
    if not hmac.compare_digest(given, _sign(secret, encoded)):
        raise InvalidToken("the token's signature does not match")
    try:
        data = json.loads(_b64decode(encoded))
        customer_id, message_id, channel = str(data["c"]), str(data["m"]), data["ch"]
        expires_at = datetime.fromtimestamp(int(data["e"]), UTC) if "e" in data else None
    except (binascii.Error, ValueError, KeyError, TypeError, OverflowError, OSError):
        raise InvalidToken("the token's content is unreadable") from None
    if channel not in CHANNELS or not customer_id or not message_id:
        raise InvalidToken("the token's content is unreadable")
    return UnsubscribeToken(customer_id=customer_id, message_id=message_id, channel=channel, expires_at=expires_at)


def unsubscribe_url(settings: Settings, customer_id: str, message_id: str, channel: Channel = "email") -> str:
    """The link a message carries: ``{public_url}/v1/unsubscribe/<signed token>``; it opens the
    preference centre for ``OMNICART_PREFERENCE_LINK_DAYS``."""
    expires_at = datetime.now(UTC) + timedelta(days=settings.preference_link_days)
    token = make_token(settings.signing_secret, customer_id, message_id, channel, expires_at)
    return f"{settings.public_url.rstrip('/')}/v1/unsubscribe/{token}"


def unsubscribe_event(token: UnsubscribeToken, now: datetime | None = None, **evidence: str | bool | None) -> Event:
    """The ``consent_changed`` event a click produces; the same id for every click on one link.
    ``evidence`` (the client's address, whether it was a mail client's one-click) goes to the consent history."""
    digest = hashlib.sha256(f"{token.channel}:{token.message_id}".encode()).hexdigest()[:32]
    return Event.parse(
        {
            "id": f"unsub_{digest}",
            "type": "consent_changed",
            "customer_id": token.customer_id,
            "timestamp": (now or datetime.now(UTC)).isoformat(),
            "source": token.channel,
            "properties": {
                "channel": token.channel,
                "granted": False,
                "message_id": token.message_id,
                "via": "unsubscribe_link",
                **provenance("email_unsubscribe", message_id=token.message_id, **evidence),
            },
        }
    )


@router.get("/v1/unsubscribe/{token}", response_class=HTMLResponse)
async def unsubscribe_page(token: str, request: Request) -> HTMLResponse:
    """A person (or a link scanner) opened the link: the preference centre, with an unsubscribe
    button; nothing changes until a form is posted."""
    from omnicart.consent import preferences  # the preference centre builds on this module's tokens

    return await preferences.show(_read(token, request), token, request)


@router.post("/v1/unsubscribe/{token}", response_class=HTMLResponse)
async def unsubscribe_one_click(token: str, request: Request) -> HTMLResponse:
    """The unsubscribe button, or a mail client's one-click unsubscribe (``List-Unsubscribe=One-Click``)."""
    from omnicart.consent import preferences

    await _unsubscribe(token, request)
    return await preferences.unsubscribed(_read(token, request), request)


def _read(token: str, request: Request) -> UnsubscribeToken:
    settings: Settings = getattr(request.app.state, "settings", None) or get_settings()
    try:
        return read_token(settings.signing_secret, token)
    except InvalidToken as exc:
        log.warning("unsubscribe link refused: %s", exc)
        raise HTTPException(status_code=403, detail=f"This unsubscribe link is not valid: {exc}") from None


async def _unsubscribe(token: str, request: Request) -> None:
    parsed = _read(token, request)
    ingest = getattr(request.app.state, "ingest", None)
    if ingest is None:
        raise HTTPException(status_code=503, detail="not ready yet, please try again", headers={"Retry-After": "5"})
    one_click = b"List-Unsubscribe=One-Click" in await request.body()
    event = unsubscribe_event(parsed, ip=request.client.host if request.client else None, one_click=one_click)
    # The message's outcome first: a failure answers 5xx before anything was taken, and a retry does both.
    await asyncio.to_thread(record_outcomes, request.app.state.ledger.engine, outcomes_of([event]))
    await ingest.submit([event])
    log.info(
        "customer %s unsubscribed from %s via message %s",
        customer_ref(parsed.customer_id),
        parsed.channel,
        parsed.message_id,
    )


def _sign(secret: SecretStr, encoded_payload: str) -> bytes:
    key = secret.get_secret_value().encode()
    digest = hmac.new(key, f"unsubscribe:{encoded_payload}".encode(), hashlib.sha256).digest()
    return digest[:_SIGNATURE_BYTES]


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
