"""The message ledger: what makes "a message id is sent at most once" hold across retries and crashes.

A send is keyed by ``message_id``, which the journey derives from (customer, run, step, visit) and
never from an attempt, so every retry of one send finds the same row. The send activity writes the
row *before* it calls the provider (``sending``) and again *after* (``sent`` with the provider's id,
``failed`` with the error, or ``deferred`` when the provider said "not now" and surely kept nothing).

States::

    (none) ──claim──▶ sending ──▶ sent            provider accepted
                         │   └──▶ failed          permanent: the journey uses its fallback
                         │   └──▶ deferred ──claim──▶ sending   429/5xx/connection refused: send again
                         │   └──▶ skipped         chose not to go out (what it advertises sold out)
                         └─(retry finds it)──▶ in doubt, resolved below

**The in-doubt case.** A retry that finds ``sending`` means an earlier attempt died (worker killed,
DB unreachable, read timeout) after it may have handed the message to the provider. It is resolved,
in this order, without ever sending twice:

1. *Evidence*: any provider event already recorded for the message id (``record_event``: SendGrid's
   ``processed``/``delivered``/..., Twilio's status callbacks) proves the provider accepted it ->
   ``sent``. ``record_event`` does this itself the moment the webhook arrives, also for ``deferred``
   rows (a 5xx that the provider in fact accepted).
2. *Patience*: an attempt claimed less than the activity's start-to-close timeout ago may still be
   running (Temporal starts a new attempt when an old one times out, not when it stops), so the
   retry is rescheduled until then. That also gives a webhook time to bring evidence.
3. *Lookup*: a sender that implements ``lookup`` (``omnicart.channels.base.SupportsLookup``) asks
   the provider. Found -> ``sent``; the provider is sure it never had it -> ``reclaim`` and send.
4. Otherwise it is marked ``unconfirmed`` and **not** sent again: the journey gets
   ``already_sent`` and carries on. We choose at-most-once over at-least-once because a duplicate
   marketing message is worse for the customer and the shop than a missing reminder.

**The remaining window, per provider.** Only a crash (or read timeout) *between* committing
``sending`` and the provider's answer can leave a row in doubt; it is never longer than the
sender's HTTP timeout (20 s for SendGrid), which is kept below the activity's start-to-close
timeout so that a live attempt always records its own outcome before Temporal starts another.

* outbox: ``lookup`` reads the outbox file -> exactly once.
* SendGrid: no idempotency key on mail send and no free lookup API. At most once; a crash inside
  the window loses that one message only if SendGrid never accepted it (then no webhook comes and
  it stays ``unconfirmed``). If it was accepted, the Event Webhook's ``processed`` event turns the
  row into ``sent``.
* Twilio SMS / FCM push: exactly once when their senders implement ``lookup``; otherwise at most
  once, exactly as SendGrid (Twilio status callbacks are the evidence).

Operators find lost-in-the-window messages with ``status = 'unconfirmed'``.

Recipients (email addresses, phone numbers, push tokens) are stored here, and only here, so that an
inbound SMS "STOP" from a number can be mapped back to a customer; they are never logged, and
``LedgerEntry`` keeps them out of its ``repr``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Engine,
    Index,
    Integer,
    Row,
    String,
    Table,
    Text,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from omnicart.messages import SendRequest
from omnicart.storage import metadata, utc

message_ledger = Table(
    "message_ledger",
    metadata,
    Column("message_id", String(200), primary_key=True),
    Column("customer_id", String(200), nullable=False, index=True),
    Column("journey", String(200), nullable=False),
    Column("run_id", String(200), nullable=False),
    Column("step_id", String(200), nullable=False),
    Column("channel", String(10), nullable=False),
    Column("template", String(200), nullable=False),
    Column("provider", String(50), nullable=False),
    Column("status", String(20), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("provider_message_id", String(300)),
    Column("error", Text),
    Column("revoke_consent", Boolean, nullable=False, default=False),
    Column("invalid_address", Boolean, nullable=False, default=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("claimed_at", DateTime(timezone=True), nullable=False),
    Column("sent_at", DateTime(timezone=True)),
)

message_recipients = Table(
    "message_recipients",
    metadata,
    Column("message_id", String(200), primary_key=True),
    Column("recipient", String(500), primary_key=True),
    Column("channel", String(10), nullable=False),
    Column("customer_id", String(200), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index("ix_message_recipients_lookup", "channel", "recipient", "created_at"),
)

message_evidence = Table(
    "message_evidence",
    metadata,
    Column("message_id", String(200), primary_key=True),
    Column("kind", String(50), primary_key=True),
    Column("first_at", DateTime(timezone=True), nullable=False),
)


class LedgerStatus(StrEnum):
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    DEFERRED = "deferred"
    UNCONFIRMED = "unconfirmed"
    SKIPPED = "skipped"


# A provider event for a row in one of these states proves the provider accepted the message.
_CONFIRMABLE = (LedgerStatus.SENDING, LedgerStatus.DEFERRED, LedgerStatus.UNCONFIRMED)


@dataclass(frozen=True)
class LedgerEntry:
    """One message as the ledger knows it. ``recipients`` is personal data: kept out of ``repr``."""

    message_id: str
    customer_id: str
    journey: str
    run_id: str
    step_id: str
    channel: str
    template: str
    provider: str
    status: LedgerStatus
    attempts: int
    provider_message_id: str | None
    error: str | None
    revoke_consent: bool
    invalid_address: bool
    created_at: datetime
    updated_at: datetime
    claimed_at: datetime  # when the latest attempt took the send: how long it may still be running
    sent_at: datetime | None
    evidence: tuple[str, ...] = ()
    recipients: tuple[str, ...] = field(default=(), repr=False)


class ClaimState(StrEnum):
    SEND = "send"  # this attempt owns the send: call the provider
    DONE = "done"  # sent, failed or unconfirmed before: report that, send nothing
    IN_DOUBT = "in_doubt"  # an earlier attempt died mid-call: resolve before sending


@dataclass(frozen=True)
class Claim:
    state: ClaimState
    entry: LedgerEntry


def _now() -> datetime:
    return datetime.now(UTC)


def normalize_recipient(channel: str, recipient: str) -> str:
    """Email addresses compare case-insensitively; phone numbers and tokens exactly."""
    recipient = recipient.strip()
    return recipient.lower() if channel == "email" else recipient


class MessageLedger:
    """Never-twice bookkeeping for sends, on SQLAlchemy Core (SQLite by default, any URL in production)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # -- reading -----------------------------------------------------------------------------

    def find(self, message_id: str) -> LedgerEntry | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(message_ledger).where(message_ledger.c.message_id == message_id)).first()
            if row is None:
                return None
            evidence = conn.execute(
                select(message_evidence.c.kind)
                .where(message_evidence.c.message_id == message_id)
                .order_by(message_evidence.c.first_at)
            ).scalars()
            recipients = conn.execute(
                select(message_recipients.c.recipient).where(message_recipients.c.message_id == message_id)
            ).scalars()
            return _entry(row, tuple(evidence), tuple(recipients))

    def find_customer_by_recipient(self, channel: str, recipient: str) -> str | None:
        """The customer we most recently messaged at this address on this channel."""
        customers = self.find_customers_by_recipient(channel, recipient)
        return customers[0] if customers else None

    def find_customers_by_recipient(self, channel: str, recipient: str) -> list[str]:
        """Every customer we messaged at this address, most recent first.

        A phone can be shared (a family, a shop's landline): an SMS STOP from it must reach
        everyone we text at that number, not only the last one.
        """
        return list(self.last_messages_to(channel, recipient))

    def last_messages_to(self, channel: str, recipient: str) -> dict[str, str]:
        """Each customer we messaged at this address, most recent first, with the last message they
        were sent there: what an SMS STOP reply (which names no message) is an answer to."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(message_recipients.c.customer_id, message_recipients.c.message_id)
                .where(
                    message_recipients.c.channel == channel,
                    message_recipients.c.recipient == normalize_recipient(channel, recipient),
                )
                .order_by(message_recipients.c.created_at.desc())
            ).all()
        last: dict[str, str] = {}
        for row in rows:
            last.setdefault(row.customer_id, row.message_id)
        return last

    def with_status(self, status: LedgerStatus, limit: int = 100) -> list[LedgerEntry]:
        """Rows in one state, oldest first: what an operator reviews (e.g. ``unconfirmed``)."""
        with self.engine.connect() as conn:
            ids = conn.execute(
                select(message_ledger.c.message_id)
                .where(message_ledger.c.status == status)
                .order_by(message_ledger.c.updated_at)
                .limit(limit)
            ).scalars()
            wanted = list(ids)
        return [entry for entry in (self.find(message_id) for message_id in wanted) if entry is not None]

    # -- the send protocol -------------------------------------------------------------------

    def claim(self, request: SendRequest, provider: str) -> Claim:
        """Take the right to call the provider for this message, or learn why not.

        Atomic against a concurrent attempt of the same send (a timed-out attempt still running on
        another worker): exactly one of them gets ``SEND``.
        """
        now = _now()
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    message_ledger.insert().values(
                        message_id=request.message_id,
                        customer_id=request.customer_id,
                        journey=request.journey,
                        run_id=request.run_id,
                        step_id=request.step_id,
                        channel=request.channel,
                        template=request.template_name,
                        provider=provider,
                        status=LedgerStatus.SENDING,
                        attempts=1,
                        created_at=now,
                        updated_at=now,
                        claimed_at=now,
                    )
                )
                recipients = {normalize_recipient(request.channel, to) for to in request.to}
                if recipients:
                    conn.execute(
                        message_recipients.insert(),
                        [
                            {
                                "message_id": request.message_id,
                                "recipient": recipient,
                                "channel": request.channel,
                                "customer_id": request.customer_id,
                                "created_at": now,
                            }
                            for recipient in sorted(recipients)
                        ],
                    )
        except IntegrityError:
            pass  # an earlier attempt wrote the row: decide from its state below
        else:
            return Claim(ClaimState.SEND, self._get(request.message_id))

        while True:
            entry = self._get(request.message_id)
            if entry.status == LedgerStatus.SENDING:
                return Claim(ClaimState.IN_DOUBT, entry)
            if entry.status != LedgerStatus.DEFERRED:
                return Claim(ClaimState.DONE, entry)
            if self._advance(entry, provider):
                return Claim(ClaimState.SEND, self._get(request.message_id))
            # Another attempt moved the row between our read and our write: look again.

    def reclaim(self, entry: LedgerEntry, provider: str) -> bool:
        """After ``lookup`` proved the provider never had an in-doubt message: take it to send again."""
        return self._advance(entry, provider)

    def mark_sent(self, message_id: str, provider: str, provider_message_id: str | None) -> None:
        self._set(
            message_id,
            (LedgerStatus.SENDING, LedgerStatus.UNCONFIRMED, LedgerStatus.SENT),
            status=LedgerStatus.SENT,
            provider=provider,
            provider_message_id=provider_message_id,
            error=None,
            sent_at=_now(),
        )

    def mark_failed(
        self, message_id: str, error: str, *, revoke_consent: bool = False, invalid_address: bool = False
    ) -> None:
        self._set(
            message_id,
            (LedgerStatus.SENDING,),
            status=LedgerStatus.FAILED,
            error=error,
            revoke_consent=revoke_consent,
            invalid_address=invalid_address,
        )

    def mark_skipped(self, message_id: str, reason: str) -> None:
        """Settled without a provider call (e.g. ``out_of_stock``): a retry reports the skip again."""
        self._set(message_id, (LedgerStatus.SENDING,), status=LedgerStatus.SKIPPED, error=reason)

    def mark_deferred(self, message_id: str, error: str) -> None:
        """The provider surely did not keep the message (429, 5xx, no connection): free to send again."""
        self._set(message_id, (LedgerStatus.SENDING,), status=LedgerStatus.DEFERRED, error=error)

    def mark_in_doubt(self, message_id: str, error: str) -> None:
        """Keep ``sending`` (the provider may have it) but remember why the attempt ended."""
        self._set(message_id, (LedgerStatus.SENDING,), status=LedgerStatus.SENDING, error=error)

    def mark_unconfirmed(self, message_id: str, reason: str) -> None:
        self._set(message_id, (LedgerStatus.SENDING,), status=LedgerStatus.UNCONFIRMED, error=reason)

    def record_event(self, message_id: str, kind: str) -> bool:
        """Delivery or engagement evidence from a provider webhook (e.g. ``delivered``).

        Returns False for a message id the ledger does not know (the caller logs it; not an error).
        Any evidence proves the provider accepted the message, so an in-doubt, deferred or
        unconfirmed row becomes ``sent``. Recording the same kind twice changes nothing.
        """
        if self._find_row(message_id) is None:
            return False
        now = _now()
        try:
            with self.engine.begin() as conn:
                conn.execute(message_evidence.insert().values(message_id=message_id, kind=kind, first_at=now))
        except IntegrityError:
            return True  # this kind was recorded before: a replay
        self._set(message_id, _CONFIRMABLE, status=LedgerStatus.SENT, error=None, sent_at=now)
        return True

    # -- internals ---------------------------------------------------------------------------

    def _find_row(self, message_id: str) -> Row[Any] | None:
        with self.engine.connect() as conn:
            return conn.execute(
                select(message_ledger.c.status).where(message_ledger.c.message_id == message_id)
            ).first()

    def _get(self, message_id: str) -> LedgerEntry:
        entry = self.find(message_id)
        if entry is None:
            raise LookupError(f"message {message_id!r} is not in the ledger")
        return entry

    def _advance(self, entry: LedgerEntry, provider: str) -> bool:
        """Compare-and-set to a new ``sending`` attempt: only one concurrent caller wins."""
        now = _now()
        with self.engine.begin() as conn:
            result = conn.execute(
                update(message_ledger)
                .where(
                    message_ledger.c.message_id == entry.message_id,
                    message_ledger.c.status == entry.status,
                    message_ledger.c.attempts == entry.attempts,
                )
                .values(
                    status=LedgerStatus.SENDING,
                    attempts=entry.attempts + 1,
                    provider=provider,
                    updated_at=now,
                    claimed_at=now,
                )
            )
            return result.rowcount == 1

    def _set(self, message_id: str, allowed_from: Sequence[LedgerStatus], **values: Any) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                update(message_ledger)
                .where(
                    message_ledger.c.message_id == message_id,
                    message_ledger.c.status.in_([str(status) for status in allowed_from]),
                )
                .values(updated_at=_now(), **values)
            )


def _entry(row: Row[Any], evidence: tuple[str, ...], recipients: tuple[str, ...]) -> LedgerEntry:
    return LedgerEntry(
        message_id=row.message_id,
        customer_id=row.customer_id,
        journey=row.journey,
        run_id=row.run_id,
        step_id=row.step_id,
        channel=row.channel,
        template=row.template,
        provider=row.provider,
        status=LedgerStatus(row.status),
        attempts=row.attempts,
        provider_message_id=row.provider_message_id,
        error=row.error,
        revoke_consent=bool(row.revoke_consent),
        invalid_address=bool(row.invalid_address),
        created_at=utc(row.created_at),
        updated_at=utc(row.updated_at),
        claimed_at=utc(row.claimed_at),
        sent_at=None if row.sent_at is None else utc(row.sent_at),
        evidence=evidence,
        recipients=recipients,
    )
