"""Push through Firebase Cloud Messaging's HTTP v1 API, over ``httpx``, authorised by ``google-auth``.

FCM v1 takes one device token per request, so a push to a customer is one request per token, sent
concurrently. The outcome is per device and is folded into one answer for the journey:

* at least one device accepted -> delivered (tokens FCM says are gone come back in
  ``Delivery.dead_push_tokens`` so the journey drops them from the profile; a device that failed
  only transiently is not retried, because retrying the whole send would push the devices that
  already accepted a second time);
* no device accepted and some failure was transient (429, 5xx, timeout) -> retry the send;
* every token is dead (``UNREGISTERED``, a token rejected as invalid) ->
  :class:`DeadPushTokens`, a permanent error with ``invalid_address`` so the step falls back to the
  next channel;
* no device accepted and FCM refused *our* configuration (``SENDER_ID_MISMATCH``: the tokens belong
  to another Firebase project, i.e. a wrong ``OMNICART_FCM_PROJECT_ID``; ``403 PERMISSION_DENIED``:
  the service account may not send) -> ``ProviderConfigurationError``: the tokens are kept (a wrong
  project id must not delete every customer's tokens), the channel stops loudly and messages wait.
  See https://firebase.google.com/docs/reference/fcm/rest/v1/ErrorCode.

The OAuth2 access token comes from a service-account file through google-auth's JWT-bearer grant
(``token_uri`` in the file; tests point it at a local server). google-auth is synchronous, so the
refresh runs in a worker thread, once at a time, and only when the token has expired.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Any, Literal

import google.auth.exceptions
import httpx
from google.auth.transport.requests import Request as GoogleAuthRequest
from google.oauth2 import service_account

from omnicart.channels.base import (
    Delivery,
    PermanentChannelError,
    ProviderConfigurationError,
    RenderedMessage,
    RetryableChannelError,
    parse_retry_after,
)
from omnicart.observability import provider_span
from omnicart.security.pseudonym import customer_ref
from omnicart.settings import Settings

log = logging.getLogger(__name__)

FCM_SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
MAX_PAYLOAD_BYTES = 4096
"""FCM's limit on a message's notification and data (https://firebase.google.com/docs/cloud-messaging/concept-options)."""
# FcmError codes meaning "this token will never receive from this project again".
DEAD_TOKEN_CODES = frozenset({"UNREGISTERED"})
# FcmError codes and statuses that mean our project or credentials are wrong, not the device.
CONFIGURATION_CODES = frozenset({"SENDER_ID_MISMATCH", "THIRD_PARTY_AUTH_ERROR"})


class DeadPushTokens(PermanentChannelError):
    """Every device token of the customer is dead: fall back to the next channel, drop the tokens."""

    def __init__(self, message: str, dead_push_tokens: list[str]) -> None:
        super().__init__(message, invalid_address=True, dead_push_tokens=dead_push_tokens)


@dataclass(frozen=True)
class _Outcome:
    """What FCM said about one device token."""

    token: str
    kind: Literal["ok", "dead", "retry", "unauthenticated", "rejected", "configuration"]
    name: str | None = None
    detail: str = ""
    retry_after: float | None = None
    maybe_delivered: bool = False


class FcmPushSender:
    """The ``push`` channel on FCM HTTP v1: one request per device token of the customer."""

    provider = "fcm"

    def __init__(self, settings: Settings, credentials: Any | None = None, *, timeout: float = 10.0) -> None:
        """Configure from settings; ``credentials`` (google-auth credentials) replaces the file.

        The service-account file is read here so that a missing or malformed file fails at worker
        start, naming the setting, rather than at the first push.
        """
        if credentials is None:
            path = settings.fcm_service_account_file
            if path is None:
                raise ValueError("FCM needs OMNICART_FCM_SERVICE_ACCOUNT_FILE (a service-account JSON key file)")
            try:
                credentials = service_account.Credentials.from_service_account_file(  # type: ignore[no-untyped-call]
                    str(path), scopes=[FCM_SCOPE]
                )
            except (OSError, ValueError) as exc:
                raise ValueError(
                    f"OMNICART_FCM_SERVICE_ACCOUNT_FILE={path}: not a usable service account: {exc}"
                ) from exc
        project = settings.fcm_project_id or getattr(credentials, "project_id", None)
        if not project:
            raise ValueError("FCM needs OMNICART_FCM_PROJECT_ID (or project_id in the service-account file)")
        self._credentials = credentials
        self._timeout = timeout
        self._send_url = f"{settings.fcm_base_url.rstrip('/')}/v1/projects/{project}/messages:send"
        self._refresh_lock: asyncio.Lock | None = None

    async def send(self, message: RenderedMessage) -> Delivery:
        """Push to every device token of the message; see the module docstring for the outcome."""
        tokens = list(dict.fromkeys(token for token in message.to if token))
        if not tokens:
            raise PermanentChannelError(f"push message {message.message_id} has no device token", invalid_address=True)
        notification = self.notification_of(message)
        with provider_span(self.provider, "send", message.message_id, message.channel):
            outcomes = await self._push_to(notification, tokens)
        return self._fold(message, outcomes)

    async def _push_to(self, notification: dict[str, Any], tokens: list[str]) -> list[_Outcome]:
        """Every token's outcome, retrying once with a fresh access token the ones FCM did not authenticate."""
        async with httpx.AsyncClient(timeout=self._timeout) as client:
            outcomes = await self._push_all(client, notification, tokens, force_refresh=False)
            stale = [o.token for o in outcomes if o.kind == "unauthenticated"]
            if stale:  # our access token was revoked or expired early: one fresh token, one more try
                retried = {o.token: o for o in await self._push_all(client, notification, stale, True)}
                outcomes = [retried.get(o.token, o) if o.kind == "unauthenticated" else o for o in outcomes]
        return outcomes

    def notification_of(self, message: RenderedMessage) -> dict[str, Any]:
        """The FCM ``message`` object minus the token: what every device of the customer gets."""
        body = message.body if message.body is not None else message.text
        if not message.title or not body:
            raise PermanentChannelError(f"push message {message.message_id} needs a title and a body")
        notification: dict[str, str] = {"title": message.title, "body": body}
        if message.image_url:
            notification["image"] = message.image_url
        # ``data`` values must be strings; the app reports opens back with this message id.
        data = {"message_id": message.message_id, "journey": message.journey, "channel": "push"}
        payload: dict[str, Any] = {"notification": notification, "data": data}
        if message.url:
            data["url"] = message.url
            if message.url.startswith("https://"):  # FCM rejects a web push link that is not HTTPS
                payload["webpush"] = {"fcm_options": {"link": message.url}}
        size = len(json.dumps({"notification": notification, "data": data}, separators=(",", ":")).encode())
        if size > MAX_PAYLOAD_BYTES:  # FCM would refuse it for every device: say why, once
            raise PermanentChannelError(
                f"push message {message.message_id} is {size} bytes; FCM takes at most {MAX_PAYLOAD_BYTES}"
            )
        return payload

    async def _push_all(
        self,
        client: httpx.AsyncClient,
        notification: dict[str, Any],
        tokens: list[str],
        force_refresh: bool,
    ) -> list[_Outcome]:
        access_token = await self._access_token(force_refresh)
        return list(
            await asyncio.gather(*(self._push_one(client, notification, token, access_token) for token in tokens))
        )

    async def _push_one(
        self, client: httpx.AsyncClient, notification: dict[str, Any], token: str, access_token: str
    ) -> _Outcome:
        body = {"message": {**notification, "token": token}}
        try:
            response = await client.post(self._send_url, json=body, headers={"Authorization": f"Bearer {access_token}"})
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            return _Outcome(token, "retry", detail=f"FCM unreachable: {type(exc).__name__}")
        except httpx.TimeoutException as exc:
            return _Outcome(
                token,
                "retry",
                detail=f"FCM did not answer in time: {type(exc).__name__}",
                maybe_delivered=True,
            )
        except httpx.TransportError as exc:
            return _Outcome(token, "retry", detail=f"FCM connection failed: {type(exc).__name__}", maybe_delivered=True)
        if response.status_code == 200:
            try:
                name = response.json().get("name")
            except ValueError:  # accepted; the id is only for our records
                name = None
            return _Outcome(token, "ok", name=str(name) if name else None)
        return classify_fcm_error(token, response)

    def _fold(self, message: RenderedMessage, outcomes: list[_Outcome]) -> Delivery:
        accepted = [o for o in outcomes if o.kind == "ok"]
        dead = [o.token for o in outcomes if o.kind == "dead"]
        transient = [o for o in outcomes if o.kind in ("retry", "unauthenticated")]
        rejected = [o for o in outcomes if o.kind == "rejected"]
        configuration = [o for o in outcomes if o.kind == "configuration"]
        counts = ", ".join(
            f"{len(group)} {label}"
            for label, group in (
                ("accepted", accepted),
                ("dead", dead),
                ("transient", transient),
                ("rejected", rejected),
                ("refused our configuration", configuration),
            )
        )
        if accepted:
            log.info("fcm push %s for customer %s: %s", message.message_id, customer_ref(message.customer_id), counts)
            return Delivery(provider=self.provider, provider_message_id=accepted[0].name, dead_push_tokens=dead)
        log.warning("fcm push %s for customer %s not delivered: %s",
                    message.message_id, customer_ref(message.customer_id), counts)
        if configuration:
            raise ProviderConfigurationError(
                self.provider,
                f"FCM refused push {message.message_id}: {configuration[0].detail} "
                "(check OMNICART_FCM_PROJECT_ID and the service account's permissions)",
            )
        if rejected:
            raise PermanentChannelError(f"FCM rejected push {message.message_id}: {rejected[0].detail}")
        if transient:
            waits = [o.retry_after for o in transient if o.retry_after is not None]
            raise RetryableChannelError(
                f"FCM push {message.message_id} not accepted yet ({counts}): {transient[0].detail}",
                retry_after=max(waits) if waits else None,
                maybe_delivered=any(o.maybe_delivered for o in transient),
            )
        raise DeadPushTokens(f"every device token of push {message.message_id} is dead ({counts})", dead)

    async def _access_token(self, force: bool) -> str:
        """A valid OAuth2 access token, refreshed (in a thread, one refresh at a time) when needed."""
        if self._refresh_lock is None:
            self._refresh_lock = asyncio.Lock()
        async with self._refresh_lock:
            if force or not self._credentials.valid:
                try:
                    await asyncio.to_thread(self._credentials.refresh, _TimedRequest(self._timeout))
                except google.auth.exceptions.TransportError as exc:
                    raise RetryableChannelError(f"FCM token endpoint unreachable: {type(exc).__name__}") from None
                except google.auth.exceptions.RefreshError as exc:
                    if exc.retryable:
                        raise RetryableChannelError(f"FCM access token refresh failed: {exc}") from None
                    raise PermanentChannelError(f"FCM credentials rejected by the token endpoint: {exc}") from None
            token: str = self._credentials.token
            return token


def classify_fcm_error(token: str, response: httpx.Response) -> _Outcome:
    """One FCM error answer (``{"error": {code, message, status, details}}``) for one token."""
    try:
        error = response.json().get("error", {})
    except ValueError:
        error = {}
    status = str(error.get("status", ""))
    text = str(error.get("message", "")) or response.reason_phrase
    codes = {d.get("errorCode") for d in error.get("details", []) if isinstance(d, dict)}
    fields = {
        v.get("field")
        for d in error.get("details", [])
        if isinstance(d, dict)
        for v in d.get("fieldViolations", [])
        if isinstance(v, dict)
    }
    fcm_codes = "/".join(sorted(c for c in codes if c)) or "-"
    detail = f"HTTP {response.status_code} {status or '-'} {fcm_codes}: {text}"
    code = response.status_code
    if codes & CONFIGURATION_CODES or (code == 403 and status == "PERMISSION_DENIED"):
        return _Outcome(token, "configuration", detail=detail)
    if codes & DEAD_TOKEN_CODES:
        return _Outcome(token, "dead", detail=detail)
    if (
        code == 400
        and (status == "INVALID_ARGUMENT" or "INVALID_ARGUMENT" in codes)
        and ("message.token" in fields or "registration token" in text.lower())
    ):
        return _Outcome(token, "dead", detail=detail)
    if code == 429 or code >= 500:
        return _Outcome(
            token, "retry", detail=detail, retry_after=parse_retry_after(response.headers.get("Retry-After"))
        )
    if code == 401:
        return _Outcome(token, "unauthenticated", detail=detail)
    return _Outcome(token, "rejected", detail=detail)


class _TimedRequest(GoogleAuthRequest):
    """google-auth's requests transport with our timeout instead of its 120 s default."""

    def __init__(self, timeout: float) -> None:
        super().__init__()
        self._timeout = timeout

    def __call__(
        self,
        url: Any,
        method: Any = "GET",
        body: Any = None,
        headers: Any = None,
        timeout: Any = None,
        **kwargs: Any,
    ) -> Any:
        chosen = self._timeout if timeout is None else timeout
        return super().__call__(url, method, body, headers, chosen, **kwargs)  # type: ignore[no-untyped-call]
