"""The console's preview in every locale a template has, and a customer's consent with its
provenance, in a real browser (headless Debian Chromium through Playwright), each page checked
with axe-core for serious or critical violations."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from playwright.sync_api import Locator, Page, expect

from omnicart.api.event_log import EventLog
from omnicart.consent.history import ConsentHistory
from omnicart.console.users import ConsoleUsers
from omnicart.customers.projection import ProfileProjection
from omnicart.events import Event
from omnicart.settings import Settings
from omnicart.simulate import timeline_event
from omnicart.storage import get_engine
from tests.console_support import CHROMIUM, PASSWORD, console_settings, published_product
from tests.test_console_browser import (  # the browser and a page logged in as the editor, on this module's product
    browser,  # noqa: F401  (a fixture)
    console_url,  # noqa: F401  (a fixture)
    page,  # noqa: F401  (a fixture)
    serious_violations,
)

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="scripts/test installs Debian's chromium")

CUSTOMER = "cus_provenance"
START = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def _event(number: int, event_type: str, at: datetime, source: str, properties: dict[str, Any]) -> Event:
    return timeline_event({"id": f"{CUSTOMER}-{number}", "type": event_type, "customer_id": CUSTOMER,
                           "timestamp": at.isoformat(), "source": source, "properties": properties})


def consent_timeline() -> list[Event]:
    """Email confirmed by double opt-in; SMS agreed at checkout, then a STOP reply; promotions refused
    in the preference centre."""
    return [
        _event(0, "customer_updated", START, "web", {
            "email": "prov@example.com", "phone": "+14155550111", "first_name": "Pia",
            "consent": {"email": True}, "consent_source": "form",
            "consent_evidence": {"url": "https://shop.example/newsletter", "double_opt_in": "confirmed"}}),
        _event(1, "consent_changed", START + timedelta(days=1), "web", {
            "channel": "sms", "granted": True, "source": "checkout",
            "evidence": {"text": "Text me about my order"}}),
        _event(2, "consent_changed", START + timedelta(days=3), "sms", {
            "channel": "sms", "granted": False, "source": "sms_keyword",
            "evidence": {"keyword": "STOP", "message_sid": "SM0123"}}),
        _event(3, "consent_changed", START + timedelta(days=4), "web", {
            "topic": "promotions", "granted": False, "source": "preference_centre",
            "evidence": {"text": "Offers and sales: no"}}),
    ]


@pytest.fixture(scope="module")
def product(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    settings = console_settings(tmp_path_factory.mktemp("console"))
    published_product(settings)
    engine = get_engine(settings.database())
    events = consent_timeline()
    EventLog(engine).record(events)
    ProfileProjection(engine, settings.signing_secret).record(events)
    ConsentHistory(engine, settings.signing_secret).record(events)  # as ingest writes it
    ConsoleUsers(engine).create("mara", PASSWORD, "editor")
    return settings


def test_the_flagships_first_reminder_is_previewed_in_each_locale_with_its_translated_subject(
    page: Page,  # noqa: F811  (the fixture imported above)
) -> None:
    page.get_by_role("link", name="Preview").click()
    page.get_by_label("Sample customer").select_option("cus_ada")
    page.get_by_role("button", name="Load").click()
    page.get_by_label("Journey", exact=True).select_option("abandoned_cart")
    page.get_by_role("button", name="Preview").click()
    reminder = page.locator("#preview-actions li", has_text="cart_reminder_1").first
    turkish = reminder.get_by_role("region", name="cart_reminder_1 in Turkish (tr)")
    expect(turkish).to_have_attribute("lang", "tr")
    expect(turkish.locator(".subject")).to_have_text("Subject: Ada, sepetin seni bekliyor")
    expect(turkish.locator("iframe.email")).to_have_attribute("sandbox", "")
    expect(turkish.frame_locator("iframe.email").locator("h1")).to_have_text("Ada, hâlâ karar veremedin mi?")
    persian = reminder.get_by_role("region", name="cart_reminder_1 in Persian (fa)")
    expect(persian).to_have_attribute("dir", "rtl")
    # Ada's locale is en-GB: the English words are hers, and shown first.
    expect(reminder.locator("section.translation").first).to_contain_text("English (en) · what this customer gets")
    expect(reminder.locator("section.translation").first.locator(".subject")).to_contain_text(
        "Ada, your cart is saved for you")
    sms = page.locator("#preview-actions li", has_text="cart_reminder_sms").first
    expect(sms.get_by_role("region", name="cart_reminder_sms in Russian (ru)").locator(".segments")).to_have_text(
        "4 segment(s)")  # Cyrillic is billed in UCS-2: more segments than the English
    assert serious_violations(page) == []


def evidence(row: Locator) -> dict[str, str]:
    """A consent change's evidence as the page lists it: each term and its value."""
    pairs = row.locator(".evidence div").evaluate_all(
        "items => items.map(item => [item.querySelector('dt').textContent, item.querySelector('dd').textContent])")
    return dict(pairs)


def test_the_customer_page_shows_each_channels_consent_with_its_source_and_evidence_newest_first(
    page: Page,  # noqa: F811  (the fixture imported above)
) -> None:
    page.goto(f"/customers/{CUSTOMER}")
    table = page.locator("#consent-provenance")
    sms = table.locator("tbody[data-subject='sms'] tr")
    expect(sms).to_have_count(2)
    expect(sms.nth(0)).to_contain_text("refused (now)")
    expect(sms.nth(0)).to_contain_text("2026-11-05 09:00")
    expect(sms.nth(0)).to_contain_text("sms_keyword via sms")
    assert evidence(sms.nth(0)) == {"keyword": "STOP", "message_sid": "SM0123"}
    expect(sms.nth(1)).to_contain_text("granted")
    expect(sms.nth(1)).to_contain_text("checkout via web")
    expect(sms.nth(1)).to_contain_text("2026-11-03 09:00")
    email = table.locator("tbody[data-subject='email'] tr")
    expect(email).to_have_count(1)
    expect(email.nth(0)).to_contain_text("granted (now)")
    assert evidence(email.nth(0)) == {"double_opt_in": "confirmed", "url": "https://shop.example/newsletter"}
    expect(email.nth(0)).to_contain_text("form via web")
    promotions = table.locator("tbody[data-subject='topic: promotions'] tr")
    expect(promotions).to_contain_text("refused (now)")
    expect(promotions).to_contain_text("preference_centre")
    # Channels first, then topics.
    subjects = table.locator("tbody").evaluate_all("bodies => bodies.map(b => b.dataset.subject)")
    assert subjects == ["email", "sms", "topic: promotions"]
    assert serious_violations(page) == []
