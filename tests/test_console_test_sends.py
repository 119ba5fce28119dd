"""A test send reaches the marketer through the product's channel, marked as a test, and leaves no
trace where it would count: no ledger row, no analytics row, no discount code issued."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, select

from omnicart.analytics.store import journey_actions
from omnicart.channels.outbox import read_outbox
from omnicart.console.test_sends import STAND_IN_CODE, TEST_CATEGORY
from omnicart.console.users import ConsoleUsers
from omnicart.discounts import discount_codes
from omnicart.ledger import message_ledger
from omnicart.storage import get_engine
from tests.console_support import console_settings, logged_in, published_product


def test_an_editor_sends_a_discount_email_to_themself_marked_and_counted_nowhere(tmp_path: Path) -> None:
    settings = console_settings(tmp_path)
    published_product(settings)
    client, csrf = logged_in(settings, "editor")
    form = {"csrf_token": csrf, "message": "ten_percent_off:win_back_10", "to": "mara@shop.example"}
    answer = client.post("/journeys/win_back/test-send", data=form)
    assert answer.status_code == 303
    assert "Test of ten_percent_off:win_back_10 sent" in client.get(answer.headers["location"]).text

    [line] = read_outbox(settings.outbox())
    assert line["to"] == ["mara@shop.example"] and line["step_id"] == "ten_percent_off"
    assert line["subject"].startswith("[TEST] ")
    assert STAND_IN_CODE in line["html"] and line["categories"] == [TEST_CATEGORY]
    engine = get_engine(settings.database())
    with engine.connect() as connection:
        for table in (message_ledger, journey_actions, discount_codes):
            assert connection.execute(select(func.count()).select_from(table)).scalar() == 0, table.name
    [entry] = ConsoleUsers(engine).audit("win_back")
    assert (entry.action, entry.username) == ("test_send", "editor")
    assert "mara@shop.example" not in (entry.detail or "")  # the address is personal data: not kept


def test_a_viewer_cannot_send_tests_and_a_step_that_sends_nothing_is_refused(tmp_path: Path) -> None:
    settings = console_settings(tmp_path)
    published_product(settings)
    viewer, viewer_csrf = logged_in(settings, "viewer")
    form = {"csrf_token": viewer_csrf, "message": "ten_percent_off:win_back_10", "to": "v@shop.example"}
    assert viewer.post("/journeys/win_back/test-send", data=form).status_code == 403
    editor, csrf = logged_in(settings, "editor")
    wrong = {"csrf_token": csrf, "message": "redeem:win_back_10", "to": "e@shop.example"}
    assert editor.post("/journeys/win_back/test-send", data=wrong).status_code == 422
    assert not settings.outbox().exists()
