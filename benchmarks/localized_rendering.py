"""What a customer's language costs: the flagship's templates rendered in English, Turkish, Russian
and Persian, and how much the journey bundle (what a run snapshots) grows with its translations.

    .venv/bin/python -m benchmarks.localized_rendering

Each template renders with its realistic sample context and the customer's locale set, through
``render_message`` as the send activity calls it (variant choice, Babel filters, ``lang``/``dir``,
the SMS opt-out line). The best of three rounds is printed, so the number is the work itself.
"""

from __future__ import annotations

import zlib
from functools import partial

from benchmarks.utm_tagging import FLAGSHIP, best_of_three
from omnicart.journey.loader import load_journey
from omnicart.journey.model import JourneyBundle
from omnicart.journey.templates import sample_context
from omnicart.rendering import render_message

LOCALES = {"en": "USD", "tr": "TRY", "ru": "RUB", "fa-IR": "IRR"}


def _size(bundle: JourneyBundle) -> str:
    body = bundle.model_dump_json().encode()
    return f"{len(body) / 1024:5.1f} KiB JSON, {len(zlib.compress(body)) / 1024:4.1f} KiB compressed"


def main(rounds: int = 300) -> None:
    bundle = load_journey(FLAGSHIP)
    for name, template in sorted(bundle.templates.items()):
        times = []
        for locale, currency in LOCALES.items():
            context = sample_context(template)
            context["customer"]["locale"] = locale
            context["cart"]["currency"] = currency
            render = partial(render_message, template, context, default_locale=bundle.journey.default_locale)
            times.append(f"{locale} {best_of_three(render, rounds) * 1e6:5.0f} µs")
        print(f"{name:20} " + "   ".join(times))
    english = bundle.model_copy(
        update={"templates": {n: t.model_copy(update={"locales": {}}) for n, t in bundle.templates.items()}})
    print(f"flagship bundle, English only:       {_size(english)}")
    print(f"flagship bundle, with tr, ru and fa: {_size(bundle)}")


if __name__ == "__main__":
    main()
