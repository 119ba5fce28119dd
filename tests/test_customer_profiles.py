"""The customer profile projection on SQLite and PostgreSQL: the rules it follows, and what it answers.

What a console user or a date-based trigger relies on: each field is the value of the newest event
that stated it (whatever order events arrive in, however many API processes apply them at once, and
exactly as the customer's workflow decides it), and the queries find exactly the matching customers.
"""

from __future__ import annotations

import itertools
import random
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from pydantic import SecretStr

from omnicart.customers.dates import CustomerDate, dates_in
from omnicart.customers.profiles import BadCursor, CustomerProfile, CustomerProfiles
from omnicart.customers.projection import ProfileProjection
from omnicart.engine.interpreter import handle_event
from omnicart.engine.state import CustomerState
from omnicart.events import Event
from omnicart.storage import get_engine
from tests.test_storage import race

SECRET = SecretStr("profile-test-secret")
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
_ids = itertools.count()


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def event(customer_id: str, type_: str, hours: float, **properties: Any) -> Event:
    return Event(
        id=f"evt_{next(_ids)}",
        type=type_,
        customer_id=customer_id,
        timestamp=at(hours),
        source="web",
        properties=properties,
    )


def updated(customer_id: str, hours: float, **properties: Any) -> Event:
    return event(customer_id, "customer_updated", hours, **properties)


def order(customer_id: str, hours: float) -> Event:
    return event(customer_id, "order_placed", hours, order_id=f"ord_{next(_ids)}")


def stores(database: str) -> tuple[ProfileProjection, CustomerProfiles]:
    engine = get_engine(database)
    return ProfileProjection(engine, SECRET), CustomerProfiles(engine, SECRET)


def profile(profiles: CustomerProfiles, customer_id: str) -> CustomerProfile:
    found = profiles.find_by_id(customer_id)
    assert found is not None, f"no profile for {customer_id}"
    return found


def ids(customers: list[CustomerProfile]) -> list[str | None]:
    return [customer.customer_id for customer in customers]


# --- what an event changes ------------------------------------------------------------------------


def test_each_field_keeps_the_newest_events_value_whatever_the_arrival_order(database: str) -> None:
    projection, profiles = stores(database)
    projection.record(
        [
            updated("cus_ada", 5, email="ada@new.example", locale="en-GB", consent={"email": True, "sms": None}),
            event("cus_ada", "consent_changed", 7, channel="sms", granted=True),
            order("cus_ada", 3),
        ]
    )
    # Late arrivals: older values must not undo newer ones, and a newer one for another field applies.
    projection.record(
        [
            updated("cus_ada", 1, email="ada@old.example", locale="tr-TR", timezone="Europe/London"),
            updated("cus_ada", 6, consent={"email": False}),
            event("cus_ada", "consent_changed", 4, channel="sms", granted=False),
            order("cus_ada", 2),
        ]
    )

    ada = profile(profiles, "cus_ada")
    assert (ada.email, ada.locale, ada.timezone) == ("ada@new.example", "en-GB", "Europe/London")
    assert (ada.consent["email"].granted, ada.consent["email"].changed_at) == (False, at(6))
    assert (ada.consent["sms"].granted, ada.consent["sms"].changed_at) == (True, at(7))
    assert (ada.consent["push"].granted, ada.consent["push"].changed_at) == (None, None)
    assert (ada.first_seen_at, ada.last_event_at, ada.last_order_at) == (at(1), at(7), at(3))
    assert ada.workflow_id == "customer/cus_ada"


def test_an_empty_email_clears_it_and_its_hash(database: str) -> None:
    projection, profiles = stores(database)
    projection.record([updated("cus_1", 1, email="one@example.org", phone="+14155550100")])
    projection.record([updated("cus_1", 2, email="")])

    assert profile(profiles, "cus_1").email is None
    assert profiles.find_by_email("one@example.org") == []
    assert ids(profiles.find_by_phone("+14155550100")) == ["cus_1"]


def test_applying_the_same_events_again_changes_nothing(database: str) -> None:
    projection, profiles = stores(database)
    batch = [
        updated("cus_2", 1, email="two@example.org", birthday="1990-03-04"),
        updated("cus_2", 1, email="deux@example.org"),  # same time: the later-applied one wins
        order("cus_2", 2),
    ]
    projection.record(batch)
    once = profile(profiles, "cus_2")
    projection.record(batch)  # the producer resent the batch
    projection.record(batch[2:])

    assert profile(profiles, "cus_2") == once
    assert once.email == "deux@example.org" and once.dates == {"birthday": "1990-03-04"}


