"""SMS through Twilio's Messages API, with the official ``twilio`` SDK.

The SDK builds the real request (form encoding, basic auth, the account's ``Messages.json`` path);
this module only decides the fields, counts segments, and turns Twilio's answers into the channel
contract: ``21610`` (the recipient replied STOP to our number) revokes SMS consent, an invalid or
unreachable number marks the address, and 429 / 5xx / timeouts are retried by Temporal.

The SDK is synchronous (``requests``), so every call runs in a worker thread; the event loop of the
worker that hosts the send activity never blocks on Twilio.

Phone numbers never reach our logs: Twilio's own error messages quote the number, so they are
redacted before they become an error text, and the SDK's request logger is kept quiet.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import urlencode, urlsplit, urlunsplit

import requests
from twilio.base.exceptions import TwilioException, TwilioRestException, TwilioServiceException
from twilio.http import HttpClient
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client
from urllib3.exceptions import NewConnectionError

from omnicart.channels.base import (
    Delivery,
    PermanentChannelError,
    ProviderConfigurationError,
    RenderedMessage,
    RetryableChannelError,
    parse_retry_after,
)
from omnicart.channels.sms_segments import count_segments, with_opt_out
from omnicart.observability import provider_span
from omnicart.security.pseudonym import customer_ref
from omnicart.settings import Settings

log = logging.getLogger(__name__)

# The SDK logs query parameters at INFO (a Messages list filtered by To carries the phone number).
_sdk_log = logging.getLogger(f"{__name__}.sdk")
_sdk_log.setLevel(logging.WARNING)

STATUS_CALLBACK_PATH = "/webhooks/twilio/status"

# https://www.twilio.com/docs/api/errors: the recipient opted out of messages from this sender.
UNSUBSCRIBED_RECIPIENT = 21610
# Codes that mean "this phone number cannot receive SMS": the address, not the request, is wrong.
# Twilio split some of these out of 21211/21614 in July 2024 ("Updates to the error code dictionary
# to clarify number validation errors", twilio.com/en-us/changelog): 21265 (To is a short code),
# 21266 (To and From are the same number), 21268 (a premium or information-service number).
INVALID_NUMBER_CODES = frozenset(
    {
        21211,  # Invalid 'To' phone number
        21214,  # 'To' phone number cannot be reached
        21217,  # Phone number does not appear to be valid
        21265,  # 'To' number cannot be a Short Code
        21266,  # 'To' and 'From' number cannot be the same
        21268,  # Premium numbers are not permitted
        21401,  # Invalid phone number
        21407,  # This phone number type does not support SMS
        21421,  # PhoneNumber is invalid
        21614,  # 'To' number is not a valid mobile number
        21635,  # 'To' number cannot be a landline (where Twilio does not try landlines)
    }
)
# Codes about *our* account or sender, never the customer's number: the channel stops, loudly, and
# messages wait (``ProviderConfigurationError``) until an operator fixes the setting.
CONFIGURATION_CODES = frozenset(
    {
        20003,  # Authenticate: the account SID or auth token was refused
        21267,  # Alphanumeric sender ID cannot be used on trial accounts (July 2024)
        21606,  # The 'From' phone number is not a valid, SMS-capable number for this account
        21659,  # 'From' is not a Twilio phone number or short code (July 2024)
        21660,  # Mismatch between the 'From' number and the account (July 2024)
        21661,  # 'From' number is not SMS-capable (July 2024)
    }
)
# 21612: "the To and From cannot be connected right now": the pair, often our sender's type or
# country, not the customer's number. Permanent for this message (the fallback runs), nothing marked.
UNROUTABLE_PAIR = 21612
TOO_MANY_REQUESTS = 20429

_PHONE_LIKE = re.compile(r"\+?\d[\d \-().]{5,}\d")

T = TypeVar("T")


class TwilioSmsSender:
    """The ``sms`` channel on Twilio: one message to one E.164 number per send."""

    provider = "twilio"

    def __init__(
        self,
        settings: Settings,
        http_client: HttpClient | None = None,
        *,
        timeout: float = 10.0,
        lookup_window: timedelta = timedelta(days=3),
    ) -> None:
        """Configure from settings; ``http_client`` replaces the SDK's default transport.

        ``timeout`` bounds every request even when the given client has none, so that a hung
        Twilio turns into a retryable timeout instead of a stuck activity. ``lookup_window`` is how
        far back :meth:`lookup` looks for a message we may already have handed to Twilio.
        """
        if not settings.twilio_account_sid or settings.twilio_auth_token is None:
            raise ValueError("Twilio needs OMNICART_TWILIO_ACCOUNT_SID and OMNICART_TWILIO_AUTH_TOKEN")
        if not settings.twilio_from_number and not settings.twilio_messaging_service_sid:
            raise ValueError(
                "Twilio needs a sender: OMNICART_TWILIO_FROM_NUMBER or OMNICART_TWILIO_MESSAGING_SERVICE_SID"
            )
        self._settings = settings
        self._lookup_window = lookup_window
        self._http = _RecordingHttpClient(
            http_client or TwilioHttpClient(timeout=timeout, logger=_sdk_log),
            base_url=settings.twilio_base_url,
            timeout=timeout,
        )
        # environment={} so that only our settings configure the client (no stray TWILIO_* vars).
        self._client = Client(
            settings.twilio_account_sid,
            settings.twilio_auth_token.get_secret_value(),
            http_client=self._http,
            environment={},
        )

    def body_of(self, message: RenderedMessage) -> str:
        """The exact text Twilio receives: the rendered body, plus the opt-out line for marketing."""
        body = message.body if message.body is not None else message.text
        if not body or not body.strip():
            raise PermanentChannelError(f"SMS message {message.message_id} has an empty body")
        return with_opt_out(body, message.marketing)

    def status_callback_url(self, message_id: str) -> str:
        """Where Twilio reports delivery; the message id rides along so the webhook finds the send."""
        base = self._settings.public_url.rstrip("/")
        return f"{base}{STATUS_CALLBACK_PATH}?{urlencode({'message_id': message_id})}"

    async def send(self, message: RenderedMessage) -> Delivery:
        """Hand one SMS to Twilio; the returned segments are what the carrier bills."""
        to = _single_recipient(message)
        body = self.body_of(message)
        segments = count_segments(body)
        fields: dict[str, Any] = {
            "to": to,
            "body": body,
            "status_callback": self.status_callback_url(message.message_id),
        }
        if self._settings.twilio_messaging_service_sid:
            fields["messaging_service_sid"] = self._settings.twilio_messaging_service_sid
        else:
            fields["from_"] = self._settings.twilio_from_number
        with provider_span(self.provider, "send", message.message_id, message.channel):
            created = await asyncio.to_thread(self._call, lambda: self._client.messages.create(**fields))
        log.info(
            "twilio accepted message %s for customer %s as %s (%d %s segments)",
            message.message_id,
            customer_ref(message.customer_id),
            created.sid,
            segments.segments,
            segments.encoding,
        )
        return Delivery(provider=self.provider, provider_message_id=created.sid, segments=segments.segments)

    async def lookup(self, message: RenderedMessage) -> Delivery | None:
        """Did Twilio already accept this message (sent before a crash that lost the answer)?

        Twilio's Message resource has no field of ours (no idempotency key, and the status callback
        URL that carries our message id is not returned), so the match is: same recipient, same
        sender (number or Messaging Service), exactly the same body, created within
        ``lookup_window``, outbound. Listed by ``To``/``From`` without a ``DateSent`` filter,
        because a message still queued has no send date yet and would be missed. Raises
        ``RetryableChannelError`` when Twilio cannot be asked right now.
        """
        to = _single_recipient(message)
        body = self.body_of(message)
        since = datetime.now(UTC) - self._lookup_window
        filters: dict[str, Any] = {"to": to, "limit": 50, "page_size": 50}
        if not self._settings.twilio_messaging_service_sid:
            filters["from_"] = self._settings.twilio_from_number
        try:
            with provider_span(self.provider, "lookup", message.message_id, message.channel):
                listed = await asyncio.to_thread(self._call, lambda: self._client.messages.list(**filters))
        except PermanentChannelError as exc:  # e.g. credentials refused: we cannot tell, so "not now"
            raise RetryableChannelError(f"cannot ask Twilio about message {message.message_id}: {exc}") from None
        for candidate in listed:
            if not str(candidate.direction or "").startswith("outbound"):
                continue
            service = self._settings.twilio_messaging_service_sid
            if service and candidate.messaging_service_sid != service:
                continue
            created_at = candidate.date_created
            if candidate.body == body and (created_at is None or created_at >= since):
                log.info("twilio already has message %s as %s", message.message_id, candidate.sid)
                return Delivery(
                    provider=self.provider,
                    provider_message_id=candidate.sid,
                    segments=count_segments(body).segments,
                )
        return None

    @property
    def client(self) -> Client:
        """The configured SDK client, for another Twilio channel (WhatsApp) to share."""
        return self._client

    def call(self, request: Callable[[], T]) -> T:
        """Run one SDK call and classify its errors, for another Twilio channel to share."""
        return self._call(request)

    def _call(self, request: Callable[[], T]) -> T:
        """Run one SDK call (in a worker thread) and classify what went wrong."""
        try:
            return request()
        except (TwilioRestException, TwilioServiceException) as exc:
            raise classify_twilio_error(exc, self._http.last_headers()) from None
        except requests.Timeout as exc:
            raise RetryableChannelError(
                f"Twilio did not answer in time: {type(exc).__name__}", maybe_delivered=_maybe_delivered(exc)
            ) from None
        except requests.RequestException as exc:
            raise RetryableChannelError(
                f"Twilio unreachable: {type(exc).__name__}", maybe_delivered=_maybe_delivered(exc)
            ) from None
        except TwilioException as exc:
            raise PermanentChannelError(f"Twilio SDK error: {_redact(str(exc))}") from None


def classify_twilio_error(
    exc: TwilioRestException | TwilioServiceException, headers: Mapping[str, str] | None = None
) -> RetryableChannelError | PermanentChannelError:
    """Map a Twilio API error to the channel contract (phone numbers redacted from the text).

    The customer's number is blamed (``invalid_address``) only for codes about the number itself;
    our credentials or sender (``CONFIGURATION_CODES``, any 401/403) stop the channel and keep the
    message waiting, as a SendGrid 401/403 does; 21612 fails this message without marking anything.
    """
    status = int(exc.status)
    code = int(exc.code) if exc.code is not None else None
    detail = exc.msg if isinstance(exc, TwilioRestException) else (exc.detail or exc.title)
    text = f"Twilio HTTP {status}, error {code}: {_redact(str(detail or ''))}"
    if status == 429 or code == TOO_MANY_REQUESTS:
        return RetryableChannelError(text, retry_after=parse_retry_after(_header(headers, "Retry-After")))
    if status >= 500 or status == 408:
        return RetryableChannelError(text)
    if code in CONFIGURATION_CODES or status in (401, 403):
        return ProviderConfigurationError(
            "twilio", f"{text} (check OMNICART_TWILIO_ACCOUNT_SID, _AUTH_TOKEN and the sender)"
        )
    if code == UNSUBSCRIBED_RECIPIENT:
        return PermanentChannelError(text, revoke_consent=True)
    if code in INVALID_NUMBER_CODES:
        return PermanentChannelError(text, invalid_address=True)
    return PermanentChannelError(text)


def _maybe_delivered(exc: requests.RequestException) -> bool:
    """Could Twilio have received (and accepted) the request although we got no answer?

    Not when the connection was never made (refused, name not resolved, connect timeout); yes for
    a read timeout or a connection dropped after the request went out.
    """
    if isinstance(exc, requests.ConnectTimeout):
        return False
    if isinstance(exc, requests.ConnectionError):
        reason = getattr(exc.args[0] if exc.args else None, "reason", None)
        if isinstance(reason, NewConnectionError):  # also NameResolutionError, a subclass
            return False
    return True


def _single_recipient(message: RenderedMessage) -> str:
    if len(message.to) != 1:
        raise PermanentChannelError(
            f"SMS message {message.message_id} needs exactly one phone number in 'to', got {len(message.to)}",
            invalid_address=not message.to,
        )
    return message.to[0]


def _redact(text: str) -> str:
    return _PHONE_LIKE.sub("<phone>", text)


def _header(headers: Mapping[str, str] | None, name: str) -> str | None:
    if not headers:
        return None
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value
    return None


class _RecordingHttpClient(HttpClient):  # type: ignore[misc]
    """Wraps the SDK's transport: points it at ``base_url`` and keeps the last response's headers.

    The SDK's exceptions drop response headers, and ``Retry-After`` lives there; the headers are
    kept per thread because each SDK call runs in its own worker thread.
    """

    def __init__(self, inner: HttpClient, *, base_url: str | None, timeout: float) -> None:
        super().__init__(inner.logger, False, timeout)
        self._inner = inner
        self._base = urlsplit(base_url) if base_url else None
        self._local = threading.local()

    def request(
        self,
        method: str,
        uri: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> Response:
        if self._base is not None:
            parts = urlsplit(uri)
            prefix = self._base.path.rstrip("/")
            uri = urlunsplit((self._base.scheme, self._base.netloc, prefix + parts.path, parts.query, ""))
        self._local.headers = None
        response: Response = self._inner.request(
            method,
            uri,
            params=params,
            data=data,
            headers=headers,
            auth=auth,
            timeout=timeout if timeout is not None else self.timeout,
            allow_redirects=allow_redirects,
        )
        self._local.headers = dict(response.headers or {})
        return response

    def last_headers(self) -> dict[str, str] | None:
        """Headers of the last response seen on the calling thread."""
        headers: dict[str, str] | None = getattr(self._local, "headers", None)
        return headers
