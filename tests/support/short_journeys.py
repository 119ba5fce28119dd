"""Shipped journeys with hours played as seconds, for end-to-end tests on the real dev server."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from tests.support.bundles import JOURNEYS

# The flagship's 1 h / 24 h / 72 h touches as 1 s / 3 s / 5 s: the whole journey in five seconds.
FAST = {"1h": "1s", "24h": "3s", "72h": "5s", "2h": "2s"}


def copy_with_seconds(
    target: Path,
    names: tuple[str, ...] = ("abandoned_cart.yaml",),
    keep_quiet_hours: bool = False,
    durations: dict[str, str] | None = None,
) -> Path:
    """Copy journeys (and all templates) into ``target`` with short durations.

    ``durations`` maps a written duration to its replacement (default ``FAST``; any other ``Nh``
    becomes ``Ns``). Quiet hours are dropped unless asked for: on this scale the wall clock decides.
    """
    mapping = FAST if durations is None else durations
    target.mkdir(parents=True, exist_ok=True)
    shutil.copytree(JOURNEYS / "templates", target / "templates", dirs_exist_ok=True)
    for name in names:
        text = (JOURNEYS / name).read_text()
        text = re.sub(r"\b(\d+h)\b", lambda m: mapping.get(m.group(1), m.group(1)[:-1] + "s"), text)
        if not keep_quiet_hours:
            text = re.sub(r"\nquiet_hours:\n(  .*\n)+", "\n", text)
        (target / name).write_text(text)
    return target