def test_the_projection_agrees_with_the_workflows_profile_for_any_arrival_order(database: str) -> None:
    """The same fields the interpreter's ``_learn`` keeps, for shuffled timelines with equal times."""
    projection, profiles = stores(database)
    rng = random.Random(20261124)
    for case in range(12):
        customer = f"cus_agree_{case}"
        timeline = [_random_update(rng, customer) for _ in range(rng.randint(1, 14))]
        state = CustomerState(customer_id=customer)
        for item in timeline:
            handle_event(state, item, [], item.timestamp)
        cut = rng.randint(0, len(timeline))
        projection.record(timeline[:cut])
        projection.record(timeline[cut:])

        mine = profile(profiles, customer)
        theirs = state.profile
        assert (mine.email, mine.phone, mine.locale, mine.timezone) == (
            theirs.email,
            theirs.phone,
            theirs.locale,
            theirs.timezone,
        ), timeline
        assert {channel: c.granted for channel, c in mine.consent.items() if c.granted is not None} == theirs.consent
        assert mine.dates.get("birthday") == theirs.attributes.get("birthday")


def _random_update(rng: random.Random, customer: str) -> Event:
    hours = rng.choice([0, 1, 1, 2, 3])  # repeated times: ties go to the event applied later
    if rng.random() < 0.3:
        channel = rng.choice(["email", "sms"])
        return event(customer, "consent_changed", hours, channel=channel, granted=rng.random() < 0.5)
    properties: dict[str, Any] = {}
    for name, values in (
        ("email", ["a@example.org", "b@example.org", ""]),
        ("phone", ["+14155550100", "+447700900123"]),
        ("locale", ["en-GB", "tr-TR"]),
        ("timezone", ["Europe/London", "Asia/Tokyo"]),
        ("birthday", ["1990-03-04", "1985-12-31"]),
    ):
        if rng.random() < 0.5:
            properties[name] = rng.choice(values)
    if rng.random() < 0.4:
        properties["consent"] = {"email": rng.choice([True, False, None]), "push": rng.choice([True, False])}
    return updated(customer, hours, **properties)


