"""The connectors under fuzz: forged, replayed and malformed requests to every connector endpoint.

Each generated request is one of three attacks, against the real API and worker (``fuzz_target``):

* **forged**: a Shopify or WooCommerce delivery signed with a wrong secret, a wrong or missing
  signature, or a Segment call with an unknown write key; bodies are the platforms' own sample
  payloads or anything Hypothesis makes;
* **replayed**: a genuine, correctly signed delivery sent once, then again as it was;
* **malformed**: a correctly signed body that is not a JSON object (bytes, JSON of another shape).

The verdict: no 5xx (other than 503), and not one event accepted from any of them (the genuine
first send of a replayed delivery is not counted: it is meant to be taken).
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from temporalio.client import Client

from tests.fuzz.harness import Fuzzer, fuzz_target
from tests.support import platform_payloads as samples


@dataclass(frozen=True)
class Attack:
    kind: str  # forged, replayed or malformed
    path: str
    body: bytes
    headers: dict[str, str]


@dataclass
class ConnectorReport:
    statuses: Counter[int] = field(default_factory=Counter)
    accepted: Counter[str] = field(default_factory=Counter)  # events accepted, by attack kind
    attacks: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    @property
    def server_errors(self) -> int:
        return sum(count for status, count in self.statuses.items() if status >= 500 and status != 503)

    def lines(self) -> list[str]:
        total = sum(self.statuses.values())
        kinds = ", ".join(f"{kind}: {count}" for kind, count in sorted(self.attacks.items()))
        return [
            f"connector requests  {total} in {self.seconds:.1f} s ({kinds})",
            f"by status           {', '.join(f'{s}: {c}' for s, c in sorted(self.statuses.items()))}",
            f"5xx                 {self.server_errors} (503 not counted)",
            f"events accepted     {sum(self.accepted.values())} ({dict(self.accepted) or 'none'})",
        ]


def _sample(topic_kind: str, rng: random.Random) -> tuple[str, dict[str, Any]]:
    customer = rng.randint(10**6, 10**7)
    return {
        "shopify checkout": ("checkouts/create", samples.shopify_checkout(customer, token=uuid.uuid4().hex)),
        "shopify order": ("orders/create", samples.shopify_order(customer, pos_location=24826418)),
        "shopify customer": ("customers/update", samples.shopify_customer(customer)),
        "shopify product": ("products/update", samples.shopify_product()),
        "woo order": ("order.created", samples.woo_order(customer)),
        "woo product": ("product.updated", samples.woo_product()),
        "segment": ("track", samples.segment_checkout_started(f"user_{customer}")),
    }[topic_kind]


def _request(sample: str, rng: random.Random, body: bytes | None = None, secret: str | None = None,
             key: str | None = None) -> tuple[str, bytes, dict[str, str]]:
    """A request as the platform sends it (``secret`` / ``key``: sign or authenticate as someone else)."""
    topic, payload = _sample(sample, rng)
    if sample.startswith("shopify"):
        signed, headers = samples.shopify_request(topic, payload, secret=secret or samples.SHOPIFY_SECRET)
        path, header = "/webhooks/shopify", "X-Shopify-Hmac-Sha256"
    elif sample.startswith("woo"):
        signed, headers = samples.woo_request(topic, payload, secret=secret or samples.WOO_SECRET)
        path, header = "/webhooks/woocommerce", "X-WC-Webhook-Signature"
    else:
        signed = json.dumps(payload).encode()
        return "/v1/segment/track", body if body is not None else signed, {
            "Content-Type": "application/json", **samples.segment_auth(key or samples.SEGMENT_KEY)}
    if body is not None:  # a body of our own, signed as the platform would sign it (or forged)
        headers[header] = samples.signature(secret or _secret_of(sample), body)
        return path, body, headers
    return path, signed, headers


def _secret_of(sample: str) -> str:
    return samples.SHOPIFY_SECRET if sample.startswith("shopify") else samples.WOO_SECRET


SAMPLES = ["shopify checkout", "shopify order", "shopify customer", "shopify product", "woo order", "woo product",
           "segment"]
junk_json = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=10),
                         lambda inner: st.lists(inner, max_size=3), max_leaves=8)


@st.composite
def attacks(draw: st.DrawFn) -> Attack:
    rng = random.Random(draw(st.integers(0, 2**32)))
    sample = draw(st.sampled_from(SAMPLES))
    kind = draw(st.sampled_from(["forged", "replayed", "malformed"]))
    if kind == "forged":
        how = draw(st.sampled_from(["wrong secret", "no signature", "junk signature", "own body"]))
        own = draw(st.binary(max_size=200)) if how == "own body" else None
        path, body, headers = _request(sample, rng, body=own, secret="not-the-secret", key="not-a-write-key")
        if how == "no signature":
            for name in ("X-Shopify-Hmac-Sha256", "X-WC-Webhook-Signature", "Authorization"):
                headers.pop(name, None)
        elif how == "junk signature":
            junk = draw(st.text(max_size=60))
            for name in ("X-Shopify-Hmac-Sha256", "X-WC-Webhook-Signature", "Authorization"):
                if name in headers:
                    headers[name] = junk.encode("ascii", "ignore").decode()
        return Attack(kind, path, body, headers)
    if kind == "malformed":
        body = draw(st.binary(max_size=300)) if draw(st.booleans()) else json.dumps(draw(junk_json)).encode()
        path, body, headers = _request(sample, rng, body=body)
        return Attack(kind, path, body, headers)
    path, body, headers = _request(sample, rng)
    return Attack(kind, path, body, headers)


async def _send(fuzzer: Fuzzer, attack: Attack, report: ConnectorReport) -> None:
    if attack.kind == "replayed":  # the genuine first delivery, then the same one again
        first = await fuzzer.http.post(attack.path, content=attack.body, headers=attack.headers)
        report.statuses[first.status_code] += 1
    response = await fuzzer.http.post(attack.path, content=attack.body, headers=attack.headers)
    report.statuses[response.status_code] += 1
    report.attacks[attack.kind] += 1
    try:
        accepted = response.json().get("accepted", 0) if response.status_code < 300 else 0
    except ValueError:
        accepted = 0
    report.accepted[attack.kind] += int(accepted or 0)


def _run(fuzzer: Fuzzer, loop: asyncio.AbstractEventLoop, requests: int, seed_value: int | None,
         report: ConnectorReport) -> None:
    @settings(max_examples=requests, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(attacks())
    def one(attack: Attack) -> None:
        asyncio.run_coroutine_threadsafe(_send(fuzzer, attack, report), loop).result()

    test: Callable[[], None] = one if seed_value is None else seed(seed_value)(one)
    test()


async def fuzz_connectors(client: Client, data_dir: Path, requests: int,
                          seed_value: int | None = None) -> ConnectorReport:
    """Send ``requests`` attacks to the connectors of a real API and worker; count what came of them."""
    report = ConnectorReport()
    data_dir.mkdir(parents=True, exist_ok=True)
    async with fuzz_target(client, data_dir, shopify_api_secret=samples.SHOPIFY_SECRET,
                           woocommerce_webhook_secret=samples.WOO_SECRET,
                           segment_write_keys=samples.SEGMENT_KEY) as fuzzer:
        started = time.monotonic()
        await asyncio.to_thread(_run, fuzzer, asyncio.get_running_loop(), requests, seed_value, report)
        report.seconds = time.monotonic() - started
    return report
