"""Regenerate the console's screenshots in docs/console/ from a seeded demo (``scripts/screenshots``).

A throwaway database gets the shipped journeys and a month of 300 demo customers
(``omnicart.console.demo``); the console runs on loopback and Debian's Chromium, headless, takes
one picture of each page. Nothing here touches the product's own database.
"""

from __future__ import annotations

import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from omnicart.console.app import create_console_app  # noqa: E402
from omnicart.console.demo import seed_demo  # noqa: E402
from omnicart.console.users import ConsoleUsers  # noqa: E402
from omnicart.storage import get_engine  # noqa: E402
from tests.console_support import PASSWORD, chromium, console_settings, log_in_by_keyboard, serving  # noqa: E402

OUT = ROOT / "docs" / "console"
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
PERIOD = "since=2026-10-21&until=2026-11-20"


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        settings = console_settings(Path(scratch))
        seed_demo(settings, customers=300, now=NOW)
        ConsoleUsers(get_engine(settings.database())).create("mara", PASSWORD, "editor")
        with serving(create_console_app(settings)) as url, chromium() as browser:
            page = browser.new_page(base_url=url, viewport={"width": 1400, "height": 900})
            page.goto("/login")
            page.screenshot(path=OUT / "login.png")
            log_in_by_keyboard(page, "mara")
            shots = {
                "journeys.png": f"/?{PERIOD}",
                "journey.png": f"/journeys/abandoned_cart?{PERIOD}",
                "experiment.png": f"/journeys/win_back?{PERIOD}",
                "customer.png": "/customers/cus_00007",
            }
            for name, path in shots.items():
                page.goto(path)
                page.wait_for_load_state("networkidle")
                page.screenshot(path=OUT / name, full_page=True)
            page.goto("/preview?sample=cus_ada&journey=abandoned_cart")
            page.get_by_role("button", name="Preview").click()
            page.wait_for_load_state("networkidle")
            # Chromium paints only the frames on screen: make the whole page the screen (one frame per locale).
            page.set_viewport_size({"width": 1400, "height": page.evaluate("document.documentElement.scrollHeight")})
            page.wait_for_timeout(500)
            page.screenshot(path=OUT / "preview.png", full_page=True)
    print(f"screenshots in {OUT.relative_to(ROOT)}: {', '.join(sorted(p.name for p in OUT.glob('*.png')))}")


if __name__ == "__main__":
    main()
