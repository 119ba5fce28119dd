"""Email through SendGrid's v3 Mail Send API, with the official ``sendgrid`` SDK.

Every message carries ``custom_args`` (customer, journey, run, step, message id) so that each event
SendGrid reports through the Event Webhook finds its way back to the journey run that caused it;
that is also how a webhook proves, after a crash, that a message was accepted (see
``omnicart/ledger.py``). Marketing mail gets a ``List-Unsubscribe`` header with one-click POST
(RFC 8058) pointing at our signed unsubscribe link, and the same link in the body when the
template did not place it.

Failures are classified for the send activity. The SDK (``python_http_client``) raises an
``HTTPError`` subclass per status (``TooManyRequestsError`` for 429, a bare ``HTTPError`` for 502),
so we classify by ``status_code``, not by class:

* 429 (honouring ``Retry-After`` or SendGrid's ``X-RateLimit-Reset``), 408 and every 5xx: retry.
* 401 (the API key was rejected) and 403 (the key lacks the ``mail.send`` scope, or the sender
  identity is not verified): a ``ProviderConfigurationError``, retried slowly and loudly. Every
  email would fail the same way until an operator fixes a setting; blaming the customer, dropping
  the message, or falling back to SMS for everyone would be worse. Twilio's 20003 is treated alike.
* 400 and other 4xx: permanent; a 400 about the recipient's address also marks it invalid.

The one-click ``List-Unsubscribe-Post`` header (RFC 8058) is sent only when the link is HTTPS, as
the RFC requires; with a plain-HTTP ``OMNICART_PUBLIC_URL`` the sender warns at start-up and sends
``List-Unsubscribe`` alone. The unsubscribe anchor carries ``clicktrack="off"`` so that SendGrid's
click tracking neither rewrites it nor reports unsubscribing as a click.
* No connection: retry, nothing was sent. No answer after the request went out (read timeout,
  connection dropped): retry *in doubt*, because SendGrid may have accepted it.

SendGrid offers no idempotency key and no free "did you get this message" API, so this sender
implements no ``lookup``.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import re
import time
from datetime import UTC, datetime
from typing import Any
from urllib.error import URLError

from python_http_client.exceptions import HTTPError
from sendgrid import SendGridAPIClient
from sendgrid.helpers.mail import (
    Asm,
    Category,
    CustomArg,
    From,
    GroupId,
    Header,
    Mail,
    MailSettings,
    SandBoxMode,
    To,
)

from omnicart.channels.base import (
    Delivery,
    PermanentChannelError,
    ProviderConfigurationError,
    RenderedMessage,
    RetryableChannelError,
    mask_address,
    parse_retry_after,
)
from omnicart.channels.categories import message_categories
from omnicart.observability import provider_span
from omnicart.security.pseudonym import customer_ref
from omnicart.settings import Settings

log = logging.getLogger(__name__)

# The SDK's HTTP client logs the Authorization header and the whole payload (addresses included)
# at DEBUG: keep it quiet whatever the application's log level.
logging.getLogger("python_http_client").setLevel(logging.INFO)

SENDGRID_TIMEOUT = 20.0
"""Seconds to wait for SendGrid; below the send activity's start-to-close timeout on purpose."""


_BODY_TAG = re.compile(r"<body[^>]*>", re.IGNORECASE)


