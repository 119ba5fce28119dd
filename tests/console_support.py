"""Shared by the console's tests: a migrated product database with the shipped journeys published,
users of each role, and logging in the way a browser does (form, cookie, CSRF token)."""

from __future__ import annotations

import re
from pathlib import Path

from fastapi.testclient import TestClient
from pydantic import SecretStr

from omnicart.console.app import create_console_app
from omnicart.console.users import ConsoleUsers, Role
from omnicart.journey.loader import load_directory
from omnicart.journey.registry import JourneyRegistry
from omnicart.settings import Settings
from omnicart.storage import get_engine, upgrade

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "correct horse battery"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def console_settings(tmp_path: Path) -> Settings:
    """Settings of a product on ``tmp_path``'s database, with the shipped journeys folder."""
    return Settings(_env_file=None, data_dir=tmp_path, journeys_dir=ROOT / "journeys",
                    signing_secret=SecretStr("console-test-secret"))


def published_product(settings: Settings) -> ConsoleUsers:
    """Migrate, publish the shipped journeys, and create one user per role (named after the role)."""
    upgrade(settings.database())
    engine = get_engine(settings.database())
    JourneyRegistry(engine).publish(load_directory(settings.journeys_dir).bundles.values(), "test")
    users = ConsoleUsers(engine)
    roles: tuple[Role, ...] = ("admin", "editor", "viewer")
    for role in roles:
        users.create(role, PASSWORD, role)
    return users


def logged_in(settings: Settings, username: str) -> tuple[TestClient, str]:
    """A client logged in as ``username``, and the session's CSRF token as its pages carry it."""
    client = TestClient(create_console_app(settings), follow_redirects=False)
    form = client.get("/login")
    token = CSRF.search(form.text)
    assert token is not None
    answer = client.post("/login", data={"username": username, "password": PASSWORD, "csrf_token": token.group(1)})
    assert answer.status_code == 303, answer.text
    page = client.get("/")
    csrf = CSRF.search(page.text)
    assert csrf is not None
    return client, csrf.group(1)
