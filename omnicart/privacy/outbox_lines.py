"""Removing lines from the local outbox file (it holds whole rendered messages, addresses included)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any


def drop_outbox_lines(path: Path, drop: Callable[[dict[str, Any]], bool]) -> int:
    """Rewrite ``path`` without the lines ``drop`` selects; how many went. Atomic (write, then rename)."""
    if not path.exists():
        return 0
    kept: list[str] = []
    dropped = 0
    for line in path.read_text(encoding="utf-8").splitlines(keepends=True):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            kept.append(line)
            continue
        if isinstance(record, dict) and drop(record):
            dropped += 1
        else:
            kept.append(line)
    if dropped:
        temporary = path.with_name(path.name + ".tmp")
        temporary.write_text("".join(kept), encoding="utf-8")
        os.replace(temporary, path)
    return dropped
