"""Identity: which known customer an anonymous id (a cookie, a device, Segment's ``anonymousId``) belongs to.

An event may name its customer by ``customer_id``, by ``anonymous_id``, or by both: both is a link
(an identify, a checkout with an email, a login). Ingest keeps links in ``identity_links`` and
routes each event (:meth:`IdentityLinks.route`): an anonymous id not linked yet reaches the
anonymous visitor's own workflow (customer id ``anon:<keyed hash>``), a linked one the known
customer's. The first link of an anonymous id wins, for good: the visitor's state has been handed to
that customer and cannot be handed again, and a shared device where a second person logs in later
must not give them the first person's cart. That second person's events still reach them by their
own ``customer_id``; only that anonymous id's later anonymous-only events keep going to the first.

Anonymous ids are personal data (they identify a device), so the table keeps only their keyed hash,
like the profile projection keeps emails and phones (``docs/PRIVACY.md``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from pydantic import SecretStr
from sqlalchemy import Column, Connection, DateTime, Engine, String, Table, delete, select, update

from omnicart import limits
from omnicart.events import ANONYMOUS_PREFIX, Event
from omnicart.security.pseudonym import customer_ref, keyed_hash
from omnicart.storage import insert_ignoring_existing, metadata

identity_links = Table(
    "identity_links",
    metadata,
    Column("anonymous_ref", String(80), primary_key=True, comment="The anonymous id's keyed hash."),
    Column("customer_id", String(limits.MAX_ID_CHARS), nullable=False, comment="The known customer it belongs to."),
    Column("customer_ref", String(200), nullable=False, index=True, comment="The id, or its keyed hash if personal."),
    Column("linked_at", DateTime(timezone=True), nullable=False, comment="When the linking event happened."),
    Column("event_id", String(limits.MAX_ID_CHARS), nullable=False, comment="The event that linked them."),
    Column("handed_over_at", DateTime(timezone=True), nullable=True,
           comment="When the anonymous visitor's workflow was told to hand its state over (null: not yet)."),
)


def anonymous_customer_id(anonymous_id: str, secret: SecretStr) -> str:
    """The customer id of a visitor known only by ``anonymous_id``: ``anon:`` and its keyed hash, so
    neither workflow ids nor logs carry the raw id."""
    return ANONYMOUS_PREFIX + keyed_hash(anonymous_id, secret)


@dataclass(frozen=True, slots=True)
class NewLink:
    """A link whose anonymous visitor has not been told yet to hand its state over; ``event_id`` is the
    event of this batch that carries it (the first link, or a repeat of a link not told before)."""

    anonymous_customer_id: str
    customer_id: str
    event_id: str


@dataclass(frozen=True, slots=True)
class Routed:
    """A batch's customer events with the customer id each is for, and the links to hand over."""

    events: list[Event]
    links: list[NewLink]


class IdentityLinks:
    """The ``identity_links`` table, as ingest uses it."""

    def __init__(self, engine: Engine, secret: SecretStr) -> None:
        self.engine = engine
        self.secret = secret

    def route(self, events: Sequence[Event]) -> Routed:
        """Record the links ``events`` make (the first link of an anonymous id wins) and give each
        event the customer id whose workflow it goes to, in one transaction, in batch order."""
        routed: list[Event] = []
        links: dict[str, NewLink] = {}
        known: dict[str, str | None] = {}  # anonymous ref -> customer id, as far as this batch has looked
        with self.engine.begin() as connection:
            for event in events:
                if not event.anonymous_id:
                    routed.append(event)
                    continue
                ref = keyed_hash(event.anonymous_id, self.secret)
                if event.customer_id:
                    connection.execute(insert_ignoring_existing(connection, identity_links, "anonymous_ref"), [{
                        "anonymous_ref": ref, "customer_id": event.customer_id,
                        "customer_ref": customer_ref(event.customer_id, self.secret),
                        "linked_at": event.timestamp, "event_id": event.id, "handed_over_at": None,
                    }])
                row = connection.execute(
                    select(identity_links.c.customer_id, identity_links.c.handed_over_at)
                    .where(identity_links.c.anonymous_ref == ref)
                ).first() if ref not in known or event.customer_id else None
                if row is None and ref not in known:
                    known[ref] = None
                if row is not None:
                    known[ref] = row.customer_id
                    if row.handed_over_at is None and row.customer_id == event.customer_id:
                        anonymous = ANONYMOUS_PREFIX + ref
                        links.setdefault(ref, NewLink(anonymous, row.customer_id, event.id))
                customer_id = event.customer_id or known.get(ref) or ANONYMOUS_PREFIX + ref
                routed.append(event if customer_id == event.customer_id else
                              event.model_copy(update={"customer_id": customer_id}))
        return Routed(routed, list(links.values()))

    def handed_over(self, links: Sequence[NewLink], at: datetime | None = None) -> None:
        """Note that these anonymous visitors were told to hand over: a retried batch does not tell again."""
        refs = [link.anonymous_customer_id.removeprefix(ANONYMOUS_PREFIX) for link in links]
        if not refs:
            return
        with self.engine.begin() as connection:
            connection.execute(
                update(identity_links).where(identity_links.c.anonymous_ref.in_(refs))
                .values(handed_over_at=at or datetime.now(UTC))
            )

    def customer_for(self, anonymous_id: str) -> str | None:
        """The known customer an anonymous id is linked to, if any."""
        with self.engine.connect() as connection:
            return connection.execute(
                select(identity_links.c.customer_id)
                .where(identity_links.c.anonymous_ref == keyed_hash(anonymous_id, self.secret))
            ).scalar()


def delete_links(connection: Connection, ref: str) -> int:
    """Erase one customer's links (``ref`` as ``customer_ref`` makes it: ``omnicart forget``); how many went."""
    return connection.execute(delete(identity_links).where(identity_links.c.customer_ref == ref)).rowcount


def linked_visitors(engine: Engine, ref: str) -> list[str]:
    """The anonymous visitors (their customer ids) linked to one customer (``ref`` as ``customer_ref``
    makes it): whose workflows handed their state over, for ``omnicart forget``."""
    with engine.connect() as connection:
        refs = connection.execute(
            select(identity_links.c.anonymous_ref).where(identity_links.c.customer_ref == ref)
            .order_by(identity_links.c.anonymous_ref)
        ).scalars().all()
    return [ANONYMOUS_PREFIX + anonymous_ref for anonymous_ref in refs]
