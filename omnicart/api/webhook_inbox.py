"""Provider webhooks are stored before they are applied, so an outage of Temporal loses none of them.

Providers do not retry the way a producer of ours does: Twilio retries a webhook only when the
connection fails (and its connection overrides cap the whole exchange at 15 s), so a delivery
report or a ``STOP`` answered ``503`` while Temporal is down is simply gone
(https://www.twilio.com/docs/usage/webhooks/webhooks-connection-overrides). SendGrid retries for
24 hours, but a long outage outlasts that too. So every provider webhook, once its signature is
verified, is written to the ``webhook_inbox`` table first and answered ``200``; applying it (ledger
evidence, events to the customers' workflows) happens at once when it can, and otherwise later,
by :class:`InboxDrainer`, a background task of the API process that retries with backoff.

Applying is idempotent: the events a webhook becomes carry ids derived from the provider's own ids
(``sg_event_id``, ``MessageSid``), which the ingest side forwards once, and the ledger's evidence
and the analytics outcomes are keyed the same way. A row applied twice (a crash between applying
and marking it) therefore changes nothing the second time.

The stored body is the verified request as it came (it holds phone numbers and email addresses);
nothing of it is logged, only the row id and the provider, and it is emptied as soon as the request
is applied: an applied row keeps only its provider, kind and times.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fastapi import HTTPException, Request
from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    insert,
    select,
    update,
)

from omnicart.api.ingest import ForwardingFailed
from omnicart.storage import metadata, utc

log = logging.getLogger(__name__)

webhook_inbox = Table(
    "webhook_inbox",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("provider", String(32), nullable=False, comment="sendgrid or twilio"),
    Column("kind", String(32), nullable=False, comment="Which webhook: which applier reads the body."),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("query", Text, nullable=False, comment="The URL's query string (Twilio's status callback carries ours)."),
    Column("body", LargeBinary, nullable=False, comment="The verified request body; emptied once applied."),
    Column("applied_at", DateTime(timezone=True), comment="When it reached the journeys; NULL while pending."),
    Column("attempts", Integer, nullable=False, default=0),
    Column("last_error", Text, comment="The last failure to apply it (no personal data)."),
    Index("ix_webhook_inbox_pending", "applied_at", "id"),
)


class TemporalNotReady(Exception):
    """The API process has no Temporal connection yet: stored requests wait for it."""


@dataclass(frozen=True)
class InboxItem:
    """One stored webhook request."""

    id: int
    provider: str
    kind: str
    received_at: datetime
    query: str
    body: bytes
    attempts: int


Applier = Callable[[Any, InboxItem], Awaitable[Any]]
"""Applies one stored request, given the app's ``state``; raises when it must be tried again."""

_APPLIERS: dict[str, Applier] = {}


def applier(kind: str) -> Callable[[Applier], Applier]:
    """Register the function that applies stored requests of ``kind`` (one per webhook route)."""

    def register(function: Applier) -> Applier:
        _APPLIERS[kind] = function
        return function

    return register


