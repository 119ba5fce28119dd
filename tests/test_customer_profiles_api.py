"""The profile projection as the product runs it: filled by the ingest API on the real Temporal dev
server, read through ``GET /v1/customers``, erased by forget and thinned by retention.

No worker runs on these tests' task queue (as in tests/test_api.py): what matters here is that an
accepted event reaches the projection, and that a duplicate or a broken projection changes nothing
the producer sees.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from pydantic import SecretStr
from temporalio.testing import WorkflowEnvironment

from omnicart.api.app import create_app
from omnicart.api.event_log import EventLog
from omnicart.api.ingest import Ingest
from omnicart.customers.profiles import CustomerProfiles
from omnicart.customers.projection import ProfileProjection
from omnicart.events import Event
from omnicart.journey.catalog import JourneyCatalog
from omnicart.privacy.forget import forget_customer
from omnicart.privacy.retention import apply_retention
from omnicart.settings import Settings
from omnicart.storage import get_engine
from tests.test_api import (
    catalog,  # noqa: F401  (a fixture)
    customer,
    has_workflow,
    make_settings,
    serving,
)

AppFor = Callable[[Settings], FastAPI]

PROFILE_KEYS = {
    "customer_id",
    "workflow_id",
    "email",
    "phone",
    "consent",
    "locale",
    "timezone",
    "first_seen_at",
    "last_event_at",
    "last_order_at",
    "dates",
}


def envelope(customer_id: str, type_: str, timestamp: str, **properties: Any) -> dict[str, Any]:
    return {
        "id": f"evt_{uuid.uuid4().hex}",
        "type": type_,
        "customer_id": customer_id,
        "timestamp": timestamp,
        "source": "web",
        "properties": properties,
    }


@pytest.fixture
def app_for(dev_env: WorkflowEnvironment, catalog: JourneyCatalog) -> AppFor:  # noqa: F811  (the fixture imported above)
    """The API with these settings, on the session's dev server."""
    return lambda settings: create_app(settings, client=dev_env.client, catalog=catalog)


def profiles(settings: Settings) -> CustomerProfiles:
    return CustomerProfiles(get_engine(settings.database()), settings.signing_secret)


async def test_posted_events_are_found_by_email_and_id_without_hashes(tmp_path: Path, app_for: AppFor) -> None:
    settings = make_settings(tmp_path, api_token=SecretStr("back-office"))
    auth = {"Authorization": "Bearer back-office"}
    ada, tag = customer(), uuid.uuid4().hex[:8]
    email = f"ada.{tag}@example.org"
    update = envelope(
        ada,
        "customer_updated",
        "2026-11-20T10:00:00+03:00",
        email=email,
        phone="+447700900123",
        locale="en-GB",
        consent={"email": True, "sms": False},
        birthday="1990-03-04",
    )
    bought = envelope(ada, "order_placed", "2026-11-21T09:30:00Z", order_id="ord_1", total=49.5, currency="GBP")
    async with serving(app_for(settings)) as http:
        posted = await http.post("/v1/events", json={"events": [update, bought]}, headers=auth)
        assert posted.json() == {"accepted": 2, "duplicates": 0}
        # The same id again, with other data (a producer's mistake): a duplicate, not applied.
        again = {**update, "properties": {"email": f"mallory.{tag}@example.org"}}
        assert (await http.post("/v1/events", json=again, headers=auth)).json() == {"accepted": 0, "duplicates": 1}

        refused = await http.get("/v1/customers", params={"email": email})
        by_email = await http.get("/v1/customers", params={"email": email.upper()}, headers=auth)
        by_id = await http.get(f"/v1/customers/{ada}", headers=auth)
        unknown = await http.get("/v1/customers/cus_never_seen", headers=auth)
        nobody = await http.get("/v1/customers", params={"email": f"mallory.{tag}@example.org"}, headers=auth)

    assert refused.status_code == 401
    assert by_email.status_code == 200 and by_email.json()["next_cursor"] is None
    [found] = by_email.json()["customers"]
    assert found == by_id.json()
    assert set(found) == PROFILE_KEYS  # no hashes
    assert found == {
        "customer_id": ada,
        "workflow_id": f"customer/{ada}",
        "email": email,
        "phone": "+447700900123",
        "consent": {
            "email": {"granted": True, "changed_at": "2026-11-20T07:00:00Z"},
            "sms": {"granted": False, "changed_at": "2026-11-20T07:00:00Z"},
            "push": {"granted": None, "changed_at": None},
            "whatsapp": {"granted": None, "changed_at": None},
        },
        "locale": "en-GB",
        "timezone": None,
        "first_seen_at": "2026-11-20T07:00:00Z",
        "last_event_at": "2026-11-21T09:30:00Z",
        "last_order_at": "2026-11-21T09:30:00Z",
        "dates": {"birthday": "1990-03-04"},
    }
    assert unknown.status_code == 404
    assert nobody.json() == {"customers": [], "next_cursor": None}