class SendGridEmailSender:
    """One email per ``RenderedMessage`` via ``POST /v3/mail/send``."""

    provider = "sendgrid"

    def __init__(self, settings: Settings, *, timeout: float = SENDGRID_TIMEOUT) -> None:
        if settings.sendgrid_api_key is None:
            raise ValueError("SendGrid needs an API key: set OMNICART_SENDGRID_API_KEY")
        self._settings = settings
        self._timeout = timeout
        self._client = SendGridAPIClient(
            api_key=settings.sendgrid_api_key.get_secret_value(), host=settings.sendgrid_host
        )
        one_click_allowed(settings)  # warns at start-up when one-click unsubscribe cannot be offered


    async def send(self, message: RenderedMessage) -> Delivery:
        if len(message.to) != 1:
            raise PermanentChannelError(
                f"an email goes to exactly one address, message {message.message_id} has {len(message.to)}",
                invalid_address=not message.to,
            )
        try:
            body = self.request_body(message)
        except ValueError as exc:  # categories SendGrid would refuse (the journey validator stops most)
            raise PermanentChannelError(f"email {message.message_id} cannot be sent: {exc}") from None
        try:
            with provider_span(self.provider, "send", message.message_id, message.channel):
                response = await asyncio.to_thread(self._post, body)
        except HTTPError as exc:
            raise _classify(exc, message.to[0]) from None
        except URLError as exc:
            # urllib wraps failures to connect or to write the request: SendGrid never got it.
            raise RetryableChannelError(f"could not reach SendGrid: {exc.reason}") from None
        except (OSError, http.client.HTTPException) as exc:
            raise RetryableChannelError(
                f"no answer from SendGrid after the request was sent: {exc!r}", maybe_delivered=True
            ) from None
        provider_id = response.headers.get("X-Message-Id") if response.headers is not None else None
        log.info(
            "sendgrid accepted message %s for customer %s (status %s)",
            message.message_id,
            customer_ref(message.customer_id),
            response.status_code,
        )
        return Delivery(provider=self.provider, provider_message_id=provider_id)

    def request_body(self, message: RenderedMessage) -> dict[str, Any]:
        """The v3 Mail Send JSON for a message, built with the SDK's ``Mail`` helper."""
        settings = self._settings
        templated = message.sendgrid_template_id is not None
        html = _with_preheader(message.html, message.preheader)
        text = message.text
        if message.unsubscribe_url and not templated:
            html, text = _with_unsubscribe_link(html, text, message.unsubscribe_url)
        recipient = To()
        recipient.email = message.to[0]  # as given: the helper's parsing would mangle a bad address
        mail = Mail(
            from_email=From(settings.sendgrid_from_email, settings.sendgrid_from_name),
            to_emails=recipient,
            subject=None if templated else (message.subject or ""),
            plain_text_content=None if templated else text,
            html_content=None if templated else html,
        )
        if message.sendgrid_template_id is not None:
            mail.template_id = message.sendgrid_template_id
            mail.dynamic_template_data = _template_data(message)
        mail.custom_arg = [CustomArg(key, value) for key, value in custom_args(message).items()]
        mail.category = [Category(name) for name in message_categories(message.journey, message.categories)]
        if message.unsubscribe_url:
            headers = [Header("List-Unsubscribe", f"<{message.unsubscribe_url}>")]
            if message.unsubscribe_url.startswith("https://"):  # RFC 8058: one-click only over HTTPS
                headers.append(Header("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"))
            mail.header = headers
        if settings.unsubscribe_group_id is not None:
            mail.asm = Asm(GroupId(settings.unsubscribe_group_id))
        if settings.sendgrid_sandbox:
            mail.mail_settings = MailSettings(sandbox_mode=SandBoxMode(True))
        body: dict[str, Any] = mail.get()
        return body

    def _post(self, body: dict[str, Any]) -> Any:
        # The SDK's fluent client, as its README shows, so that we can pass a timeout per call.
        return self._client.client.mail.send.post(request_body=body, timeout=self._timeout)


def one_click_allowed(settings: Settings) -> bool:
    """Whether one-click unsubscribe may be offered; warns (once per sender) when it may not.

    RFC 8058 section 3.1: the ``List-Unsubscribe`` URI for a one-click POST must be HTTPS, and
    mailbox providers ignore (or distrust) a one-click header over plain HTTP. With an unsubscribe
    group (``OMNICART_UNSUBSCRIBE_GROUP_ID``) SendGrid adds its own ``List-Unsubscribe`` entry for
    the group; ours stays in the header too, see docs/DELIVERY.md.
    """
    if settings.public_url.startswith("https://"):
        return True
    log.warning(
        "OMNICART_PUBLIC_URL is not HTTPS: emails carry List-Unsubscribe without the one-click "
        "List-Unsubscribe-Post header (RFC 8058 requires HTTPS); set an https:// public URL in production"
    )
    return False


def custom_args(message: RenderedMessage) -> dict[str, str]:
    """What ties each SendGrid event back to us. Ids only: SendGrid stores these as non-personal."""
    return {
        "customer_id": message.customer_id,
        "journey": message.journey,
        "run_id": message.run_id,
        "step_id": message.step_id,
        "message_id": message.message_id,
        "template": message.template_name,
    }


def _template_data(message: RenderedMessage) -> dict[str, Any]:
    data = dict(message.context)
    for key in ("subject", "preheader"):
        value = getattr(message, key)
        if value is not None:
            data[key] = value
    if message.unsubscribe_url:
        data["unsubscribe_url"] = message.unsubscribe_url
    # Round-trip through JSON so that what SendGrid gets is exactly what a template can use.
    loaded: dict[str, Any] = json.loads(json.dumps(data, default=str))
    return loaded


