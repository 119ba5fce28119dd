"""Consent with provenance without Temporal: signed preference-centre links, its languages, topics in
the journey language and the interpreter, the tracking plan's consent fields, and the history's
idempotence and retention. The end-to-end behaviour on real Temporal is in test_consent_end_to_end.py.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI
from pydantic import SecretStr, ValidationError
from sqlalchemy import select

from omnicart.api import unsubscribe
from omnicart.api.unsubscribe import make_token
from omnicart.consent import preferences
from omnicart.consent.history import ConsentHistory, consent_history
from omnicart.customers.projection import ProfileProjection
from omnicart.engine import interpreter
from omnicart.events import Event
from omnicart.journey.model import Journey
from omnicart.ledger import MessageLedger
from omnicart.privacy.retention import apply_retention
from omnicart.settings import Settings
from omnicart.storage import get_engine, upgrade
from tests.test_interpreter import bundle, checkout, customer, event, said
from tests.test_sendgrid_webhook import RecordingIngest

SECRET = SecretStr("consent-test-secret")
MESSAGE_ID = "msg_cus7_run1_first_1"


class Site:
    """The unsubscribe and preference-centre routes on a migrated database, ingest recorded."""

    def __init__(self, tmp_path: Path) -> None:
        self.settings = Settings(_env_file=None, data_dir=tmp_path, signing_secret=SECRET, retention_days=30)
        upgrade(self.settings.database())
        self.engine = get_engine(self.settings.database())
        self.ingest = RecordingIngest()
        self.app = FastAPI()
        self.app.include_router(unsubscribe.router)
        self.app.include_router(preferences.router)
        self.app.state.settings = self.settings
        self.app.state.ledger = MessageLedger(self.engine)
        self.app.state.ingest = self.ingest
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://test")

    def knows(self, customer_id: str, **profile: Any) -> None:
        """The profile projection learned this customer from their events, as the ingest API writes it."""
        ProfileProjection(self.engine, SECRET).record([customer_event(customer_id, "customer_updated", profile)])


def customer_event(customer_id: str, event_type: str, properties: dict[str, Any], at: datetime | None = None,
                   event_id: str | None = None) -> Event:
    return Event.parse({"id": event_id or f"evt_{event_type}_{customer_id}", "type": event_type,
                        "customer_id": customer_id, "timestamp": (at or datetime.now(UTC)).isoformat(),
                        "source": "web", "properties": properties})


def live_token(customer_id: str = "cus_7", days: float = 30) -> str:
    return make_token(SECRET, customer_id, MESSAGE_ID, "email", datetime.now(UTC) + timedelta(days=days))


def csrf_of(page: str) -> str:
    found = re.search(r"name='csrf' value='([^']+)'", page)
    assert found is not None, page
    return found.group(1)


@pytest_asyncio.fixture
async def site(tmp_path: Path) -> AsyncIterator[Site]:
    site = Site(tmp_path)
    async with site.client:
        yield site


# --- signed links ---------------------------------------------------------------------------------


async def test_the_preference_centre_shows_the_customers_channels_as_they_stand(site: Site) -> None:
    site.knows("cus_7", email="ada@example.com", phone="+14155550100", consent={"email": True, "sms": False})
    page = await site.client.get(f"/v1/unsubscribe/{live_token()}")
    assert page.status_code == 200
    assert "<input type='checkbox' name='channel' value='email' checked> Email" in page.text
    assert "<input type='checkbox' name='channel' value='sms'> Text messages (SMS)" in page.text
    assert "value='push'" not in page.text, "no push token or push consent known: not offered"
    assert "<form method='post' action='/v1/unsubscribe/" in page.text, "unsubscribing stays one button away"
    assert site.ingest.events == [], "opening the page changes nothing"
    assert page.headers["referrer-policy"] == "no-referrer", "the link is the credential: never leaked onwards"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]


async def test_a_tampered_link_is_refused_on_the_page_and_on_the_form(site: Site) -> None:
    token = live_token()
    payload, _, signature = token.partition(".")
    someone_else = live_token("cus_99").partition(".")[0]
    csrf = csrf_of((await site.client.get(f"/v1/unsubscribe/{token}")).text)
    for forged in (f"{someone_else}.{signature}", make_token(SecretStr("not-ours"), "cus_7", MESSAGE_ID), payload):
        assert (await site.client.get(f"/v1/unsubscribe/{forged}")).status_code == 403
        response = await site.client.post(f"/v1/preferences/{forged}", data={"csrf": csrf})
        assert response.status_code == 403, forged
    assert site.ingest.events == []


async def test_an_expired_link_changes_no_preference_but_still_unsubscribes(site: Site) -> None:
    site.knows("cus_7", email="ada@example.com", consent={"email": True})
    fresh, expired = live_token(), live_token(days=-1)
    csrf = csrf_of((await site.client.get(f"/v1/unsubscribe/{fresh}")).text)
    page = await site.client.get(f"/v1/unsubscribe/{expired}")
    assert page.status_code == 403 and "This link has expired" in page.text
    assert "/v1/preferences/" not in page.text and f"/v1/unsubscribe/{expired}" in page.text
    assert (await site.client.post(f"/v1/preferences/{expired}", data={"csrf": csrf})).status_code == 403
    assert site.ingest.events == []
    # RFC 8058: a mail client's one-click POST works however old the message is.
    one_click = await site.client.post(f"/v1/unsubscribe/{expired}", content=b"List-Unsubscribe=One-Click",
                                       headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert one_click.status_code == 200 and "You are unsubscribed" in one_click.text
    [event] = site.ingest.events
    assert event.properties["channel"] == "email" and event.properties["granted"] is False
    assert event.properties["source"] == "email_unsubscribe" and event.properties["evidence"]["one_click"] is True


async def test_a_form_without_our_csrf_token_or_from_another_site_is_refused(site: Site) -> None:
    site.knows("cus_7", email="ada@example.com", consent={"email": True})
    token, other = live_token(), live_token("cus_8")
    csrf = csrf_of((await site.client.get(f"/v1/unsubscribe/{token}")).text)
    other_csrf = csrf_of((await site.client.get(f"/v1/unsubscribe/{other}")).text)
    stale = preferences.csrf_token(SECRET, token, datetime.now(UTC) - timedelta(hours=3))
    for refused in ("", "123.abc", other_csrf, stale):
        assert (await site.client.post(f"/v1/preferences/{token}", data={"csrf": refused})).status_code == 403
    cross_site = await site.client.post(f"/v1/preferences/{token}", data={"csrf": csrf},
                                        headers={"Sec-Fetch-Site": "cross-site"})
    assert cross_site.status_code == 403
    huge = await site.client.post(f"/v1/preferences/{token}", data={"csrf": csrf, "topic": ["t" * 60] * 400})
    assert huge.status_code == 413
    assert site.ingest.events == []
    saved = await site.client.post(f"/v1/preferences/{token}", data={"csrf": csrf},
                                   headers={"Sec-Fetch-Site": "same-origin"})
    assert saved.status_code == 200
    [event] = site.ingest.events
    assert (event.properties["channel"], event.properties["granted"]) == ("email", False)
    assert event.properties["source"] == "preference_centre"
    again = await site.client.post(f"/v1/preferences/{token}", data={"csrf": csrf})
    assert again.status_code == 200 and site.ingest.events[-1].id == event.id, "a double submit is one change"


# --- languages ------------------------------------------------------------------------------------


async def test_the_page_is_persian_and_right_to_left_for_a_customer_whose_locale_is_fa(site: Site) -> None:
    site.knows("cus_7", email="ada@example.com", locale="fa-IR", consent={"email": True})
    page = await site.client.get(f"/v1/unsubscribe/{live_token()}", headers={"Accept-Language": "en-GB,en"})
    assert "<html lang='fa' dir='rtl'>" in page.text, "the profile's locale comes before the browser's"
    assert "<h1>\u062a\u0646\u0638\u06cc\u0645\u0627\u062a \u067e\u06cc\u0627\u0645\u200c\u0647\u0627\u06cc " \
           "\u0634\u0645\u0627</h1>" in page.text  # تنظیمات پیام‌های شما, with its zero-width non-joiner
    assert "> \u0627\u06cc\u0645\u06cc\u0644</label>" in page.text  # the email channel: ایمیل


async def test_without_a_profile_locale_the_browsers_preferred_language_we_speak_is_used(site: Site) -> None:
    site.knows("cus_7", email="ada@example.com", consent={"email": True})
    token = live_token()
    weighted = await site.client.get(f"/v1/unsubscribe/{token}", headers={"Accept-Language": "de;q=1, tr;q=0.8, ru"})
    assert "<html lang='ru' dir='ltr'>" in weighted.text, "ru has weight 1, more than tr's 0.8; de is not spoken"
    plain = await site.client.get(f"/v1/unsubscribe/{token}", headers={"Accept-Language": "de, tr;q=0.5"})
    assert "<html lang='tr' dir='ltr'>" in plain.text and "Tercihlerimi kaydet" in plain.text
    english = await site.client.get(f"/v1/unsubscribe/{token}", headers={"Accept-Language": "ja"})
    assert "<html lang='en' dir='ltr'>" in english.text


# --- topics ---------------------------------------------------------------------------------------


def test_a_journeys_topic_is_validated_and_defaults_to_its_category() -> None:
    definition = {"name": "j", "trigger": {"event": "checkout_started"}, "steps": [{"wait": "1h"}]}
    assert Journey.model_validate(definition).effective_topic == "marketing"
    assert Journey.model_validate({**definition, "category": "transactional"}).effective_topic == "transactional"
    assert Journey.model_validate({**definition, "topic": "price_alerts"}).effective_topic == "price_alerts"
    with pytest.raises(ValidationError, match="topic"):
        Journey.model_validate({**definition, "topic": "Price Alerts!"})


def test_a_send_of_an_opted_out_topic_is_skipped_from_state_alone() -> None:
    start = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
    promotions = bundle([{"send": {"template": "mail", "fallback": [{"template": "text"}]}}], topic="promotions")
    news = bundle([{"send": {"template": "mail"}}], name="news")
    state = customer(start)
    interpreter.handle_event(state, event("consent_changed", start - timedelta(hours=1), 5, topic="promotions",
                                          granted=False), [], start)
    assert said(checkout(state, promotions, start)) == [
        "enter", "skip email mail topic_opt_out", "skip sms text topic_opt_out", "exit completed"]
    assert said(checkout(state, news, start, number=2)) == ["enter", "send email mail", "exit completed"], (
        "another topic is unaffected"
    )
    # Opting back in, later, lets the next run send; an older opt-in arriving late changes nothing.
    interpreter.handle_event(state, event("consent_changed", start - timedelta(hours=2), 6, topic="promotions",
                                          granted=True), [], start)
    assert state.profile.consent["topic:promotions"] is False
    interpreter.handle_event(state, event("consent_changed", start, 7, topic="promotions", granted=True), [], start)
    assert state.profile.consent["topic:promotions"] is True


def test_the_plan_takes_a_consent_change_for_a_channel_or_a_topic_with_its_provenance() -> None:
    with pytest.raises(ValidationError, match="needs at least one of channel, topic"):
        customer_event("cus_7", "consent_changed", {"granted": False})
    with pytest.raises(ValidationError, match="must be one of 'form'"):
        customer_event("cus_7", "consent_changed", {"channel": "sms", "granted": True, "source": "guess"})
    with pytest.raises(ValidationError, match=r"properties\.topic"):
        customer_event("cus_7", "consent_changed", {"topic": "Promotions", "granted": True})
    accepted = customer_event("cus_7", "consent_changed", {
        "topic": "promotions", "granted": True, "source": "form",
        "evidence": {"url": "https://shop.example/join", "text": "Yes, send me offers", "ip": "203.0.113.7"}})
    assert accepted.properties["evidence"]["ip"] == "203.0.113.7"


# --- the history ----------------------------------------------------------------------------------


def test_the_history_is_written_once_per_change_and_retention_clears_only_its_addresses(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, data_dir=tmp_path, signing_secret=SECRET, retention_days=30)
    upgrade(settings.database())
    engine = get_engine(settings.database())
    long_ago = datetime.now(UTC) - timedelta(days=40)
    profile = customer_event("ada@example.com", "customer_updated", {"email": "ada@example.com"}, long_ago)
    ProfileProjection(engine, SECRET).record([profile])
    change = customer_event("ada@example.com", "consent_changed",
                            {"channel": "email", "granted": True, "source": "checkout"}, long_ago, "evt_optin")
    history = ConsentHistory(engine, SECRET)
    history.record([change])
    history.record([change])  # a producer's retry
    [row] = history.export("ada@example.com").history
    assert (row.channel, row.source, row.recipient) == ("email", "checkout", "ada@example.com")
    with engine.connect() as conn:
        stored = conn.execute(select(consent_history.c.customer_ref)).scalars().all()
    assert stored != ["ada@example.com"] and len(stored) == 1, "an id that is an email is kept as its keyed hash"

    report = apply_retention(settings)
    assert report is not None and report.consent_recipients_cleared == 1
    [kept] = history.export("ada@example.com").history
    assert kept.recipient is None and (kept.granted, kept.source) == (True, "checkout"), "the proof stays"
