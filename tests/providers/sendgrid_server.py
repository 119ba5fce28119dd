"""A local SendGrid: ``POST /v3/mail/send`` on 127.0.0.1, as SendGrid documents it.

It checks what the real API checks before it accepts a message (the bearer key, a JSON body, a
sender, at least one personalization with valid ``to`` addresses, a subject and content unless a
template supplies them, text/plain before text/html, string ``custom_args``, at most 10
categories of 7-bit ASCII, no reserved headers, one-click ``List-Unsubscribe-Post`` only with an
HTTPS link) and answers the way SendGrid does: ``202`` with ``X-Message-Id``,
``200`` with no id in sandbox mode, and ``{"errors": [{"message", "field", "help"}]}`` on 4xx. It
records every request so that tests assert on what the SDK really put on the wire, and can be
scripted to answer 400, 403, 429 with ``Retry-After``, 500, or to hang.
"""

from __future__ import annotations

import json
import re
import secrets
from typing import Any

from tests.providers.loopback import Answer, Recorded, ScriptedLoopbackServer, ScriptedReply

__all__ = ["MAIL_SEND", "Recorded", "Reply", "SendGridServer", "tracked_links", "validate_mail"]

MAIL_SEND = "/v3/mail/send"
HELP = "https://docs.sendgrid.com/api-reference/mail-send/errors"
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
RESERVED_HEADERS = frozenset(
    h.lower()
    for h in (
        "x-sg-id",
        "x-sg-eid",
        "received",
        "dkim-signature",
        "Content-Type",
        "Content-Transfer-Encoding",
        "To",
        "From",
        "Subject",
        "Reply-To",
        "CC",
        "BCC",
    )
)


class Reply(ScriptedReply):
    """A scripted answer for the next mail send (``status == 0``: validate and answer normally)."""

    @classmethod
    def error(cls, status: int, message: str, field: str | None = None) -> Reply:
        return cls(status, _errors((message, field)))

    @classmethod
    def forbidden(cls) -> Reply:
        return cls.error(403, "The from address does not match a verified Sender Identity.", "from")

    @classmethod
    def rate_limited(cls, retry_after: str | None = None, reset: int | None = None) -> Reply:
        headers = {"X-RateLimit-Limit": "600", "X-RateLimit-Remaining": "0"}
        if retry_after is not None:
            headers["Retry-After"] = retry_after
        if reset is not None:
            headers["X-RateLimit-Reset"] = str(reset)
        return cls(429, _errors(("too many requests", None)), headers)

    @classmethod
    def server_error(cls, status: int = 500) -> Reply:
        return cls(status, _errors(("Internal server error", None)))


def _errors(*errors: tuple[str, str | None]) -> dict[str, Any]:
    return {"errors": [{"message": message, "field": field, "help": HELP} for message, field in errors]}


class SendGridServer(ScriptedLoopbackServer[Reply]):
    """Start with ``with SendGridServer(api_key) as sendgrid:``; ``sendgrid.url`` is the SDK's host.

    ``script`` answers the next mail sends; a scripted hang then accepts the message anyway.
    """

    def __init__(self, api_key: str) -> None:
        super().__init__("fake-sendgrid")
        self.api_key = api_key
        self.accepted: list[tuple[str | None, dict[str, Any]]] = []  # (X-Message-Id, body)

    def mail_sends(self) -> list[Recorded]:
        """Every mail send request received, whatever it was answered."""
        return [r for r in self.requests if r.method == "POST" and r.path == MAIL_SEND]

    def _answer(self, request: Recorded) -> Answer:
        if request.header("Authorization") != f"Bearer {self.api_key}":
            return 401, _errors(("The provided authorization grant is invalid, expired, or revoked", None)), {}
        if request.path != MAIL_SEND:
            return 404, _errors(("resource not found", None)), {}
        if request.method != "POST":
            return 405, _errors(("method not allowed", None)), {}
        reply = self._next_reply(Reply())
        if reply.status:
            return reply.status, reply.body, reply.headers
        if not (request.header("Content-Type") or "").startswith("application/json"):
            return 415, _errors(("Content-Type should be application/json.", None)), {}
        try:
            body = request.json
        except ValueError:
            return 400, _errors(("Bad Request", None)), {}
        problems = validate_mail(body) if isinstance(body, dict) else [("Bad Request", None)]
        if problems:
            return 400, _errors(*problems), {}
        if body.get("mail_settings", {}).get("sandbox_mode", {}).get("enable"):
            with self._lock:
                self.accepted.append((None, body))
            return 200, None, {}
        message_id = secrets.token_urlsafe(16)
        with self._lock:
            self.accepted.append((message_id, body))
        return 202, None, {"X-Message-Id": message_id}


