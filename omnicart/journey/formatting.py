"""Liquid filters that write money, numbers and dates the way the message's language does, with Babel.

``{{ cart.total | money: cart.currency }}`` is ``$1,234.50`` in English, ``₺1.234,50`` in Turkish,
``1 234,50 ₽`` in Russian (the spaces are no-break spaces, U+00A0) and ``‎$ ۱٬۲۳۴٫۵۰`` in Persian.
The locale is the message's (``message.locale``, set by ``omnicart.rendering`` from the variant
chosen for the customer), so a Turkish variant never prints an English date.

Two things Babel (2.18) leaves out and these filters add, both from CLDR:

* **Digits.** Babel takes a locale's symbols (Persian's ``٬`` and ``٫``) from the numbering system
  it is asked for, but always writes ASCII digits. Each locale's *default* numbering system (CLDR's
  choice of what its readers expect: ``arabext`` for Persian, ``latn`` for Turkish, Russian, Hindi
  and, since CLDR 42, most Arabic locales) is used for the symbols, and its digits replace ASCII ones.
* **Currency spacing.** A currency written as letters (``SEK``) is kept apart from the digits by a
  no-break space, as CLDR's ``currencySpacing`` rule says and ICU does: ``SEK 12.50``, not ``SEK12.50``.

python-liquid ships Babel filters too (``liquid.extra``); they read the currency from a context
variable rather than an argument, need pytz and dateutil, and do neither of the above.
"""

from __future__ import annotations

import contextlib
import re
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel import Locale
from babel.dates import format_date
from babel.numbers import format_currency, format_decimal, get_currency_precision
from liquid import RenderContext, Undefined
from liquid.exceptions import FilterArgumentError, FilterValueError
from liquid.filter import with_context

from omnicart.journey.model import DEFAULT_LOCALE
from omnicart.locales import babel_locale

# The first digit of each CLDR numbering system that a locale uses by default, other than latn.
_ZEROS = {
    "arab": "\u0660",  # Arabic-Indic: ٠١٢…
    "arabext": "\u06f0",  # Extended Arabic-Indic (Persian, Urdu, Pashto): ۰۱۲…
    "beng": "\u09e6",  # Bengali
    "deva": "\u0966",  # Devanagari (Marathi, Nepali)
    "mymr": "\u1040",  # Myanmar
    "tibt": "\u0f20",  # Tibetan (Dzongkha)
}
_ASCII_DIGITS = "0123456789"
_LETTER_THEN_DIGIT = re.compile(r"(?<=[^\W\d_])(?=\d)|(?<=\d)(?=[^\W\d_])")
_DATE_FORMATS = ("short", "medium", "long", "full")


def _numbering(locale: Locale) -> str:
    return locale.default_numbering_system or "latn"


def localize_digits(text: str, locale: Locale) -> str:
    """ASCII digits written in the locale's own digits (Persian ``۱۲۳``); unchanged for Latin ones."""
    zero = _ZEROS.get(_numbering(locale))
    if zero is None:
        return text
    return text.translate(str.maketrans(_ASCII_DIGITS, "".join(chr(ord(zero) + n) for n in range(10))))


def _amount(value: Any, filter_name: str) -> Decimal | None:
    """A shop's number, as a number or text ("12.5", "1,234.50"); None when it is missing."""
    if value is None or isinstance(value, Undefined) or value == "":
        return None
    text = str(value).strip().replace(",", "").replace("_", "")
    try:
        amount = Decimal(text)
    except InvalidOperation:
        raise FilterValueError(f"{filter_name}: {value!r} is not an amount", token=None) from None
    if not amount.is_finite():
        raise FilterValueError(f"{filter_name}: {value!r} is not an amount", token=None)
    return amount


