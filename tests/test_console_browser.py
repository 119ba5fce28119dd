"""The console in a real browser (headless Debian Chromium through Playwright): a marketer logs in,
opens the flagship and reads the same numbers ``omnicart report`` prints, previews a message,
publishes a change and sees the version move, pauses, and opens a customer's timeline. Every page
is checked with axe-core (vendored under tests/support/axe) for serious or critical violations,
and the pages work from the keyboard.

The product database is a seeded demo (``omnicart.console.demo``): the shipped journeys, and what
the interpreter would have recorded for a month of 60 customers.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from omnicart.analytics.present import stored_report
from omnicart.console.app import create_console_app
from omnicart.console.demo import seed_demo
from omnicart.console.users import ConsoleUsers
from omnicart.journey.registry import JourneyRegistry
from omnicart.settings import Settings
from omnicart.storage import get_engine
from tests.console_support import CHROMIUM, PASSWORD, chromium, console_settings, log_in_by_keyboard, serving

AXE = Path(__file__).parent / "support" / "axe" / "axe.min.js"
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
SINCE, UNTIL = "2026-10-21", "2026-11-20"  # the console's period: whole days, the last one included

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="scripts/test installs Debian's chromium")


@pytest.fixture(scope="module")
def product(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    settings = console_settings(tmp_path_factory.mktemp("console"))
    seed_demo(settings, customers=60, now=NOW)
    ConsoleUsers(get_engine(settings.database())).create("mara", PASSWORD, "editor")
    return settings


@pytest.fixture(scope="module")
def console_url(product: Settings) -> Iterator[str]:
    with serving(create_console_app(product)) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as browser:
        yield browser


@pytest.fixture
def page(browser: Browser, console_url: str) -> Iterator[Page]:
    """A fresh browser context, logged in as the editor with the keyboard alone."""
    context = browser.new_context(base_url=console_url)
    page = context.new_page()
    log_in_by_keyboard(page, "mara")
    yield page
    context.close()


def serious_violations(page: Page) -> list[dict[str, Any]]:
    """axe-core's serious and critical findings on the page as it is now."""
    page.add_script_tag(path=str(AXE))
    results: dict[str, Any] = page.evaluate("async () => await axe.run(document)")
    return [
        {"id": found["id"], "impact": found["impact"], "nodes": [node["target"] for node in found["nodes"]][:3]}
        for found in results["violations"]
        if found["impact"] in ("serious", "critical")
    ]


def report_of(product: Settings, journey: str) -> Any:
    since = datetime.fromisoformat(SINCE).replace(tzinfo=UTC)
    until = datetime.fromisoformat(UNTIL).replace(tzinfo=UTC) + timedelta(days=1)
    return stored_report(product.database(), journey, "step", since, until)


def test_the_journeys_page_shows_what_omnicart_report_says(page: Page, product: Settings) -> None:
    page.goto(f"/?since={SINCE}&until={UNTIL}")
    for journey in ("abandoned_cart", "browse_abandonment"):
        report = report_of(product, journey)
        row = page.locator(f"tr[data-journey='{journey}']")
        assert report.entered_customers > 0
        expect(row.locator(".entered")).to_have_text(str(report.entered_customers))
        expect(row.locator(".converted")).to_have_text(str(report.converted_customers))
        expect(row).to_contain_text("active")
    assert serious_violations(page) == []


def test_the_flagship_is_drawn_with_each_steps_counts_from_the_report(page: Page, product: Settings) -> None:
    page.goto(f"/?since={SINCE}&until={UNTIL}")
    page.get_by_role("link", name="abandoned_cart").click()
    page.goto(page.url + f"?since={SINCE}&until={UNTIL}")
    expect(page.locator(".diagram svg")).to_be_visible()  # Mermaid drew it, from the vendored script
    report = report_of(product, "abandoned_cart")
    expect(page.locator("#entered")).to_have_text(str(report.entered_customers))
    expect(page.locator("#converted")).to_have_text(str(report.converted_customers))
    groups = {group.key: group for group in report.groups}
    for step in ("first_reminder", "second_reminder", "last_chance"):
        cell = page.locator(f"tr[data-step='{step}'] td").last
        expect(cell).to_contain_text(f"sent {groups[step].sent}")
        expect(page.locator(".diagram svg")).to_contain_text(f"sent {groups[step].sent}")
    for reason, count in groups["second_reminder"].skipped.items():
        expect(page.locator("tr[data-step='second_reminder']")).to_contain_text(f"skipped {reason} {count}")
    assert serious_violations(page) == []


