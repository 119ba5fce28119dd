"""What UTM tagging adds to rendering a message: the shipped templates rendered with and without it.

    .venv/bin/python -m benchmarks.utm_tagging

Each template renders with its realistic sample context, as ``omnicart validate`` renders it; the
best of three rounds is printed, so the number is the work itself, not the machine's other load.
"""

from __future__ import annotations

import timeit
from collections.abc import Callable
from functools import partial
from pathlib import Path

from omnicart.journey.loader import load_journey
from omnicart.journey.templates import sample_context
from omnicart.rendering import render_message
from omnicart.utm import utm_tagger

FLAGSHIP = Path(__file__).resolve().parent.parent / "journeys" / "abandoned_cart.yaml"


def best_of_three(render: Callable[[], object], rounds: int) -> float:
    """Seconds per call, the best of three rounds."""
    return min(timeit.repeat(render, number=rounds, repeat=3)) / rounds


def main(rounds: int = 500) -> None:
    bundle = load_journey(FLAGSHIP)
    for name, template in sorted(bundle.templates.items()):
        context = sample_context(template)
        tagger = utm_tagger(bundle.journey.utm, journey=bundle.journey.name, channel=template.channel,
                            step_id="first_reminder")
        plain = best_of_three(partial(render_message, template, context), rounds)
        tagged = best_of_three(partial(render_message, template, context, utm=tagger), rounds)
        print(f"{name:20} render {plain * 1e6:7.0f} µs   with UTM {tagged * 1e6:7.0f} µs   "
              f"tagging {(tagged - plain) * 1e6:6.0f} µs per message")


if __name__ == "__main__":
    main()
