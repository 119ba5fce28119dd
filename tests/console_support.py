"""Shared by the console's tests: a migrated product database with the shipped journeys published,
users of each role, and logging in the way a browser does (form, cookie, CSRF token)."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient
from playwright.sync_api import Browser, Page, expect, sync_playwright
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
CHROMIUM = Path("/usr/bin/chromium")


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


@contextmanager
def serving(app: FastAPI) -> Iterator[str]:
    """The app on a real listener on loopback (as ``omnicart console`` serves it); its base URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "the console did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@contextmanager
def chromium() -> Iterator[Browser]:
    """Debian's Chromium, headless, driven by Playwright (never a browser Playwright downloads)."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
        )
        try:
            yield browser
        finally:
            browser.close()


def log_in_by_keyboard(page: Page, username: str) -> None:
    """Open the console and log in with the keyboard alone, as a screen-reader user would."""
    page.goto("/")
    expect(page.get_by_label("User name")).to_be_focused()
    page.keyboard.type(username)
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Journeys")).to_be_visible()
