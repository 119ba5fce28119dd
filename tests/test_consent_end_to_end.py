"""Consent with provenance, end to end on the real Temporal dev server (issue 11).

The product as it runs: the ingest API with its webhooks, an in-process worker, the official SendGrid
and Twilio SDKs against the loopback providers. Consent changes enter through every door a shop
has (its own events from a form, a checkout or an import, an SMS keyword, a provider's spam
report, the unsubscribe link, the preference centre) and are read back the way a regulator's
request would be: the export, by API and CLI; then the customer is forgotten.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.testing import WorkflowEnvironment
from typer.testing import CliRunner

from omnicart.api.unsubscribe import make_token
from omnicart.cli import app
from omnicart.ledger import MessageLedger
from omnicart.messages import SendRequest
from omnicart.settings import Settings, get_settings
from omnicart.storage import get_engine
from tests.providers.sendgrid_server import Recorded as MailSend
from tests.test_channels_end_to_end import (  # the providers' far ends, shared with the channel tests
    PHONE,
    SHOP_NUMBER,
    TWILIO_SID,
    Providers,
    abandoned_checkout,
    customer_state,
    envelope,
    eventually,
    journal_until,
    mails_of,
    new_customer,
    product,
    product_settings,
    providers,  # noqa: F401  (a fixture)
    published,
    service_account_key,  # noqa: F401  (a fixture)
    twilio_signature,
    webhook_key,  # noqa: F401  (a fixture)
)

SHOP_URL = "https://shop.example"

PROMOTIONS_JOURNEY = """
name: promotions_twice
description: Two promotional emails a few seconds apart; the second obeys the customer's topics.
topic: promotions
trigger:
  event: checkout_started
  if: size(event.properties.items) > 0
  key: cart_id
steps:
  - wait: 1s
  - id: first_email
    send: {channel: email, template: cart_reminder_1}
  - wait: {after_trigger: 15s}   # time enough to open the page and save, even on a busy machine
  - id: second_email
    send: {channel: email, template: cart_reminder_2}
"""


def form_fields(page: str) -> tuple[str, list[tuple[str, str, bool]]]:
    """The preference form's CSRF value and its checkboxes as (name, value, checked)."""
    csrf = re.search(r"name='csrf' value='([^']+)'", page)
    assert csrf is not None, page
    boxes = [
        (name, value, checked == " checked")
        for name, value, checked in re.findall(r"<input type='checkbox' name='(\w+)' value='(\w+)'( checked)?>", page)
    ]
    return csrf.group(1), boxes


async def test_unticking_a_topic_in_the_preference_centre_stops_the_next_send_of_that_topic(
    dev_env: WorkflowEnvironment, providers: Providers, tmp_path: Path  # noqa: F811  (the fixture imported above)
) -> None:
    journeys = published(tmp_path)
    (journeys / "promotions_twice.yaml").write_text(PROMOTIONS_JOURNEY)
    settings = product_settings(providers, tmp_path, journeys)
    customer = new_customer()
    async with product(dev_env, settings) as http:
        response = await http.post("/v1/events", json=abandoned_checkout(customer, "cart_topics"))
        assert response.status_code == 202, response.text

        async def first_email() -> MailSend | None:
            return next(iter(mails_of(providers.sendgrid, customer)), None)

        mail = await eventually(first_email, "SendGrid to receive the first promotion")
        link = mail.json["headers"]["List-Unsubscribe"].strip("<>")
        assert link.startswith(f"{SHOP_URL}/v1/unsubscribe/")
        path = link.removeprefix(SHOP_URL)

        page = await http.get(path, headers={"User-Agent": "Mozilla/5.0 (test)"})
        assert page.status_code == 200, page.text
        csrf, boxes = form_fields(page.text)
        assert ("channel", "email", True) in boxes and ("channel", "sms", True) in boxes
        assert [box for box in boxes if box[0] == "topic"] == [("topic", "promotions", True)], (
            "the published journey's topic is offered, on"
        )

        # The customer keeps the channels as they are and unticks promotions (a plain form post).
        channels = [value for name, value, on in boxes if name == "channel" and on]
        saved = await http.post(
            path.replace("/v1/unsubscribe/", "/v1/preferences/"),
            data={"csrf": csrf, "channel": channels},
            headers={"User-Agent": "Mozilla/5.0 (test)"},
        )
        assert saved.status_code == 200, saved.text
        assert "Your choices are saved" in saved.text

        lines = await journal_until(dev_env.client, customer, "exit completed", timeout=40)
        state = await customer_state(dev_env.client, customer)
        export = (await http.get(f"/v1/customers/{customer}/consent")).json()
    assert lines == [
        "enter",
        "send email cart_reminder_1",
        "skip email cart_reminder_2 topic_opt_out",
        "exit completed",
    ]
    assert len(mails_of(providers.sendgrid, customer)) == 1
    assert state.profile.consent["topic:promotions"] is False
    assert state.profile.consent["email"] is True, "only the topic changed"
    [change] = [row for row in export["history"] if row["topic"] == "promotions"]
    assert change["granted"] is False and change["source"] == "preference_centre"
    assert change["evidence"]["message_id"] == mail.json["custom_args"]["message_id"]
    assert change["evidence"]["user_agent"] == "Mozilla/5.0 (test)" and change["evidence"]["language"] == "en"
    assert export["current"]["topic:promotions"]["granted"] is False


