"""Text headed for a log line, with email addresses and phone numbers blotted out.

Provider errors quote the address they refused ("+14155550100 is not a valid phone number"); the
error is worth logging, the address is not.
"""

from __future__ import annotations

import re

_EMAIL = re.compile(r"[\w.+'-]+@[\w-]+(?:\.[\w-]+)+")
_PHONE = re.compile(r"(?<![\w+])\+[1-9][\d ().-]{5,18}\d(?!\w)")


def redact(text: object) -> str:
    """``str(text)`` with every email address as ``[email]`` and every E.164-style number as ``[phone]``."""
    return _PHONE.sub("[phone]", _EMAIL.sub("[email]", str(text)))