def format_money(amount: Any, currency: Any = None, locale: str = DEFAULT_LOCALE) -> str:
    """An amount in a currency as ``locale`` writes it: ``₺1.234,50`` (tr), ``1 234,50 ₽`` (ru).

    A missing amount (null, or a key the event left out) renders as nothing rather than "$0.00",
    which would be a false statement in an email; templates wrap it in ``{% if item.price %}`` so the
    sentence around it goes too. A missing currency prints the bare amount with two decimals. Halves
    round up (a shop's 1,234.505 is 1,234.51), to the currency's own decimals (none for yen).
    """
    value = _amount(amount, "money")
    if value is None:
        return ""
    babel = babel_locale(locale)
    code = "" if currency is None or isinstance(currency, Undefined) else str(currency).strip().upper()
    if not code:
        text = format_decimal(value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP), format="#,##0.00",
                              locale=babel, numbering_system=_numbering(babel))
        return localize_digits(text, babel)
    places = get_currency_precision(code)
    value = value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    text = format_currency(value, code, locale=babel, numbering_system=_numbering(babel))
    return localize_digits(_LETTER_THEN_DIGIT.sub("\xa0", text), babel)


def format_number(value: Any, decimals: Any = None, locale: str = DEFAULT_LOCALE) -> str:
    """A number as ``locale`` writes it (``1.234.567,5`` in tr); ``decimals`` fixes the places shown."""
    amount = _amount(value, "number")
    if amount is None:
        return ""
    babel = babel_locale(locale)
    pattern = None
    if decimals is not None and not isinstance(decimals, Undefined):
        if not isinstance(decimals, int) or not 0 <= decimals <= 6:
            raise FilterArgumentError(f"number: decimals must be 0 to 6, not {decimals!r}", token=None)
        amount = amount.quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_UP)
        pattern = "#,##0" + ("." + "0" * decimals if decimals else "")
    text = format_decimal(amount, format=pattern, locale=babel, numbering_system=_numbering(babel))
    return localize_digits(text, babel)


def format_local_date(
    value: Any, style: Any = "long", locale: str = DEFAULT_LOCALE, timezone: str | None = None
) -> str:
    """A date (or timestamp: its day in the customer's ``timezone``) as ``locale`` writes it:
    ``24 Kasım 2026`` (tr, long), ``24 ноября 2026 г.`` (ru). ``style`` is short, medium, long,
    full or a CLDR pattern such as ``d MMMM``. The calendar is the Gregorian one in every language
    (Babel has no other), so Persian dates are Gregorian dates in Persian words and digits."""
    if value is None or isinstance(value, Undefined) or value == "":
        return ""
    day: date
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = None
        day = value
    else:
        try:
            moment = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
        except ValueError:
            raise FilterValueError(f"local_date: {value!r} is not an ISO 8601 date", token=None) from None
    if moment is not None:
        if moment.tzinfo is not None and timezone:
            with contextlib.suppress(ZoneInfoNotFoundError, ValueError):  # unknown zone: the day as written
                moment = moment.astimezone(ZoneInfo(timezone))
        day = moment.date()
    babel = babel_locale(locale)
    text = format_date(day, format=str(style or "long"), locale=babel)
    return localize_digits(text, babel)


def _message_locale(context: RenderContext | None) -> str:
    if context is None:
        return DEFAULT_LOCALE
    locale = context.get(["message", "locale"], token=None, default=None)
    return locale if isinstance(locale, str) and locale else DEFAULT_LOCALE


@with_context
def money(amount: Any, currency: Any = None, *, context: RenderContext | None = None) -> str:
    """``{{ item.price | money: cart.currency }}`` in the message's language (:func:`format_money`)."""
    return format_money(amount, currency, _message_locale(context))


@with_context
def number(value: Any, decimals: Any = None, *, context: RenderContext | None = None) -> str:
    """``{{ cart.items | size | number }}``, ``{{ points | number: 0 }}`` (:func:`format_number`)."""
    return format_number(value, decimals, _message_locale(context))


@with_context
def local_date(value: Any, style: Any = "long", *, context: RenderContext | None = None) -> str:
    """``{{ trigger.timestamp | local_date }}``, ``{{ birthday | local_date: "d MMMM" }}``
    (:func:`format_local_date`); a timestamp's day is the one in ``customer.timezone``."""
    timezone = None if context is None else context.get(["customer", "timezone"], token=None, default=None)
    return format_local_date(value, style, _message_locale(context), timezone if isinstance(timezone, str) else None)


FILTERS = {"money": money, "number": number, "local_date": local_date}
"""The formatting filters every template environment has."""
