"""WhatsApp's rules on their own (pure, fast): the 24-hour window, its own consent, delivery reports
that run the fallback, error classification, opt-out keywords, and the journey language.

The same behaviour end to end, on Temporal and through the real SDK, is in
``tests/test_whatsapp_end_to_end.py``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from omnicart.api.whatsapp_webhooks import opt_out_language
from omnicart.channels.twilio_whatsapp import classify_whatsapp_error
from omnicart.engine import interpreter
from omnicart.engine.state import CustomerState
from omnicart.events import Event
from omnicart.journey.loader import JourneyError, load_template, read_template
from omnicart.journey.model import Journey, JourneyBundle, SmsTemplate, WhatsAppTemplate
from omnicart.messages import SendResult

START = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)
TEMPLATES = {
    "opener": WhatsAppTemplate(
        channel="whatsapp", content_sid="HX" + "a" * 32, category="marketing",
        content_variables={"1": "{{ customer.first_name }}"}, body="Hi {{ customer.first_name }}",
    ),
    "template_only": WhatsAppTemplate(channel="whatsapp", content_sid="HX" + "b" * 32, category="utility"),
    "text": SmsTemplate(channel="sms", body="Hi"),
}
JOURNEY = JourneyBundle(
    journey=Journey.model_validate({
        "name": "wa", "trigger": {"event": "checkout_started", "key": "cart_id"},
        "exit_when": [{"event": "order_placed"}],
        "steps": [{"send": {"channel": "whatsapp", "template": "opener",
                            "fallback": [{"channel": "sms", "template": "text"}]}},
                  {"wait": "2d"}],
    }),
    templates=TEMPLATES,
)


def event(event_type: str, at: datetime, number: int = 0, **properties: Any) -> Event:
    return Event.parse({"id": f"e{number}-{event_type}", "type": event_type, "customer_id": "c1",
                        "timestamp": at.isoformat(), "source": "whatsapp", "properties": properties})


def customer(**consent: bool) -> CustomerState:
    state = interpreter.new_state("c1")
    profile: dict[str, Any] = {"phone": "+905321234567", "first_name": "Ayşe", "consent": {"sms": True, **consent}}
    interpreter.handle_event(state, event("customer_updated", START - timedelta(days=2), **profile), [], START)
    return state


def checkout(state: CustomerState, at: datetime) -> interpreter.Output:
    trigger = event("checkout_started", at, 1, cart_id="k1", items=[{"sku": "a"}])
    return interpreter.handle_event(state, trigger, [JOURNEY], at)


@pytest.mark.parametrize(
    ("wrote_hours_before", "free_form"),
    [(None, False), (23.9, True), (24.0, False), (30, False)],
)
def test_free_form_only_within_24_hours_of_the_customers_last_message(
    wrote_hours_before: float | None, free_form: bool
) -> None:
    state = customer(whatsapp=True)
    if wrote_hours_before is not None:
        at = START - timedelta(hours=wrote_hours_before)
        interpreter.handle_event(state, event("message_received", at, 7, channel="whatsapp"), [], at)
    [send] = checkout(state, START).sends
    assert send.channel == "whatsapp" and send.free_form is free_form
    assert interpreter.send_request(state, send).free_form is free_form


def test_a_template_without_free_text_is_sent_as_the_template_even_inside_the_window() -> None:
    state = customer(whatsapp=True)
    interpreter.handle_event(state, event("message_received", START, 7, channel="whatsapp"), [], START)
    bundle = JOURNEY.model_copy(update={"templates": {**TEMPLATES, "opener": TEMPLATES["template_only"]}})
    trigger = event("checkout_started", START, 1, cart_id="k1", items=[{"sku": "a"}])
    [send] = interpreter.handle_event(state, trigger, [bundle], START).sends
    assert send.free_form is False


def test_sms_consent_does_not_imply_whatsapp_consent() -> None:
    out = checkout(customer(), START)
    assert [(a.action, a.channel, a.reason) for a in out.actions if a.action in ("send", "skip")] == [
        ("skip", "whatsapp", "no_whatsapp_consent"),
        ("send", "sms", None),
    ]


def test_a_final_delivery_report_runs_the_fallback_once_even_if_it_overtakes_the_send_result() -> None:
    for report_first in (False, True):
        state = customer(whatsapp=True)
        [send] = checkout(state, START).sends
        accepted = SendResult(message_id=send.message_id, channel="whatsapp", outcome="sent", provider="twilio")
        refused = event("message_failed", START + timedelta(seconds=2), 9, channel="whatsapp",
                        message_id=send.message_id, error_code="63049", fallback=True)
        outs = []
        if report_first:
            outs.append(interpreter.handle_event(state, refused, [], refused.timestamp))
            outs.append(interpreter.handle_send_result(state, accepted, START))
        else:
            outs.append(interpreter.handle_send_result(state, accepted, START))
            outs.append(interpreter.handle_event(state, refused, [], refused.timestamp))
        sends = [s for out in outs for s in out.sends]
        assert [s.channel for s in sends] == ["sms"], report_first
        assert state.delivering == [] and [p.channel for p in state.pending] == ["sms"]


def test_a_refusal_reported_after_the_customer_ordered_sends_no_fallback() -> None:
    state = customer(whatsapp=True)
    [send] = checkout(state, START).sends
    interpreter.handle_send_result(
        state, SendResult(message_id=send.message_id, channel="whatsapp", outcome="sent", provider="twilio"), START
    )
    bought = START + timedelta(minutes=1)
    interpreter.handle_event(state, event("order_placed", bought, 8, order_id="o1", total=10.0), [], bought)
    refused = event("message_failed", bought, 9, channel="whatsapp", message_id=send.message_id, fallback=True)
    assert interpreter.handle_event(state, refused, [], bought).sends == []
    assert state.delivering == []


def test_a_delivery_report_that_is_not_final_moves_nothing() -> None:
    state = customer(whatsapp=True)
    [send] = checkout(state, START).sends
    interpreter.handle_send_result(
        state, SendResult(message_id=send.message_id, channel="whatsapp", outcome="sent", provider="twilio"), START
    )
    failed = event("message_failed", START, 9, channel="whatsapp", message_id=send.message_id, fallback=False)
    assert interpreter.handle_event(state, failed, [], START).sends == []
    assert state.delivering == []


@pytest.mark.parametrize(
    ("code", "fallback", "invalid_address"),
    [(63049, True, False), (63016, True, False), (63003, True, True), (63018, True, False),
     (63999, False, False), (None, False, False)],
)
def test_whatsapp_error_codes_are_classified(code: int | None, fallback: bool, invalid_address: bool) -> None:
    assert classify_whatsapp_error(code) == (fallback, invalid_address)


@pytest.mark.parametrize(
    ("body", "language"),
    [("STOP", "en"), (" unsubscribe ", "en"), ("DUR", "tr"), ("İptal", "tr"), ("iptal", "tr"), ("Baja", "es"),
     ("stop please", None), ("Is the tote waterproof?", None)],
)
def test_opt_out_keywords_in_several_languages(body: str, language: str | None) -> None:
    assert opt_out_language(body) == language


def test_a_whatsapp_template_file_needs_a_content_sid_and_a_meta_category(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("channel: whatsapp\ncontent_sid: HX123\n")
    loaded = read_template(path)
    assert loaded.template is None
    messages = " ".join(problem.message for problem in loaded.problems)
    assert "content_sid" in messages and "category" in messages


def test_a_placeholder_that_reads_an_unknown_name_is_reported_on_its_own_line(tmp_path: Path) -> None:
    path = tmp_path / "wa.yaml"
    path.write_text(
        "channel: whatsapp\ncontent_sid: HX" + "c" * 32 + "\ncategory: utility\n"
        "content_variables:\n  '1': '{{ customer.first_name }}'\n  '2': '{{ cart.restor_url }}'\n"
    )
    with pytest.raises(JourneyError) as raised:
        load_template(path)
    [problem] = raised.value.problems
    assert problem.line == 6 and "content_variables.2" in problem.message