def test_api_processes_applying_overlapping_batches_at_once_end_as_if_applied_one_by_one(database: str) -> None:
    projection, profiles = stores(database)
    customers = [f"cus_race_{index:02}" for index in range(30)]
    events = [
        updated(customer, hours, email=f"{customer}.{hours}@example.org", consent={"sms": hours % 2 == 0})
        for customer in customers
        for hours in range(8)
    ] + [order(customer, 3) for customer in customers]

    def apply(racer: int) -> None:
        mine = random.Random(racer).sample(events, k=len(events) // 2) + events[racer::8]
        for start in range(0, len(mine), 40):
            projection.record(mine[start : start + 40])

    race(apply)
    projection.record(events)  # whatever the racers missed: the result must not depend on who won

    for customer in customers:
        found = profile(profiles, customer)
        assert (found.email, found.consent["sms"].granted) == (f"{customer}.7@example.org", False)
        assert (found.first_seen_at, found.last_event_at, found.last_order_at) == (at(0), at(7), at(3))
    assert len(profiles.everyone(limit=1000).customers) == len(customers)


def test_racing_first_events_of_new_customers_create_each_profile_once(database: str) -> None:
    projection, profiles = stores(database)
    customers = [f"cus_new_{index:03}" for index in range(100)]

    race(lambda racer: projection.record([updated(customer, racer, locale=f"l{racer}") for customer in customers]))

    page = profiles.everyone(limit=1000)
    assert ids(page.customers) == customers
    assert {customer.locale for customer in page.customers} == {"l7"}  # the newest event time won


def test_a_failure_is_logged_and_counted_not_raised(empty_database: str) -> None:
    projection = ProfileProjection(get_engine(empty_database), SECRET)  # never migrated: no table

    assert projection.record_quietly([updated("cus_x", 1, email="x@example.org")]) is False
    assert projection.failures == 1


# --- the dates rule -------------------------------------------------------------------------------


def test_dates_are_read_from_known_names_and_a_dates_object_and_nothing_else() -> None:
    found = dates_in(
        {
            "birthday": "1990-02-29",  # not a real date: ignored
            "subscription_renews_on": "2027-01-15",
            "dates": {"anniversary": "--02-29", "Bad Name": "2020-01-01", "signup": "yesterday", "gone": None},
            "renewal": "2027-01-01",  # a date under a name nobody declared: not read
            "first_name": "Ada",
        }
    )

    assert sorted(found, key=lambda d: d.name) == [
        CustomerDate("anniversary", "--02-29"),
        CustomerDate("gone", None),
        CustomerDate("subscription_renews_on", "2027-01-15"),
    ]
    assert found[0].day == date(2027, 1, 15) and found[0].month_day == "01-15"
    assert dates_in({"birthday": "1990-03-04", "dates": {"birthday": "1991-05-06"}}) == [
        CustomerDate("birthday", "1991-05-06")
    ]


def test_a_cleared_date_leaves_the_profile_and_the_date_queries(database: str) -> None:
    projection, profiles = stores(database)
    projection.record([updated("cus_3", 1, birthday="1990-03-04", dates={"anniversary": "--06-01"})])
    projection.record([updated("cus_3", 2, birthday=None), updated("cus_3", 0, birthday="1970-03-04")])

    assert profile(profiles, "cus_3").dates == {"anniversary": "--06-01"}
    assert profiles.birthdays_on("03-04").customers == []
    assert ids(profiles.dates_on("anniversary", "06-01").customers) == ["cus_3"]


# --- queries --------------------------------------------------------------------------------------


@pytest.fixture
def shop(database: str) -> CustomerProfiles:
    """Six customers with emails, phones, birthdays, renewals and orders."""
    projection, profiles = stores(database)
    projection.record(
        [
            updated("cus_ada", 1, email="Ada@Example.org", phone="+447700900001", birthday="1990-03-04"),
            updated("cus_bob", 1, email="bob@example.org", birthday="1985-03-04", subscription_renews_on="2026-04-01"),
            updated("cus_cem", 1, email="ada@example.org", birthday="1990-03-05"),  # shares Ada's address
            updated("cus_dan", 1, phone="+447700900004", dates={"birthday": "--03-04"}),
            updated("eve@example.net", 1, email="eve@example.net", subscription_renews_on="2026-04-01"),
            updated("cus_fay", 1, locale="tr-TR"),
            order("cus_ada", 10),
            order("cus_bob", -200),
            order("cus_bob", -300),
            order("cus_dan", -100),
            order("eve@example.net", -100),
        ]
    )
    return profiles


def test_find_by_email_any_case_finds_every_customer_with_it(shop: CustomerProfiles) -> None:
    assert ids(shop.find_by_email(" ADA@example.ORG ")) == ["cus_ada", "cus_cem"]
    assert ids(shop.find_by_email("nobody@example.org")) == []
    assert ids(shop.find_by_phone("+447700900004")) == ["cus_dan"]


def test_find_by_id_knows_ids_that_are_emails(shop: CustomerProfiles) -> None:
    eve = shop.find_by_id("eve@example.net")
    assert eve is not None and eve.customer_id == "eve@example.net" and eve.workflow_id.startswith("customer/h-")
    assert shop.find_by_id("cus_nobody") is None


def test_search_matches_part_of_an_id_email_or_phone_page_by_page(shop: CustomerProfiles) -> None:
    first = shop.search("EXAMPLE.org", limit=2)
    assert ids(first.customers) == ["cus_ada", "cus_bob"] and first.next_cursor is not None
    second = shop.search("EXAMPLE.org", cursor=first.next_cursor, limit=2)
    assert ids(second.customers) == ["cus_cem"] and second.next_cursor is None

    assert ids(shop.search("7700900").customers) == ["cus_ada", "cus_dan"]
    assert ids(shop.search("_f").customers) == ["cus_fay"]
    assert ids(shop.search("100%").customers) == []  # a LIKE wildcard is a character here


def test_birthdays_on_a_month_day_with_or_without_a_year(shop: CustomerProfiles) -> None:
    assert ids(shop.birthdays_on("03-04").customers) == ["cus_ada", "cus_bob", "cus_dan"]
    assert ids(shop.birthdays_on("03-05").customers) == ["cus_cem"]
    assert shop.birthdays_on("12-25").customers == []
    page = shop.birthdays_on("03-04", limit=2)
    rest = shop.birthdays_on("03-04", cursor=page.next_cursor, limit=2)
    assert ids(page.customers) + ids(rest.customers) == ["cus_ada", "cus_bob", "cus_dan"]


def test_customers_by_exact_date(shop: CustomerProfiles) -> None:
    renewing = shop.date_is("subscription_renews_on", date(2026, 4, 1)).customers
    assert ids(renewing) == ["cus_bob", "eve@example.net"]
    assert shop.date_is("subscription_renews_on", date(2026, 4, 2)).customers == []


def test_last_order_before_lists_oldest_first_and_pages(shop: CustomerProfiles) -> None:
    everyone_before = shop.last_order_before(at(0))
    assert ids(everyone_before.customers) == ["cus_bob", "cus_dan", "eve@example.net"]
    assert [customer.last_order_at for customer in everyone_before.customers] == [at(-200), at(-100), at(-100)]

    first = shop.last_order_before(at(0), limit=1)
    second = shop.last_order_before(at(0), cursor=first.next_cursor, limit=1)
    third = shop.last_order_before(at(0), cursor=second.next_cursor, limit=1)
    assert ids(first.customers + second.customers + third.customers) == ["cus_bob", "cus_dan", "eve@example.net"]
    assert third.next_cursor is None
    assert ids(shop.last_order_before(at(-150)).customers) == ["cus_bob"]


def test_a_cursor_that_was_not_handed_out_is_refused(shop: CustomerProfiles) -> None:
    for cursor in ("garbage!", "WyJhIiwiYiJd", ""):
        with pytest.raises(BadCursor):
            shop.search("example", cursor=cursor or "e30")
    with pytest.raises(BadCursor):
        shop.last_order_before(at(0), cursor="WyJub3QgYSB0aW1lIiwiYiJd")