def validate_mail(body: dict[str, Any]) -> list[tuple[str, str | None]]:
    """The request checks of the v3 Mail Send API (the subset a message of ours can trip)."""
    problems: list[tuple[str, str | None]] = []
    sender = body.get("from")
    if not isinstance(sender, dict) or not EMAIL.match(str(sender.get("email", ""))):
        problems.append(("The from email does not contain a valid address.", "from.email"))
    personalizations = body.get("personalizations")
    if not isinstance(personalizations, list) or not personalizations:
        problems.append(("You must have at least one personalization.", "personalizations"))
        personalizations = []
    elif len(personalizations) > 1000:
        problems.append(("The personalization block is limited to 1000 personalizations per API request.", None))
    templated = isinstance(body.get("template_id"), str) and bool(body["template_id"])
    for p, personalization in enumerate(personalizations):
        to = personalization.get("to") if isinstance(personalization, dict) else None
        if not isinstance(to, list) or not to:
            problems.append(("The to array is required for all personalization objects.", f"personalizations.{p}.to"))
            continue
        for t, recipient in enumerate(to):
            if not isinstance(recipient, dict) or not EMAIL.match(str(recipient.get("email", ""))):
                problems.append(("Does not contain a valid address.", f"personalizations.{p}.to.{t}.email"))
        if "dynamic_template_data" in personalization and not str(body.get("template_id", "")).startswith("d-"):
            problems.append(("dynamic_template_data requires a dynamic template id (d-...).", "template_id"))
    has_subject = isinstance(body.get("subject"), str) and bool(body["subject"])
    every_personalization_subject = bool(personalizations) and all(
        isinstance(p, dict) and p.get("subject") for p in personalizations
    )
    if not (has_subject or templated or every_personalization_subject):
        problems.append(
            (
                "The subject is required. You can get around this requirement if you use a template with a "
                "subject defined or if every personalization has a subject defined.",
                "subject",
            )
        )
    content = body.get("content")
    if content is None and not templated:
        problems.append(("Unless a valid template_id is provided, the content parameter is required.", "content"))
    for c, part in enumerate(content or []):
        value = part.get("value") if isinstance(part, dict) else None
        if not isinstance(value, str) or not value:
            problems.append(
                ("The content value must be a string at least one character in length.", f"content.{c}.value")
            )
        if isinstance(part, dict) and part.get("type") == "text/plain" and c != 0:
            problems.append(
                (
                    "If present, text/plain must be first, followed by text/html, followed by any other content.",
                    f"content.{c}.type",
                )
            )
    custom_args = body.get("custom_args", {})
    if not isinstance(custom_args, dict) or not all(isinstance(v, str) for v in custom_args.values()):
        problems.append(("Custom args values must be strings.", "custom_args"))
    elif len(json.dumps(custom_args)) > 10_000:
        problems.append(("The custom_args may not exceed 10,000 bytes.", "custom_args"))
    categories = body.get("categories", [])
    if not isinstance(categories, list) or len(categories) > 10:
        problems.append(("You may not have more than 10 categories per request.", "categories"))
    elif not all(isinstance(c, str) and 0 < len(c) <= 255 for c in categories):
        problems.append(("Each category must be a string of 1 to 255 characters.", "categories"))
    elif not all(c.isascii() for c in categories):
        problems.append(("Categories must be 7-bit ASCII.", "categories"))
    headers = body.get("headers", {})
    if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
        problems.append(("Headers must be a collection of string key/value pairs.", "headers"))
    elif any(name.lower() in RESERVED_HEADERS for name in headers):
        problems.append(("This header is reserved and may not be set.", "headers"))
    elif "List-Unsubscribe-Post" in headers and not _https_only(headers.get("List-Unsubscribe", "")):
        # RFC 8058 section 3.1, which mailbox providers enforce: one-click needs an HTTPS URI.
        problems.append(("List-Unsubscribe-Post requires an https List-Unsubscribe URI (RFC 8058).", "headers"))
    return problems


def _https_only(list_unsubscribe: str) -> bool:
    uris = [part.strip().strip("<>") for part in list_unsubscribe.split(",") if part.strip()]
    return any(uri.startswith("https://") for uri in uris)


_ANCHOR = re.compile(r"<a\b[^>]*>", re.IGNORECASE)
_HREF = re.compile(r"""href\s*=\s*["']([^"']*)["']""", re.IGNORECASE)


def tracked_links(html: str) -> list[str]:
    """The links SendGrid's click tracking would rewrite: every anchor without ``clicktrack="off"``."""
    links = []
    for tag in _ANCHOR.findall(html):
        href = _HREF.search(tag)
        if href and not re.search(r"""clicktrack\s*=\s*["']off["']""", tag, re.IGNORECASE):
            links.append(href.group(1).replace("&amp;", "&"))
    return links