class WebhookInbox:
    """The ``webhook_inbox`` table: record, list pending, mark applied or failed."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def record(self, provider: str, kind: str, query: str, body: bytes) -> InboxItem:
        received_at = datetime.now(UTC)
        with self.engine.begin() as connection:
            result = connection.execute(
                insert(webhook_inbox).values(
                    provider=provider, kind=kind, received_at=received_at, query=query, body=body, attempts=0
                )
            )
            row_id = int(result.inserted_primary_key[0])  # type: ignore[index]
        return InboxItem(row_id, provider, kind, received_at, query, body, 0)

    def pending(self, limit: int = 100) -> list[InboxItem]:
        """Requests not applied yet, oldest first (one customer's reports keep their order)."""
        query = (
            select(webhook_inbox)
            .where(webhook_inbox.c.applied_at.is_(None))
            .order_by(webhook_inbox.c.id)
            .limit(limit)
        )
        with self.engine.connect() as connection:
            rows = connection.execute(query).all()
        return [
            InboxItem(row.id, row.provider, row.kind, utc(row.received_at), row.query, row.body, row.attempts)
            for row in rows
        ]

    def mark_applied(self, item_id: int) -> None:
        with self.engine.begin() as connection:
            connection.execute(
                update(webhook_inbox)
                .where(webhook_inbox.c.id == item_id)
                .values(applied_at=datetime.now(UTC), last_error=None, body=b"")  # personal data: not kept
            )

    def mark_failed(self, item_id: int, error: str) -> None:
        with self.engine.begin() as connection:
            connection.execute(
                update(webhook_inbox)
                .where(webhook_inbox.c.id == item_id)
                .values(attempts=webhook_inbox.c.attempts + 1, last_error=error[:500])
            )


async def apply_item(state: Any, inbox: WebhookInbox, item: InboxItem) -> tuple[bool, Any]:
    """Apply one stored request: ``(True, result)``, or ``(False, None)`` when it must wait."""
    function = _APPLIERS[item.kind]
    try:
        result = await function(state, item)
    except Exception as exc:  # Temporal down, database busy: the drainer tries again
        reason = _reason(exc)
        await asyncio.to_thread(inbox.mark_failed, item.id, reason)
        log.warning("%s webhook #%d stored, not applied yet: %s", item.provider, item.id, reason)
        return False, None
    await asyncio.to_thread(inbox.mark_applied, item.id)
    return True, result


async def receive(state: Any, provider: str, kind: str, query: str, body: bytes) -> tuple[bool, Any]:
    """Store a verified request, then try to apply it at once (see :func:`apply_item`)."""
    inbox = inbox_of(state)
    item = await asyncio.to_thread(inbox.record, provider, kind, query, body)
    return await apply_item(state, inbox, item)


def inbox_of(state: Any) -> WebhookInbox:
    """The app's inbox, on the engine its message ledger uses (the product database)."""
    inbox: WebhookInbox | None = getattr(state, "webhook_inbox", None)
    if inbox is None:
        inbox = WebhookInbox(state.ledger.engine)
        state.webhook_inbox = inbox
    return inbox


class InboxDrainer:
    """Applies stored webhooks that could not be applied when they came, until each one is.

    One per API process. It waits ``min_delay`` between passes while everything is applied, and
    doubles the wait (up to ``max_delay``) while a pass leaves something pending, so an outage
    costs a few queries a minute rather than a storm of them. Rows are applied in the order they
    were received; two API processes draining the same row apply it twice, which is harmless
    (see the module docstring).
    """

    def __init__(self, state: Any, *, min_delay: float = 1.0, max_delay: float = 60.0) -> None:
        self.state = state
        self.min_delay = min_delay
        self.max_delay = max_delay

    async def drain_once(self) -> int:
        """One pass: apply what is pending, oldest first; stop at the first that must wait."""
        inbox = inbox_of(self.state)
        applied = 0
        for item in await asyncio.to_thread(inbox.pending):
            done, _ = await apply_item(self.state, inbox, item)
            if not done:
                break
            applied += 1
        if applied:
            log.info("applied %d stored webhook request(s)", applied)
        return applied

    async def run(self, stop: asyncio.Event) -> None:
        delay = self.min_delay
        while not stop.is_set():
            try:
                await self.drain_once()
                left = await asyncio.to_thread(inbox_of(self.state).pending, 1)
            except Exception as exc:  # the database itself is down: try again later
                log.warning("webhook inbox drain failed: %s", _reason(exc))
                left = [None]  # type: ignore[list-item]
            delay = min(delay * 2, self.max_delay) if left else self.min_delay
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=delay)


async def read_body(request: Request, limit: int) -> bytes:
    """A webhook's body, refused with 413 as soon as it passes ``limit`` bytes (before verification)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HTTPException(status_code=413, detail=f"the body is over {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise HTTPException(status_code=413, detail=f"the body is over {limit} bytes")
    return bytes(body)


def _reason(exc: BaseException) -> str:
    """Why applying failed, for the log and ``last_error``: our own texts only, which hold no personal
    data; another error's text could quote a workflow id (a customer id may be an email address)."""
    if isinstance(exc, TemporalNotReady | ForwardingFailed):
        return f"{type(exc).__name__}: {exc}"[:300]
    return type(exc).__name__
