"""The ``identity_links`` table as ingest uses it, on SQLite and PostgreSQL: routing by anonymous id,
the first link winning, a told link not told again, interest moving, and forget erasing links."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pydantic import SecretStr
from sqlalchemy import select

from omnicart.catalog.interest import InterestRecorder, interested_customers
from omnicart.identity import IdentityLinks, anonymous_customer_id, delete_links, identity_links
from omnicart.security.pseudonym import customer_ref
from omnicart.storage import get_engine
from tests.support.identity import event

SECRET = SecretStr("test-signing-secret")
T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)


def test_anonymous_events_go_to_the_visitor_until_the_first_link_and_to_the_customer_after(database: str) -> None:
    links = IdentityLinks(get_engine(database), SECRET)
    visitor = anonymous_customer_id("ck_1", SECRET)
    batch = [
        event("a1", "product_viewed", T0, anonymous_id="ck_1", sku="S"),
        event("k1", "customer_updated", T0 + timedelta(minutes=1), customer_id="cus_ada", anonymous_id="ck_1"),
        event("a2", "product_viewed", T0 + timedelta(minutes=2), anonymous_id="ck_1", sku="S"),
        event("g1", "customer_updated", T0 + timedelta(minutes=3), customer_id="cus_grace", anonymous_id="ck_1"),
        event("a3", "product_viewed", T0 + timedelta(minutes=4), anonymous_id="ck_1", sku="S"),
        event("o1", "product_viewed", T0, customer_id="cus_other", sku="S"),
    ]

    routed = links.route(batch)

    assert [(e.id, e.customer_id) for e in routed.events] == [
        ("a1", visitor), ("k1", "cus_ada"), ("a2", "cus_ada"), ("g1", "cus_grace"), ("a3", "cus_ada"),
        ("o1", "cus_other")]
    assert [(link.anonymous_customer_id, link.customer_id, link.event_id) for link in routed.links] == [
        (visitor, "cus_ada", "k1")]
    assert links.customer_for("ck_1") == "cus_ada"
    with get_engine(database).connect() as connection:
        stored = connection.execute(select(identity_links)).mappings().all()
    assert "ck_1" not in str([dict(row) for row in stored])  # only its keyed hash


def test_a_link_once_told_is_not_told_again_and_an_untold_one_is_told_on_the_retry(database: str) -> None:
    links = IdentityLinks(get_engine(database), SECRET)
    login = event("k1", "customer_updated", T0, customer_id="cus_ada", anonymous_id="ck_1")

    first = links.route([login])
    retried = links.route([login])  # the hand-over failed: the producer sent the batch again
    repeated = links.route([event("k9", "customer_updated", T0, customer_id="cus_ada", anonymous_id="ck_1")])
    assert [link.event_id for link in repeated.links] == ["k9"]  # a later repeat tells it too, while untold
    links.handed_over(retried.links)
    again = links.route([event("k2", "customer_updated", T0, customer_id="cus_ada", anonymous_id="ck_1")])

    assert [link.event_id for link in first.links] == [link.event_id for link in retried.links] == ["k1"]
    assert again.links == []


def test_the_visitors_interest_moves_to_the_customer_and_forget_erases_the_links(database: str) -> None:
    engine = get_engine(database)
    interest = InterestRecorder(engine, SECRET, timedelta(days=30))
    visitor = anonymous_customer_id("ck_1", SECRET)
    views = [event("a1", "product_viewed", T0, anonymous_id="ck_1", sku="SKU-1"),
             event("a2", "product_viewed", T0, anonymous_id="ck_1", sku="SKU-2")]
    interest.record([*IdentityLinks(engine, SECRET).route(views).events,  # as ingest routes them: to the visitor
                     event("k1", "product_viewed", T0 - timedelta(days=1), customer_id="cus_ada", sku="SKU-1")])
    IdentityLinks(engine, SECRET).route([event("k2", "customer_updated", T0, customer_id="cus_ada",
                                               anonymous_id="ck_1")])

    assert interest.move(visitor, "cus_ada") == 2
    assert interest.move(visitor, "cus_ada") == 0  # idempotent

    for sku in ("SKU-1", "SKU-2"):
        page = interested_customers(engine, sku, now=T0)
        assert [(c.customer_id, c.expires_at) for c in page.customers] == [("cus_ada", T0 + timedelta(days=30))]
    with engine.begin() as connection:
        assert delete_links(connection, customer_ref("cus_ada", SECRET)) == 1
    assert IdentityLinks(engine, SECRET).customer_for("ck_1") is None
