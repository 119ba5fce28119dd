"""The local outbox: where every channel delivers when no provider is configured.

``omnicart dev`` and tests run without credentials, yet a marketer wants to see exactly what a
customer would have received. Each message becomes one JSON line in the outbox file (the rendered
content, addressed as it would be), and the console gets one short line with the customer id,
channel and template and a masked address, never the raw email or phone number.

The outbox can also answer ``lookup`` (it is its own provider), which makes it exactly-once even
when a worker dies between writing the line and recording the send.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from omnicart.channels.base import Delivery, RenderedMessage, mask_address
from omnicart.observability import provider_span
from omnicart.security.pseudonym import customer_ref

_CONTENT_FIELDS = ("subject", "preheader", "html", "text", "body", "title", "url", "image_url")


class OutboxSender:
    """Appends one JSON line per message to ``path``; works for every channel."""

    provider = "outbox"

    def __init__(self, path: Path, console: TextIO | None = None) -> None:
        self.path = path
        self._console = console if console is not None else sys.stdout
        # One process may run many activities at once; each line must land whole.
        self._lock = threading.Lock()

    async def send(self, message: RenderedMessage) -> Delivery:
        line = self._line(message)
        with provider_span(self.provider, "send", message.message_id, message.channel):
            await asyncio.to_thread(self._append, line)
        addresses = ", ".join(mask_address(address) for address in message.to)
        self._console.write(
            f"outbox: {message.channel} {message.template_name!r} to customer {customer_ref(message.customer_id)}"
            f" ({addresses}) [{message.message_id}]\n"
        )
        self._console.flush()
        return Delivery(provider=self.provider, provider_message_id=message.message_id)

    async def lookup(self, message: RenderedMessage) -> Delivery | None:
        """Whether a line for this message id is already in the outbox."""
        with provider_span(self.provider, "lookup", message.message_id, message.channel):
            found = await asyncio.to_thread(self._contains, message.message_id)
        return Delivery(provider=self.provider, provider_message_id=message.message_id) if found else None

    def _line(self, message: RenderedMessage) -> str:
        record: dict[str, Any] = {
            "sent_at": datetime.now(UTC).isoformat(),
            "message_id": message.message_id,
            "customer_id": message.customer_id,
            "journey": message.journey,
            "run_id": message.run_id,
            "step_id": message.step_id,
            "channel": message.channel,
            "template": message.template_name,
            "to": message.to,
        }
        for name in _CONTENT_FIELDS:
            value = getattr(message, name)
            if value is not None:
                record[name] = value
        if message.categories:
            record["categories"] = message.categories
        if message.sendgrid_template_id:
            record["sendgrid_template_id"] = message.sendgrid_template_id
        if message.unsubscribe_url:
            record["unsubscribe_url"] = message.unsubscribe_url
        if message.channel == "sms":
            record["marketing"] = message.marketing
        return json.dumps(record, ensure_ascii=False, default=str) + "\n"

    def _append(self, line: str) -> None:
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(line)
                handle.flush()

    def _contains(self, message_id: str) -> bool:
        if not self.path.exists():
            return False
        with self._lock, self.path.open(encoding="utf-8") as handle:
            for raw in handle:
                try:
                    if json.loads(raw).get("message_id") == message_id:
                        return True
                except json.JSONDecodeError:
                    continue  # a line cut short by a crash: that message was not delivered
        return False


def read_outbox(path: Path) -> list[dict[str, Any]]:
    """Every message in an outbox file, oldest first (for tests, ``omnicart dev`` and people)."""
    if not path.exists():
        return []
    messages: list[dict[str, Any]] = []
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            try:
                messages.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # blank, or cut short by a crash
    return messages
