"""The right to be forgotten (GDPR art. 17, KVKK art. 7): erase one customer everywhere we keep them.

In this order, so that no step leaves something unable to do its job:

1. The customer's workflow gets the ``forget`` signal: it drops its state, cancels sends under way
   and ends. If no worker handles it in time, the workflow is terminated (a server-side act).
2. Only once the workflow is closed is the customer's data key deleted, with those of the anonymous
   visitors linked to it (``docs/IDENTITY.md``: their completed workflows' histories). Every payload of its
   history (events, profile, sends, failures) is then undecryptable, everywhere copies of the
   history live. Deleting it earlier would leave a live workflow unable to read its own history.
3. The product database: message recipients deleted; provider error texts cleared; the customer id
   in the ledger, the event log and discount codes replaced by a keyed hash; the customer's row in
   the profile projection (``omnicart.customers``) and their dates deleted; their analytics rows
   (journey actions, and the outcomes of the messages they were sent) deleted by pseudonym; and
   their interest in products (``omnicart.catalog.interest``), so no restock tells them again; and
   their consent history (``omnicart.consent.history``); and the connector deliveries quarantined
   under their id (``omnicart.connectors.quarantine``).
4. The local outbox file loses the customer's lines.

Running it again is harmless and reports that there was nothing left. A later event for the same
customer id starts a new workflow with a new data key: nothing of the forgotten one comes back.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import timedelta

from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from omnicart.analytics.store import delete_customer_rows
from omnicart.catalog.interest import delete_interest
from omnicart.connectors.quarantine import delete_quarantined_deliveries
from omnicart.consent.history import delete_consent_history
from omnicart.customers.profiles import delete_profile
from omnicart.identity import delete_links, linked_visitors
from omnicart.ledger import message_ledger, message_recipients
from omnicart.privacy.outbox_lines import drop_outbox_lines
from omnicart.privacy.rows import Erased, clear_errors, delete_recipients, pseudonymise
from omnicart.routing import customer_workflow_id
from omnicart.security.pseudonym import customer_ref, keyed_hash
from omnicart.settings import Settings
from omnicart.signals import FORGET_SIGNAL
from omnicart.storage import get_engine, require_current
from omnicart.temporal import data_key_store

WORKFLOW_END_TIMEOUT = timedelta(seconds=20)


@dataclass
class ForgetReport:
    """What erasing one customer did (for the operator, and for the record of the request)."""

    workflow_id: str
    pseudonym: str
    workflow: str = "none"
    data_key_deleted: bool = False
    erased: Erased = field(default_factory=Erased)
    profile_rows_deleted: int = 0
    analytics_rows_deleted: int = 0
    interest_rows_deleted: int = 0
    consent_rows_deleted: int = 0
    connector_rows_deleted: int = 0
    identity_links_deleted: int = 0
    visitor_keys_deleted: int = 0

    def lines(self) -> list[str]:
        key = "deleted (its history can no longer be decrypted)" if self.data_key_deleted else "none left"
        return [
            f"workflow {self.workflow_id}: {self.workflow}",
            f"data key: {key}",
            *self.erased.lines(),
            f"customer profile rows deleted: {self.profile_rows_deleted}",
            f"analytics rows deleted: {self.analytics_rows_deleted}",
            f"product interest rows deleted: {self.interest_rows_deleted}",
            f"consent history rows deleted: {self.consent_rows_deleted}",
            f"quarantined connector deliveries deleted: {self.connector_rows_deleted}",
            f"identity links deleted: {self.identity_links_deleted}",
            f"merged anonymous visitors' data keys deleted: {self.visitor_keys_deleted}",
            f"pseudonym in the product database: {self.pseudonym}",
        ]


async def forget_customer(
    client: Client, settings: Settings, customer_id: str, timeout: timedelta = WORKFLOW_END_TIMEOUT
) -> ForgetReport:
    """Erase ``customer_id`` (idempotent); see the module docstring for what and in which order."""
    workflow_id = customer_workflow_id(customer_id)
    report = ForgetReport(workflow_id=workflow_id, pseudonym=keyed_hash(customer_id, settings.signing_secret))
    # Read first: the rows go in step 3, the keys in step 2.
    visitors = await asyncio.to_thread(_linked_visitors, settings, customer_id)
    report.workflow = await _end_workflow(client, workflow_id, timeout)
    keys = data_key_store(settings)
    report.data_key_deleted = await asyncio.to_thread(keys.delete, workflow_id)
    for visitor in visitors:
        report.visitor_keys_deleted += await asyncio.to_thread(keys.delete, customer_workflow_id(visitor))
    await asyncio.to_thread(_erase_rows, settings, customer_id, report)
    report.erased.outbox_lines_deleted = await asyncio.to_thread(
        drop_outbox_lines, settings.outbox(), lambda line: line.get("customer_id") == customer_id
    )
    return report


async def _end_workflow(client: Client, workflow_id: str, timeout: timedelta) -> str:
    handle = client.get_workflow_handle(workflow_id)
    try:
        description = await handle.describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return "none"
        raise
    if description.status != WorkflowExecutionStatus.RUNNING:
        return "already closed"
    await handle.signal(FORGET_SIGNAL)
    try:
        await asyncio.wait_for(handle.result(), timeout.total_seconds())
        return "erased its state and ended"
    except TimeoutError:
        await handle.terminate(reason="customer forgotten; no worker ended the workflow in time")
        return "terminated (no worker handled the forget signal in time)"


def _linked_visitors(settings: Settings, customer_id: str) -> list[str]:
    engine = get_engine(settings.database())
    require_current(engine)  # before anything is erased: nothing half-done on a database never migrated
    return linked_visitors(engine, customer_ref(customer_id, settings.signing_secret))


def _erase_rows(settings: Settings, customer_id: str, report: ForgetReport) -> None:
    engine = get_engine(settings.database())
    require_current(engine)
    with engine.begin() as conn:
        erased = report.erased
        erased.recipients_deleted = delete_recipients(conn, message_recipients.c.customer_id == customer_id)
        erased.errors_cleared = clear_errors(conn, message_ledger.c.customer_id == customer_id)
        erased.rows_pseudonymised = pseudonymise(conn, [customer_id], lambda _: report.pseudonym)
        reference = customer_ref(customer_id, settings.signing_secret)
        report.profile_rows_deleted = delete_profile(conn, reference)
        report.analytics_rows_deleted = delete_customer_rows(conn, reference)
        report.interest_rows_deleted = delete_interest(conn, reference)
        report.consent_rows_deleted = delete_consent_history(conn, reference)
        report.connector_rows_deleted = delete_quarantined_deliveries(conn, customer_id)
        report.identity_links_deleted = delete_links(conn, reference)
