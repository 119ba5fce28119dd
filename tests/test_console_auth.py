"""The console's door: users log in with a password, sessions end, every change needs the page's
CSRF token, viewers only look, and guessing passwords is slowed down."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from omnicart.cli import app
from omnicart.console.app import create_console_app
from omnicart.console.users import SESSION_LIFETIME, ConsoleUsers, UserExists, hash_password, verify_password
from omnicart.journey.registry import JourneyRegistry
from omnicart.settings import Settings, get_settings
from omnicart.storage import get_engine, upgrade
from tests.console_support import CSRF, PASSWORD, console_settings, logged_in, published_product


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    settings = console_settings(tmp_path)
    published_product(settings)
    return settings


def test_passwords_are_stored_salted_and_checked_by_scrypt() -> None:
    first, second = hash_password("s3cret-pass"), hash_password("s3cret-pass")
    assert first != second and "s3cret-pass" not in first
    assert first.startswith("scrypt$")
    assert verify_password("s3cret-pass", first)
    assert not verify_password("s3cret-pasS", first)
    assert not verify_password("s3cret-pass", "not a hash")


def test_a_page_without_a_session_sends_the_browser_to_the_login_form(settings: Settings) -> None:
    client = TestClient(create_console_app(settings), follow_redirects=False)
    answer = client.get("/journeys/abandoned_cart")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/login?next=/journeys/abandoned_cart"


def test_logging_in_opens_the_journeys_and_logging_out_ends_the_session(settings: Settings) -> None:
    client, csrf = logged_in(settings, "viewer")
    page = client.get("/")
    assert page.status_code == 200
    assert "abandoned_cart" in page.text and "viewer (viewer)" in page.text
    cookie = client.cookies["omnicart_console"]
    assert client.post("/logout", data={"csrf_token": csrf}).status_code == 303
    client.cookies.set("omnicart_console", cookie)  # the old cookie, replayed, opens nothing
    assert client.get("/").status_code == 303


def test_a_wrong_password_is_refused_and_repeated_failures_are_throttled(settings: Settings) -> None:
    client = TestClient(create_console_app(settings), follow_redirects=False)
    token = CSRF.search(client.get("/login").text)
    assert token is not None
    wrong = {"username": "editor", "password": "guess", "csrf_token": token.group(1)}
    answers = [client.post("/login", data=wrong).status_code for _ in range(6)]
    assert answers == [401] * 5 + [429]
    right = {**wrong, "password": PASSWORD}
    assert client.post("/login", data=right).status_code == 429  # even the right one waits out the window
    other = {**right, "username": "admin"}
    assert client.post("/login", data=other).status_code == 303  # another account is not locked by it


def test_the_login_form_needs_its_own_csrf_token(settings: Settings) -> None:
    client = TestClient(create_console_app(settings), follow_redirects=False)
    client.get("/login")
    answer = client.post("/login", data={"username": "admin", "password": PASSWORD, "csrf_token": "forged"})
    assert answer.status_code == 403


def test_a_change_without_the_sessions_csrf_token_is_refused(settings: Settings) -> None:
    client, _csrf = logged_in(settings, "editor")
    assert client.post("/journeys/abandoned_cart/pause", data={"runs": "go_on"}).status_code == 403
    assert client.post("/journeys/abandoned_cart/pause", data={"csrf_token": "x" * 43}).status_code == 403
    assert JourneyRegistry(get_engine(settings.database())).published()["abandoned_cart"].status == "active"


def test_a_viewer_can_look_but_not_pause(settings: Settings) -> None:
    client, csrf = logged_in(settings, "viewer")
    page = client.get("/journeys/abandoned_cart")
    assert page.status_code == 200 and "Pause journey" not in page.text and "Validate and publish" not in page.text
    assert client.post("/journeys/abandoned_cart/pause", data={"csrf_token": csrf}).status_code == 403
    assert JourneyRegistry(get_engine(settings.database())).published()["abandoned_cart"].status == "active"


def test_an_editor_pauses_and_resumes_and_both_are_recorded_with_their_name(settings: Settings) -> None:
    client, csrf = logged_in(settings, "editor")
    assert client.post("/journeys/abandoned_cart/pause", data={"csrf_token": csrf, "runs": "go_on"}).status_code == 303
    engine = get_engine(settings.database())
    registry = JourneyRegistry(engine)
    assert registry.published()["abandoned_cart"].status == "paused"
    assert client.post("/journeys/abandoned_cart/resume", data={"csrf_token": csrf}).status_code == 303
    assert registry.published()["abandoned_cart"].status == "active"
    assert [(c.change, c.by) for c in registry.changes("abandoned_cart")][-2:] == [("paused", "editor"),
                                                                                   ("resumed", "editor")]
    audit = ConsoleUsers(engine).audit("abandoned_cart")
    assert [(entry.action, entry.username) for entry in audit] == [("resumed", "editor"), ("paused", "editor")]
    assert audit[1].detail == "no new entries; runs under way go on"


def test_a_session_ends_after_its_lifetime(settings: Settings) -> None:
    users = ConsoleUsers(get_engine(settings.database()))
    user = users.authenticate("admin", PASSWORD)
    assert user is not None
    started = datetime.now(UTC)
    token, _session = users.start_session(user, now=started)
    assert users.session(token, now=started + SESSION_LIFETIME - timedelta(seconds=1)) is not None
    assert users.session(token, now=started + SESSION_LIFETIME) is None


def test_user_names_are_unique(settings: Settings) -> None:
    with pytest.raises(UserExists):
        ConsoleUsers(get_engine(settings.database())).create("admin", "another password", "viewer")


def test_the_login_link_never_sends_anyone_off_the_console(settings: Settings) -> None:
    client = TestClient(create_console_app(settings), follow_redirects=False)
    token = CSRF.search(client.get("/login?next=//evil.example/x").text)
    assert token is not None
    answer = client.post("/login", data={"username": "admin", "password": PASSWORD, "csrf_token": token.group(1),
                                         "next": "https://evil.example/"})
    assert answer.headers["location"] == "/"


def test_the_first_admin_is_created_from_the_command_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = console_settings(tmp_path)
    upgrade(settings.database())
    monkeypatch.setenv("OMNICART_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()
    try:
        typed = "long enough\nlong enough\n"  # the password, asked for twice and never echoed
        made = CliRunner().invoke(app, ["users", "create", "ana", "--role", "admin"], input=typed)
        refused = CliRunner().invoke(app, ["users", "create", "bob", "--role", "owner", "--password", "long enough"])
        again = CliRunner().invoke(app, ["users", "create", "ana", "--password", "another one"])
    finally:
        get_settings.cache_clear()
    assert made.exit_code == 0 and "created ana (admin)" in made.output
    assert refused.exit_code != 0 and "admin, editor, viewer" in refused.output
    assert again.exit_code == 1
    user = ConsoleUsers(get_engine(settings.database())).authenticate("ana", "long enough")
    assert user is not None and user.role == "admin" and user.can_change