def _with_preheader(html: str | None, preheader: str | None) -> str | None:
    """Inboxes show the first text of the body as the preview: put the preheader there, hidden."""
    if html is None or not preheader or preheader in html:
        return html
    hidden = (
        '<div style="display:none;max-height:0;overflow:hidden;mso-hide:all" aria-hidden="true">'
        f"{_escape(preheader)}</div>"
    )
    match = _BODY_TAG.search(html)
    if match is None:
        return hidden + html
    return html[: match.end()] + hidden + html[match.end() :]


def _with_unsubscribe_link(html: str | None, text: str | None, url: str) -> tuple[str | None, str | None]:
    """Every marketing email must let the reader opt out from the body too, not only the header."""
    if html is not None and url not in html and _escape(url) not in html:
        footer = f'<p style="font-size:12px"><a clicktrack="off" href="{_escape(url)}">Unsubscribe</a></p>'
        closing = html.lower().rfind("</body>")
        html = html[:closing] + footer + html[closing:] if closing >= 0 else html + footer
    elif html is not None:
        html = _untracked(html, url)
    if text is not None and url not in text:
        text = f"{text.rstrip()}\n\nUnsubscribe: {url}\n"
    return html, text


_ANCHOR = re.compile(r"<a\b[^>]*>", re.IGNORECASE)


def _untracked(html: str, url: str) -> str:
    """The template's own unsubscribe anchors, marked ``clicktrack="off"``.

    SendGrid's click tracking rewrites every link unless its anchor has ``clicktrack="off"``
    (https://www.twilio.com/docs/sendgrid/ui/account-and-settings/tracking#click-tracking); an
    unsubscribe reported as a click would count as engagement and could steer a journey.
    """
    targets = {url, _escape(url)}

    def mark(match: re.Match[str]) -> str:
        tag = match.group(0)
        if "clicktrack" in tag.lower() or not any(f'"{target}"' in tag or f"'{target}'" in tag for target in targets):
            return tag
        return '<a clicktrack="off"' + tag[2:]

    return _ANCHOR.sub(mark, html)


def _escape(value: str) -> str:
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def _classify(exc: HTTPError, address: str) -> Exception:
    status = int(exc.status_code)
    detail = _error_detail(exc.body).replace(address, mask_address(address))
    summary = f"SendGrid answered {status}" + (f": {detail}" if detail else "")
    if status == 429 or status == 408 or status >= 500:
        return RetryableChannelError(summary, retry_after=retry_after(exc.headers))
    if status in (401, 403):
        return ProviderConfigurationError(
            "sendgrid", f"{summary} (check OMNICART_SENDGRID_API_KEY and the verified sender identity)"
        )
    return PermanentChannelError(summary, invalid_address=status == 400 and _about_recipient(exc.body))


def _errors(body: Any) -> list[dict[str, Any]]:
    try:
        data = json.loads(body.decode("utf-8") if isinstance(body, bytes) else body)
    except (ValueError, TypeError, AttributeError):
        return []
    errors = data.get("errors") if isinstance(data, dict) else None
    return [error for error in errors if isinstance(error, dict)] if isinstance(errors, list) else []


def _error_detail(body: Any) -> str:
    parts = []
    for error in _errors(body):
        field = error.get("field")
        message = str(error.get("message") or "").strip()
        parts.append(f"{field}: {message}" if field else message)
    return "; ".join(part for part in parts if part)


def _about_recipient(body: Any) -> bool:
    """A 400 whose error points at the recipient's address (``personalizations.0.to.0.email``)."""
    for error in _errors(body):
        field = str(error.get("field") or "")
        if field.startswith("personalizations") and ".to" in field:
            return True
        if "valid address" in str(error.get("message") or "").lower() and "from" not in field:
            return True
    return False


def retry_after(headers: Any, now: float | None = None) -> float | None:
    """Seconds to wait, from ``Retry-After`` (seconds or an HTTP date) or ``X-RateLimit-Reset`` (epoch)."""
    if headers is None:
        return None
    now = time.time() if now is None else now
    waited = parse_retry_after(headers.get("Retry-After"), datetime.fromtimestamp(now, UTC))
    if waited is not None:
        return waited
    reset = headers.get("X-RateLimit-Reset")
    if reset and str(reset).strip().isdigit():
        return max(0.0, float(str(reset).strip()) - now)
    return None