def test_a_split_is_drawn_with_its_variants_and_the_experiment_read_out(page: Page) -> None:
    page.goto(f"/journeys/win_back?since={SINCE}&until={UNTIL}")
    diagram = page.locator(".diagram svg")
    expect(diagram).to_contain_text("ten_percent (50)")
    expect(diagram).to_contain_text("twenty_percent (50)")
    page.goto("/journeys/browse_abandonment")
    expect(page.locator(".diagram svg")).to_contain_text("timeout")


def test_a_preview_renders_the_email_in_a_sandboxed_frame(page: Page) -> None:
    page.get_by_role("link", name="Preview").click()
    page.get_by_label("Sample customer").select_option("cus_ada")
    page.get_by_role("button", name="Load").click()
    page.get_by_label("Journey", exact=True).select_option("abandoned_cart")
    page.get_by_role("button", name="Preview").click()
    frame = page.locator("iframe.email").first
    expect(frame).to_have_attribute("sandbox", "")
    expect(page.frame_locator("iframe.email").first.locator("body")).to_contain_text("Ada")
    expect(page.locator("#preview-actions")).to_contain_text("send")
    assert serious_violations(page) == []


def test_publishing_an_edit_moves_the_version_and_a_broken_edit_says_where(page: Page, product: Settings) -> None:
    registry = JourneyRegistry(get_engine(product.database()))
    before = registry.published()["browse_abandonment"].version
    page.goto("/journeys/browse_abandonment")
    expect(page.locator("#journey-version")).to_have_text(before)
    editor = page.get_by_label("Edit and publish", exact=False)
    original = editor.input_value()
    editor.fill(original.replace("steps:", "steps:\n  - wait: nonsense", 1))
    page.get_by_role("button", name="Validate and publish").click()
    expect(page.get_by_role("alert")).to_contain_text("Not published")
    expect(page.locator("li.has-problem").first).to_contain_text("nonsense")
    assert registry.published()["browse_abandonment"].version == before

    page.get_by_label("Edit and publish", exact=False).fill(original.replace("max_age: 1d", "max_age: 2d", 1))
    page.get_by_role("button", name="Validate and publish").click()
    after = registry.published()["browse_abandonment"].version
    assert after != before
    expect(page.locator("#journey-version")).to_have_text(after)
    expect(page.locator("section[aria-labelledby='history'] tbody tr").first).to_contain_text("mara")
    assert registry.version(before) is not None  # runs under way keep theirs


def test_pausing_stops_new_entries_and_says_who(page: Page, product: Settings) -> None:
    page.goto("/journeys/win_back")
    page.get_by_role("button", name="Pause journey").click()
    expect(page.locator("#journey-status")).to_have_text("paused")
    assert JourneyRegistry(get_engine(product.database())).published()["win_back"].status == "paused"
    expect(page.locator("section[aria-labelledby='history'] tbody tr").first).to_contain_text("paused")
    page.get_by_role("button", name="Resume journey").click()
    expect(page.locator("#journey-status")).to_have_text("active")


def test_a_customer_is_found_by_email_and_shows_one_timeline(page: Page) -> None:
    page.get_by_role("link", name="Customers").click()
    page.get_by_label("Customer id, email or phone").fill("CUS_00007@example.com")
    page.keyboard.press("Enter")
    page.get_by_role("link", name="cus_00007").click()
    expect(page.get_by_role("heading", name="Customer cus_00007")).to_be_visible()
    expect(page.locator("#consent")).to_contain_text("granted")
    timeline = page.locator("#timeline")
    expect(timeline).to_contain_text("customer_updated")
    assert serious_violations(page) == []


def test_the_skip_link_takes_the_keyboard_past_the_navigation(page: Page) -> None:
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("main")).to_be_focused()
