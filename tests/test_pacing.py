"""Pacing on the real Temporal dev server: a burst of due texts drains at the configured rate.

``OMNICART_SEND_RATES`` gives SMS a rate; the product (ingest API and ``worker.run_worker``) then
schedules every SMS on the channel's own task queue, whose rate the Temporal server enforces. A
burst of checkouts makes that many texts due at the same moment; the loopback Twilio records when
each request arrived, and the test checks the achieved rate against the configured one (with a
tolerance for the server's small initial burst), and that every text went out exactly once.

It prints the numbers it measured: ``.venv/bin/pytest tests/test_pacing.py -s`` shows them.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

from temporalio.testing import WorkflowEnvironment

from omnicart.ledger import LedgerStatus, MessageLedger
from omnicart.storage import get_engine
from tests import test_channels_end_to_end as channels
from tests.providers.twilio_server import Recorded
from tests.test_channels_end_to_end import (
    Providers,
    abandoned_checkout,
    eventually,
    product,
    product_settings,
    published,
)

providers = channels.providers
webhook_key = channels.webhook_key
service_account_key = channels.service_account_key

RATE = 5.0  # SMS messages a second, as a long code might be configured (1/s) but quicker to test
BURST = 50  # texts due at once: ten seconds at the rate


async def test_a_burst_of_due_texts_drains_at_the_configured_rate_each_sent_once(
    dev_env: WorkflowEnvironment, providers: Providers, tmp_path: Path
) -> None:
    settings = product_settings(
        providers, tmp_path, published(tmp_path, "sms_at_once.yaml"), send_rates={"sms": RATE}
    )
    run = uuid.uuid4().hex[:6]
    carts = [f"cart_{run}_{n:03d}" for n in range(BURST)]
    events: list[dict[str, Any]] = []
    for cart_id in carts:
        events += abandoned_checkout(f"cus_{cart_id}", cart_id)["events"]
    async with product(dev_env, settings) as http:
        response = await http.post("/v1/events", json={"events": events})
        assert response.status_code == 202, response.text

        async def all_texts() -> list[Recorded] | None:
            sent = providers.twilio.sent()
            return sent if len(sent) >= BURST else None

        texts = await eventually(all_texts, f"Twilio to receive {BURST} texts", timeout=BURST / RATE * 3 + 20)

    arrivals = sorted(text.received_at for text in texts)
    span = arrivals[-1] - arrivals[0]
    achieved = (len(arrivals) - 1) / span
    per_second = [sum(1 for t in arrivals if n <= t - arrivals[0] < n + 1) for n in range(int(span) + 1)]
    print(f"\npacing: {len(arrivals)} texts in {span:.1f} s = {achieved:.2f}/s (configured {RATE:g}/s); "
          f"per second: {per_second}")
    assert achieved <= RATE * 1.15, f"{achieved:.2f}/s is faster than the configured {RATE}/s"
    # Not stalled either (loose: on a loaded CI machine the workflows themselves may lag the limit).
    assert achieved >= RATE * 0.25, f"{achieved:.2f}/s: the queue drains much slower than allowed"
    # The server's limiter is a token bucket holding one second's worth: any window of w seconds
    # sees at most RATE * (w + 1) sends (+1: a text on each edge), never the whole burst at once.
    for window in (1.0, 2.0, 5.0):
        busiest = max(sum(1 for t in arrivals if start <= t <= start + window) for start in arrivals)
        assert busiest <= RATE * (window + 1) + 1, f"{busiest} texts within {window:g} s"
    # Exactly once: one text per cart, each recorded sent in the ledger.
    texted = sorted(re.search(r"cart_\w+?_\d{3}", text.field("Body") or "").group(0) for text in texts)  # type: ignore[union-attr]
    assert texted == carts
    ledger = MessageLedger(get_engine(settings.database()))
    sent = ledger.with_status(LedgerStatus.SENT, limit=BURST * 2)
    assert len(sent) == BURST and len({entry.customer_id for entry in sent}) == BURST