def sms_sent_to(settings: Settings, customer: str, phone: str) -> None:
    """A text our send activity handed to Twilio, as the ledger records it (what a STOP answers)."""
    ledger = MessageLedger(get_engine(settings.database()))
    message_id = f"msg_{secrets.token_hex(6)}"
    ledger.claim(
        SendRequest(message_id=message_id, customer_id=customer, journey="abandoned_cart", journey_version="v1",
                    run_id="run_1", step_id="sms", channel="sms", template_name="cart_reminder_sms",
                    template={"channel": "sms", "body": "b"}, to=[phone], context={}),
        "twilio",
    )
    ledger.mark_sent(message_id, "twilio", "SM" + secrets.token_hex(16))


async def test_a_consent_change_from_every_source_lands_in_the_history_is_exported_and_forgotten(
    dev_env: WorkflowEnvironment,
    providers: Providers,  # noqa: F811  (the fixture imported above)
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = product_settings(providers, tmp_path, published(tmp_path))
    customer = new_customer()
    form = {"url": "https://shop.example/newsletter", "text": "Send me offers by email", "ip": "203.0.113.7"}
    async with product(dev_env, settings) as http:
        shop_events = [
            envelope(customer, "customer_updated", {"email": "ada@example.com", "phone": PHONE, "consent": {
                "sms": True}, "consent_source": "checkout", "consent_evidence": {"url": "https://shop.example/checkout",
                                                                "text": "Text me about my order"}}),
            envelope(customer, "consent_changed", {"channel": "email", "granted": True, "source": "form",
                                                   "evidence": form}),
            envelope(customer, "consent_changed", {"channel": "push", "granted": True, "source": "import",
                                                   "evidence": {"file": "crm-2026-11.csv"}}, source="api"),
            envelope(customer, "consent_changed", {"topic": "promotions", "granted": True}, source="api"),
        ]
        response = await http.post("/v1/events", json={"events": shop_events})
        assert response.status_code == 202, response.text

        # STOP to a text we sent (Twilio posts it, signed).
        sms_sent_to(settings, customer, PHONE)
        sid = "SM" + secrets.token_hex(16)
        reply = {"AccountSid": TWILIO_SID, "Body": "STOP", "From": PHONE, "To": SHOP_NUMBER, "MessageSid": sid}
        signature = twilio_signature(f"{SHOP_URL}/webhooks/twilio/inbound", reply)
        response = await http.post("/webhooks/twilio/inbound", data=reply, headers={"X-Twilio-Signature": signature})
        assert response.status_code == 200, response.text

        # A spam complaint SendGrid reports, signed.
        complaint = {"email": "ada@example.com", "timestamp": int(time.time()), "event": "spamreport",
                     "sg_event_id": "sg-spam-" + secrets.token_hex(4), "customer_id": customer}
        body, headers = providers.sendgrid_signed([complaint])
        response = await http.post("/webhooks/sendgrid", content=body, headers=headers)
        assert response.status_code == 200, response.text

        # A mail client's RFC 8058 one-click unsubscribe, then the preference centre (push off).
        expires = datetime.now(UTC) + timedelta(days=30)
        token = make_token(settings.signing_secret, customer, "msg_newsletter_1", "email", expires)
        response = await http.post(f"/v1/unsubscribe/{token}", content=b"List-Unsubscribe=One-Click",
                                   headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert response.status_code == 200, response.text
        page = await http.get(f"/v1/unsubscribe/{token}")
        csrf, boxes = form_fields(page.text)
        assert {(name, value) for name, value, _ in boxes} >= {("channel", "email"), ("channel", "sms"),
                                                              ("channel", "push")}
        response = await http.post(f"/v1/preferences/{token}", data={"csrf": csrf})  # everything unticked
        assert response.status_code == 200, response.text

        async def every_source() -> dict[str, Any] | None:
            export = (await http.get(f"/v1/customers/{customer}/consent")).json()
            sources = {row["source"] for row in export["history"]}
            return export if "preference_centre" in sources else None

        export = await eventually(every_source, "the preference centre's change in the history")
        rows = export["history"]

        monkeypatch.chdir(tmp_path)
        monkeypatch.setenv("OMNICART_DATA_DIR", str(settings.data_dir))
        monkeypatch.setenv("OMNICART_SIGNING_SECRET", settings.signing_secret.get_secret_value())
        get_settings.cache_clear()
        try:
            printed = CliRunner().invoke(app, ["privacy", "export", customer])
        finally:
            get_settings.cache_clear()

        forgotten = await http.post(f"/v1/customers/{customer}/forget")
        assert forgotten.status_code == 200, forgotten.text
        after = (await http.get(f"/v1/customers/{customer}/consent")).json()

    def of(source: str) -> list[dict[str, Any]]:
        return [row for row in rows if row["source"] == source]

    assert {row["source"] for row in rows} == {
        "form", "checkout", "sms_keyword", "email_unsubscribe", "preference_centre", "import", "provider", "api"
    }
    [checkout] = of("checkout")
    assert (checkout["channel"], checkout["granted"], checkout["recipient"]) == ("sms", True, PHONE)
    assert checkout["evidence"]["text"] == "Text me about my order" and checkout["producer"] == "web"
    [by_form] = of("form")
    assert (by_form["channel"], by_form["granted"], by_form["evidence"]) == ("email", True, form)
    assert by_form["recipient"] == "ada@example.com"
    [imported] = of("import")
    assert imported["channel"] == "push" and imported["evidence"] == {"file": "crm-2026-11.csv"}
    [by_api] = of("api")
    assert (by_api["topic"], by_api["channel"], by_api["granted"]) == ("promotions", None, True)
    [stop] = of("sms_keyword")
    assert (stop["channel"], stop["granted"]) == ("sms", False)
    assert stop["evidence"] == {"keyword": "STOP", "message_sid": sid} and stop["recipient"] == PHONE
    [spam] = of("provider")
    assert (spam["channel"], spam["granted"]) == ("email", False)
    assert spam["evidence"] == {"provider": "sendgrid", "event": "spamreport",
                                "provider_event_id": complaint["sg_event_id"]}
    [one_click] = of("email_unsubscribe")
    assert one_click["evidence"]["message_id"] == "msg_newsletter_1" and one_click["evidence"]["one_click"] is True
    # The page showed email as unsubscribed already and sms as stopped: only push changed, to off.
    [centre] = of("preference_centre")
    assert (centre["channel"], centre["granted"]) == ("push", False)
    assert centre["evidence"]["message_id"] == "msg_newsletter_1" and centre["evidence"]["text"].endswith(
        "Push notifications")
    assert export["current"]["sms"]["source"] == "sms_keyword" and export["current"]["push"]["granted"] is False

    assert printed.exit_code == 0, printed.output
    assert json.loads(printed.output)["history"] == rows, "the CLI exports the same document"
    assert after["history"] == [] and after["current"] == {}
    assert forgotten.json()["consent_rows_deleted"] == len(rows)
