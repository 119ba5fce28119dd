"""The language of one message: which locale variant of a template a customer gets, and how the
rendered message says which language it is in.

A template may have variants per locale (``cart_reminder_1.tr.yaml`` next to ``cart_reminder_1.yaml``,
see docs/JOURNEYS.md). The customer's ``locale`` (BCP 47, from the profile) picks one through a
fallback chain, most specific first: ``fa-IR`` → ``fa`` → the journey's ``default_locale``, whose
words are the template file without a locale in its name. The choice is a pure function of the
template, the customer's locale and the journey's default, so the send activity, ``omnicart
simulate`` and the preview make the same one.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from functools import lru_cache
from typing import Literal

from babel import Locale, UnknownLocaleError

from omnicart.journey.model import DEFAULT_LOCALE, LOCALE_TAG, Template

_TAG = re.compile(LOCALE_TAG)


def normalize(tag: str) -> str:
    """A BCP 47 tag in its canonical case: ``FA_ir`` → ``fa-IR``, ``zh-hant-tw`` → ``zh-Hant-TW``.

    Profiles come from many systems (browsers send ``fa-IR``, POSIX ``fa_IR``, some shops ``FA``); a
    variant must be found whichever way the customer's locale was written.
    """
    parts = tag.strip().replace("_", "-").split("-")
    canonical = [parts[0].lower()]
    for part in parts[1:]:
        if len(part) == 4 and part.isalpha():
            canonical.append(part.title())  # a script: Hant, Cyrl
        elif len(part) in (2, 3) and (part.isalpha() or part.isdigit()):
            canonical.append(part.upper())  # a region: IR, 419
        else:
            canonical.append(part.lower())  # a variant or extension
    return "-".join(canonical)


def fallback_chain(customer_locale: str | None, default_locale: str) -> list[str]:
    """The locales to try, most specific first, ending with the journey's default:
    ``fa-IR`` → ``["fa-IR", "fa", "en"]``. A locale that is not a BCP 47 tag counts as unknown."""
    chain: list[str] = []
    if customer_locale and _TAG.match(customer_locale.strip()):
        parts = normalize(customer_locale).split("-")
        chain = ["-".join(parts[:length]) for length in range(len(parts), 0, -1)]
    default = normalize(default_locale)
    return [*(tag for tag in chain if tag != default), default]


def choose_locale(available: Collection[str], customer_locale: str | None, default_locale: str) -> str:
    """The first locale of the customer's fallback chain that has a variant, else the default."""
    variants = {normalize(tag) for tag in available}
    chain = fallback_chain(customer_locale, default_locale)
    return next((tag for tag in chain[:-1] if tag in variants), chain[-1])


def localized(template: Template, customer_locale: str | None, default_locale: str) -> tuple[Template, str]:
    """The variant of ``template`` a customer with ``customer_locale`` reads, and its locale.

    The variant is the template itself (with its settings: channel, categories, discount) carrying
    that locale's words; the default's words are the template without ``locales``.
    """
    by_tag = {normalize(tag): variant for tag, variant in template.locales.items()}
    locale = choose_locale(by_tag, customer_locale, default_locale)
    return by_tag.get(locale, template), locale


@lru_cache(maxsize=256)
def babel_locale(tag: str) -> Locale:
    """Babel's data for a message locale; a tag Babel does not know (a private ``x-`` tag, a typo
    a validator let through) is formatted as English rather than failing the send."""
    try:
        return Locale.parse(normalize(tag), sep="-")
    except (UnknownLocaleError, ValueError):
        return Locale.parse(DEFAULT_LOCALE)


def text_direction(tag: str) -> Literal["ltr", "rtl"]:
    """``rtl`` for languages written right to left (Persian, Arabic, Hebrew, Urdu), from CLDR."""
    return "rtl" if babel_locale(tag).text_direction == "rtl" else "ltr"


_HTML_ROOT = re.compile(r"<html\b[^>]*>", re.IGNORECASE)
_LANG_OR_DIR = re.compile(r"""\s(?:lang|dir)\s*=\s*(?:"[^"]*"|'[^']*'|[^\s>]+)""", re.IGNORECASE)


def mark_language(html: str, locale: str) -> str:
    """The email's root element says its language and, for right-to-left ones, its direction.

    Mail clients lay out Persian or Arabic right to left only when told (``dir="rtl"``), and screen
    readers pick their voice from ``lang``. The attributes go on ``<html>``; a fragment without one
    of a right-to-left language is wrapped in a ``<div>`` that carries them (a left-to-right one is
    left as written). Whatever the template wrote there is replaced: the variant chosen decides the
    language, not a ``lang="en"`` copied from the English file.
    """
    rtl = text_direction(locale) == "rtl"
    attributes = f' lang="{normalize(locale)}"' + (' dir="rtl"' if rtl else "")
    root = _HTML_ROOT.search(html)
    if root is None:
        return f"<div{attributes}>{html}</div>" if rtl else html
    tag = _LANG_OR_DIR.sub("", root.group(0))
    return f"{html[: root.start()]}{tag[:5]}{attributes}{tag[5:]}{html[root.end():]}"
