"""Retention: personal data the product keeps is removed once it is older than ``OMNICART_RETENTION_DAYS``.

What goes: message recipients (addresses), provider error texts (they may quote an address), lines
of the local outbox file (whole rendered messages), and customer ids that are emails or phone
numbers in old ledger, event-log and discount rows (replaced by their keyed hash), and in the
customer profile projection the plain emails and phones last stated before the cutoff, and ids that
are an email or phone of customers not heard from since (their keyed hashes and consent stay, so
the customer is still found by address), and customers' interest in products that has expired or
was last shown before the cutoff, and the plain addresses in the consent history (the changes and
their evidence stay: they are the proof of consent). What stays: the ledger's ids, statuses and times, which
hold nothing personal and keep "never twice" and the reports working.

The worker runs it every ``OMNICART_RETENTION_INTERVAL_SECONDS`` as a small background task rather
than a Temporal Schedule: the outbox file is local to the machine of the worker that wrote it, so
the work has to happen on that machine, and it is idempotent, so several workers doing it is
harmless. ``omnicart retention apply`` runs it once. Temporal's own histories are governed by the
namespace's retention (``docs/PRIVACY.md``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from omnicart.catalog.interest import delete_old_interest
from omnicart.consent.history import clear_old_recipients
from omnicart.customers.profiles import clear_old_contacts
from omnicart.ledger import message_ledger, message_recipients
from omnicart.privacy.outbox_lines import drop_outbox_lines
from omnicart.privacy.rows import Erased, clear_errors, delete_recipients, personal_ids_before, pseudonymise
from omnicart.security.pseudonym import keyed_hash
from omnicart.settings import Settings
from omnicart.storage import get_engine, require_current

log = logging.getLogger(__name__)


@dataclass
class RetentionReport:
    cutoff: datetime
    erased: Erased = field(default_factory=Erased)
    profile_contacts_cleared: int = 0
    interest_rows_deleted: int = 0
    consent_recipients_cleared: int = 0

    def lines(self) -> list[str]:
        return [
            f"removed personal data older than {self.cutoff.isoformat(timespec='seconds')}",
            *self.erased.lines(),
            f"plain emails, phones and ids cleared from customer profiles: {self.profile_contacts_cleared}",
            f"product interest rows deleted (expired or past retention): {self.interest_rows_deleted}",
            f"plain addresses cleared from the consent history: {self.consent_recipients_cleared}",
        ]

    def anything(self) -> bool:
        return (self.erased.anything() or self.profile_contacts_cleared > 0 or self.interest_rows_deleted > 0
                or self.consent_recipients_cleared > 0)


def apply_retention(settings: Settings, now: datetime | None = None) -> RetentionReport | None:
    """Remove what is past retention; None when ``OMNICART_RETENTION_DAYS`` is not set."""
    if settings.retention_days is None:
        return None
    now = now or datetime.now(UTC)
    cutoff = now - timedelta(days=settings.retention_days)
    report = RetentionReport(cutoff=cutoff)
    engine = get_engine(settings.database())
    require_current(engine)
    with engine.begin() as conn:
        erased = report.erased
        erased.recipients_deleted = delete_recipients(conn, message_recipients.c.created_at < cutoff)
        erased.errors_cleared = clear_errors(conn, message_ledger.c.updated_at < cutoff)
        personal = personal_ids_before(conn, cutoff)
        erased.rows_pseudonymised = pseudonymise(
            conn, personal, lambda customer_id: keyed_hash(customer_id, settings.signing_secret), older_than=cutoff
        )
        report.profile_contacts_cleared = clear_old_contacts(conn, cutoff)
        report.interest_rows_deleted = delete_old_interest(conn, cutoff, now)
        report.consent_recipients_cleared = clear_old_recipients(conn, cutoff)
    report.erased.outbox_lines_deleted = drop_outbox_lines(settings.outbox(), lambda line: _sent_before(line, cutoff))
    return report


def _sent_before(line: dict[str, object], cutoff: datetime) -> bool:
    sent_at = line.get("sent_at")
    if not isinstance(sent_at, str):
        return False
    with contextlib.suppress(ValueError):
        return datetime.fromisoformat(sent_at) < cutoff
    return False


async def keep_applying_retention(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Apply retention now and every interval until ``stop`` is set (the worker runs this)."""
    stop = stop or asyncio.Event()
    while not stop.is_set():
        try:
            report = await asyncio.to_thread(apply_retention, settings)
            if report is not None and report.anything():
                log.info("retention: %s", "; ".join(report.lines()))
        except Exception:  # a locked database now is retried at the next interval
            log.exception("retention could not be applied; trying again in %.0f s", settings.retention_interval_seconds)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), settings.retention_interval_seconds)
