"""Which dates a ``customer_updated`` event tells us about (a birthday, a renewal), read generically.

Shops send dates under a few well-known property names, or several at once in a ``dates`` object;
a tracking plan may declare more of them later. So the rule is by shape, not by schema:

* a property named in :data:`KNOWN_DATE_NAMES`, or any key of a ``dates`` object whose name is a
  snake_case word of at most 64 characters;
* whose value is an ISO date, ``YYYY-MM-DD``, or a date without a year, ``--MM-DD`` (a birthday a
  customer gave without the year, the vCard form);
* ``null`` clears that date (the customer removed it); any other value is not a date and is ignored
  here (the workflow keeps it as a profile attribute all the same).

A name given both ways in one event (``birthday`` and ``dates.birthday``) takes the ``dates`` value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import Any

KNOWN_DATE_NAMES = ("birthday", "subscription_renews_on")
DATES_OBJECT = "dates"
_NAME = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")
_MAX_NAME_CHARS = 64
_FULL = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_YEARLESS = re.compile(r"^--(\d{2})-(\d{2})$")
_LEAP_YEAR = 2000  # checks that a year-less --MM-DD exists in some year (02-29 does)


@dataclass(frozen=True)
class CustomerDate:
    """One named date of a customer; ``value`` None means the date was cleared."""

    name: str
    value: str | None
    """As given: ``YYYY-MM-DD`` or ``--MM-DD``."""

    @property
    def month_day(self) -> str | None:
        """``MM-DD``: what "whose birthday is today" compares."""
        return None if self.value is None else self.value[-5:]

    @property
    def day(self) -> date | None:
        """The full date, when it has a year."""
        return date.fromisoformat(self.value) if self.value is not None and _FULL.match(self.value) else None


def dates_in(properties: dict[str, Any]) -> list[CustomerDate]:
    """The dates a ``customer_updated`` event's properties state (set or cleared), by the rule above."""
    found: dict[str, CustomerDate] = {}
    candidates: list[tuple[str, Any]] = [(name, properties[name]) for name in KNOWN_DATE_NAMES if name in properties]
    nested = properties.get(DATES_OBJECT)
    if isinstance(nested, dict):
        candidates += list(nested.items())
    for name, value in candidates:
        if not (isinstance(name, str) and len(name) <= _MAX_NAME_CHARS and _NAME.match(name)):
            continue
        if value is None:
            found[name] = CustomerDate(name, None)
        elif isinstance(value, str) and _is_date(value):
            found[name] = CustomerDate(name, value)
    return list(found.values())


def _is_date(text: str) -> bool:
    try:
        if _FULL.match(text):
            date.fromisoformat(text)
            return True
        yearless = _YEARLESS.match(text)
        if yearless:
            date(_LEAP_YEAR, int(yearless[1]), int(yearless[2]))
            return True
    except ValueError:
        return False
    return False
