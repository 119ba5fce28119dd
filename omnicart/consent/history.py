"""The consent history: every consent change, where it came from, when, and its evidence.

The customer's workflow decides whether a message may go (``profile.consent``, last-writer-wins by
event time); this append-only table is the *record* a regulator, or a registry such as Turkey's
İYS, asks for: who agreed to what, on which channel or topic, through which form, keyword or
provider event, proven by what. It is written by the ingest API for every consent event it
forwards (``POST /v1/events``, the provider webhooks, unsubscribe links and the preference centre
all come through ``omnicart.api.ingest.Ingest``), so nothing that changes consent escapes it.

Rows are keyed by the customer's *reference* (``omnicart.security.pseudonym.customer_ref``), like
the profile projection, so an id that is an email is stored only as its keyed hash. The plain
address a change was about (``recipient``) is copied from the projection for the registry's sake and
cleared by retention like every other plain address; ``omnicart forget`` deletes the rows.

Writing is idempotent (one row per event id and subject: a retried request adds nothing) and never
fails ingest (``omnicart.api.ingest`` logs a failure and goes on).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field, SecretStr
from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Connection,
    DateTime,
    Engine,
    Index,
    Integer,
    String,
    Table,
    UniqueConstraint,
    delete,
    select,
    update,
)

from omnicart import limits
from omnicart.consent.provenance import CONSENT_SOURCES, DEFAULT_SOURCE
from omnicart.customers.profiles import customer_profiles
from omnicart.engine.interpreter import topic_consent_key
from omnicart.events import Event
from omnicart.security.pseudonym import customer_ref
from omnicart.storage import insert_ignoring_existing, metadata, utc

TOPIC_PREFIX = topic_consent_key("")

consent_history = Table(
    "consent_history",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("customer_ref", String(200), nullable=False, comment="The id, or its keyed hash if personal."),
    Column("event_id", String(200), nullable=False, comment="The event that stated the change."),
    Column("subject", String(80), nullable=False, comment="A channel (email, sms, push) or topic:<name>."),
    Column("granted", Boolean, nullable=False),
    Column("source", String(32), nullable=False, comment="Where it came from: form, sms_keyword, ..."),
    Column("producer", String(16), nullable=False, comment="The envelope's source: web, email, sms, ..."),
    Column("evidence", JSON, nullable=False, comment="The event's evidence (form URL and text, IP, SID, ...)."),
    Column("recipient", String(limits.MAX_EMAIL_CHARS), nullable=True, comment="Plain address; cleared by retention."),
    Column("occurred_at", DateTime(timezone=True), nullable=False, comment="When it happened (event time)."),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("event_id", "subject", name="uq_consent_history_event_subject"),
    Index("ix_consent_history_customer", "customer_ref", "occurred_at"),
)


class ConsentChange(BaseModel):
    """One row of a customer's consent history, as exported."""

    channel: str | None = Field(default=None, description="The channel the change is about, or null for a topic.")
    topic: str | None = Field(default=None, description="The topic the change is about, or null for a channel.")
    granted: bool
    occurred_at: datetime = Field(description="When the customer made the change (the event's time).")
    recorded_at: datetime = Field(description="When omnicart recorded it.")
    source: str = Field(description="form, checkout, sms_keyword, email_unsubscribe, preference_centre, ...")
    producer: str = Field(description="The system that sent the event (the envelope's source).")
    evidence: dict[str, Any] = Field(description="What proves it: form URL and text, IP, message SID, ...")
    recipient: str | None = Field(default=None, description="The address it was about (null past retention).")
    event_id: str


class ConsentExport(BaseModel):
    """A customer's consent history, oldest first, and where each channel and topic stands now."""

    customer_id: str
    exported_at: datetime
    current: dict[str, ConsentChange] = Field(
        description="The latest change (by event time) per channel, and per topic as topic:<name>."
    )
    history: list[ConsentChange]


def changes_in(event: Event) -> Iterator[tuple[str, bool]]:
    """The (subject, granted) pairs an event states: a channel, or ``topic:<name>``."""
    props = event.properties
    if event.type == "consent_changed":
        topic, channel = props.get("topic"), props.get("channel")
        subject = topic_consent_key(str(topic)) if topic else str(channel) if channel else None
        if subject is not None and isinstance(props.get("granted"), bool):
            yield subject, props["granted"]
    elif event.type == "customer_updated" and isinstance(props.get("consent"), dict):
        for channel, granted in props["consent"].items():
            if isinstance(granted, bool):
                yield str(channel), granted