async def test_search_pages_through_the_api_and_bad_requests_are_422(tmp_path: Path, app_for: AppFor) -> None:
    settings = make_settings(tmp_path)
    tag = uuid.uuid4().hex[:8]
    names = sorted(f"cus_{tag}_{index}" for index in range(3))
    batch = [envelope(name, "customer_updated", "2026-11-20T10:00:00Z") for name in names]
    async with serving(app_for(settings)) as http:
        assert (await http.post("/v1/events", json={"events": batch})).status_code == 202
        first = (await http.get("/v1/customers", params={"q": tag, "limit": 2})).json()
        second = (await http.get("/v1/customers", params={"q": tag, "limit": 2, "cursor": first["next_cursor"]})).json()
        both = await http.get("/v1/customers", params={"q": tag, "email": "a@example.org"})
        bad_cursor = await http.get("/v1/customers", params={"q": tag, "cursor": "not-a-cursor"})

    assert [c["customer_id"] for c in first["customers"] + second["customers"]] == names
    assert second["next_cursor"] is None
    assert both.status_code == 422 and bad_cursor.status_code == 422


async def test_a_broken_projection_never_fails_ingest(
    tmp_path: Path,
    dev_env: WorkflowEnvironment,
    catalog: JourneyCatalog,  # noqa: F811
) -> None:
    settings = make_settings(tmp_path)
    broken = ProfileProjection(get_engine(f"sqlite:///{tmp_path / 'never-migrated.db'}"), settings.signing_secret)
    ingest = Ingest(
        dev_env.client,
        settings.task_queue,
        catalog,
        EventLog(get_engine(settings.database())),
        settings,
        profiles=broken,
    )
    someone = customer()
    event = Event.parse(envelope(someone, "customer_updated", "2026-11-20T10:00:00Z", email="x@example.org"))

    result = await ingest.submit([event])

    assert (result.accepted, result.duplicates) == (1, 0)
    assert await has_workflow(dev_env.client, someone)
    assert broken.failures == 1
    assert profiles(settings).find_by_id(someone) is None


async def test_forget_deletes_the_customers_profile_and_dates_only(
    tmp_path: Path, dev_env: WorkflowEnvironment, app_for: AppFor
) -> None:
    settings = make_settings(tmp_path)
    leaving, staying = customer(), customer()
    batch = [
        envelope(who, "customer_updated", "2026-11-20T10:00:00Z", email=f"{who}@example.org", birthday="1990-03-04")
        for who in (leaving, staying)
    ]
    async with serving(app_for(settings)) as http:
        assert (await http.post("/v1/events", json={"events": batch})).status_code == 202

    report = await forget_customer(dev_env.client, settings, leaving, timeout=timedelta(seconds=1))
    again = await forget_customer(dev_env.client, settings, leaving, timeout=timedelta(seconds=1))

    assert report.profile_rows_deleted == 3  # the profile, the birthday, the time of the last customer_updated
    assert "customer profile rows deleted: 3" in report.lines()
    assert again.profile_rows_deleted == 0
    found = profiles(settings)
    assert found.find_by_id(leaving) is None and found.find_by_email(f"{leaving}@example.org") == []
    assert [c.customer_id for c in found.birthdays_on("03-04").customers] == [staying]


def test_retention_clears_old_plain_contacts_and_keeps_hashes_and_consent(database: str, tmp_path: Path) -> None:
    now = datetime(2026, 11, 24, tzinfo=UTC)
    settings = Settings(_env_file=None, data_dir=tmp_path, database_url=database, retention_days=30)
    projection = ProfileProjection(get_engine(database), settings.signing_secret)

    def updated(customer_id: str, days_ago: int, **properties: Any) -> Event:
        return Event(
            id=f"evt_{uuid.uuid4().hex}",
            type="customer_updated",
            customer_id=customer_id,
            timestamp=now - timedelta(days=days_ago),
            source="web",
            properties=properties,
        )

    projection.record(
        [
            updated("cus_old", 40, email="old@example.org", phone="+447700900001", consent={"email": True}),
            updated("cus_old", 10, phone="+447700900002"),  # stated again since: kept
            updated("cus_new", 5, email="new@example.org"),
            updated("ida@example.org", 45, email="ida@example.org"),  # an email as customer id
        ]
    )

    report = apply_retention(settings, now=now)

    assert report is not None and report.profile_contacts_cleared == 3  # two emails and one id
    found = profiles(settings)
    old = found.find_by_id("cus_old")
    assert old is not None and (old.email, old.phone, old.consent["email"].granted) == (None, "+447700900002", True)
    assert [c.customer_id for c in found.find_by_email("OLD@example.org")] == ["cus_old"]  # by its hash
    new = found.find_by_id("cus_new")
    assert new is not None and new.email == "new@example.org"
    ida = found.find_by_id("ida@example.org")
    assert ida is not None and (ida.customer_id, ida.email) == (None, None)
    assert found.search("ida@example.org").customers == [ida]  # the exact address finds the hash
    repeated = apply_retention(settings, now=now)
    assert repeated is not None and repeated.profile_contacts_cleared == 0

    projection.record([updated("ida@example.org", 0, locale="sv-SE")])  # she is back: her id is known again
    back = found.find_by_id("ida@example.org")
    assert back is not None and (back.customer_id, back.locale, back.email) == ("ida@example.org", "sv-SE", None)