class ConsentHistory:
    """Appends consent changes; shared by every request of one API process."""

    def __init__(self, engine: Engine, secret: SecretStr) -> None:
        self.engine = engine
        self.secret = secret

    def record(self, events: Sequence[Event], now: datetime | None = None) -> None:
        """Append the consent changes ``events`` state, in one transaction (repeats add nothing)."""
        now = now or datetime.now(UTC)
        drafts = [(customer_ref(event.customer_id, self.secret), event, change)
                  for event in events for change in changes_in(event)]
        if not drafts:
            return
        with self.engine.begin() as connection:
            contacts = _contacts(connection, {ref for ref, _, _ in drafts})
            rows = [_row(ref, event, subject, granted, contacts.get(ref, {}), now)
                    for ref, event, (subject, granted) in drafts]
            connection.execute(insert_ignoring_existing(connection, consent_history, "event_id", "subject"), rows)

    def export(self, customer_id: str, now: datetime | None = None) -> ConsentExport:
        """The customer's whole history, oldest first, and the latest change per subject."""
        query = (
            select(consent_history)
            .where(consent_history.c.customer_ref == customer_ref(customer_id, self.secret))
            .order_by(consent_history.c.occurred_at, consent_history.c.id)
        )
        with self.engine.connect() as connection:
            rows = connection.execute(query).all()
        history = [_change(row._mapping) for row in rows]
        current: dict[str, ConsentChange] = {}
        for change in history:  # oldest first: the last one per subject wins, as in the workflow
            current[topic_consent_key(change.topic) if change.topic else str(change.channel)] = change
        return ConsentExport(
            customer_id=customer_id, exported_at=now or datetime.now(UTC), current=current, history=history
        )


def _contacts(connection: Connection, refs: set[str]) -> dict[str, dict[str, str | None]]:
    """Each customer's plain email and phone as the projection holds them (written just before)."""
    query = select(customer_profiles.c.customer_ref, customer_profiles.c.email, customer_profiles.c.phone).where(
        customer_profiles.c.customer_ref.in_(sorted(refs))
    )
    return {row.customer_ref: {"email": row.email, "sms": row.phone, "whatsapp": row.phone}
            for row in connection.execute(query)}


def _row(
    ref: str, event: Event, subject: str, granted: bool, contacts: dict[str, str | None], now: datetime
) -> dict[str, Any]:
    props = event.properties
    # customer_updated names them consent_*: a profile's plain "source" would read as where the customer came from.
    prefix = "" if event.type == "consent_changed" else "consent_"
    source = props.get(f"{prefix}source")
    evidence = props.get(f"{prefix}evidence")
    return {
        "customer_ref": ref,
        "event_id": event.id,
        "subject": subject,
        "granted": granted,
        "source": source if source in CONSENT_SOURCES else DEFAULT_SOURCE,
        "producer": event.source,
        "evidence": dict(evidence) if isinstance(evidence, dict) else {},
        "recipient": contacts.get(subject),
        "occurred_at": event.timestamp,
        "recorded_at": now,
    }


def _change(row: Any) -> ConsentChange:
    subject: str = row["subject"]
    topic = subject.removeprefix(TOPIC_PREFIX) if subject.startswith(TOPIC_PREFIX) else None
    return ConsentChange(
        channel=None if topic else subject,
        topic=topic,
        granted=row["granted"],
        occurred_at=utc(row["occurred_at"]),
        recorded_at=utc(row["recorded_at"]),
        source=row["source"],
        producer=row["producer"],
        evidence=dict(row["evidence"] or {}),
        recipient=row["recipient"],
        event_id=row["event_id"],
    )


# --- erasure and retention (omnicart.privacy) ----------------------------------------------------


def delete_consent_history(connection: Connection, ref: str) -> int:
    """Erase one customer's consent history (``omnicart forget``); how many rows went."""
    return connection.execute(delete(consent_history).where(consent_history.c.customer_ref == ref)).rowcount


def clear_old_recipients(connection: Connection, cutoff: datetime) -> int:
    """Clear the plain addresses of changes made before ``cutoff``; the changes themselves stay."""
    query = (
        update(consent_history)
        .where(consent_history.c.recipient.is_not(None), consent_history.c.occurred_at < cutoff)
        .values(recipient=None)
    )
    return connection.execute(query).rowcount
