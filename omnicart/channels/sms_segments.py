"""How many SMS segments a text costs: GSM-7 when every character fits, UCS-2 otherwise.

Carriers bill per segment, and one character outside the GSM 03.38 alphabet (an emoji, a curly
quote) switches the whole message to UCS-2 and cuts a segment from 160 characters to 70. Marketers
see this number per message so that a template change that doubles the bill is visible.

Rules (GSM 03.38 / 3GPP TS 23.040, as Twilio applies them):

* GSM-7: a character of the basic table costs one septet, one of the extension table (``^{}\\[~]|€``
  and form feed) costs two (escape + character). One segment holds 160 septets; a concatenated
  message holds 153 per segment (7 go to the UDH), and an escape pair is never split across two.
* UCS-2: every UTF-16 code unit costs one; characters outside the BMP (most emoji) cost two. One
  segment holds 70 units, a concatenated one 67, and a surrogate pair is never split.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Encoding = Literal["GSM-7", "UCS-2"]

# GSM 03.38 default alphabet (the escape character 0x1B itself is not a printable member).
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# GSM 03.38 extension table: reached through the escape character, so each costs two septets.
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")

GSM7_SINGLE = 160
GSM7_MULTI = 153
UCS2_SINGLE = 70
UCS2_MULTI = 67


@dataclass(frozen=True)
class SegmentCount:
    """The encoding a text needs, the code units it costs and the segments it is billed as."""

    encoding: Encoding
    units: int
    segments: int


def encoding_for(text: str) -> Encoding:
    """GSM-7 when every character is in the basic or extension table, else UCS-2."""
    if all(char in GSM7_BASIC or char in GSM7_EXTENSION for char in text):
        return "GSM-7"
    return "UCS-2"


def count_segments(text: str) -> SegmentCount:
    """Count the segments of ``text`` as a carrier bills them (an empty text is zero segments)."""
    encoding = encoding_for(text)
    if encoding == "GSM-7":
        costs = [2 if char in GSM7_EXTENSION else 1 for char in text]
        single, multi = GSM7_SINGLE, GSM7_MULTI
    else:
        costs = [2 if ord(char) > 0xFFFF else 1 for char in text]
        single, multi = UCS2_SINGLE, UCS2_MULTI
    units = sum(costs)
    if units <= single:
        return SegmentCount(encoding, units, 1 if units else 0)
    return SegmentCount(encoding, units, _pack(costs, multi))


def _pack(costs: list[int], capacity: int) -> int:
    """Segments needed when no character (escape pair, surrogate pair) may straddle two segments."""
    segments, used = 1, 0
    for cost in costs:
        if used + cost > capacity:
            segments, used = segments + 1, 0
        used += cost
    return segments


OPT_OUT_FOOTER = "Reply STOP to opt out"

OPT_OUT_FOOTERS = {
    "en": OPT_OUT_FOOTER,
    # Turkish without its own letters (ı, ş, ğ, İ are not GSM-7): a body a marketer wrote in plain
    # ASCII Turkish to stay at 160 characters a segment must not be pushed into UCS-2 by the footer.
    "tr": "Iptal icin STOP yazin",
    "ru": "Отписаться: ответьте STOP",
    "fa": "برای لغو، STOP را بفرستید",
}
"""The opt-out line in each language omnicart has one for, by language subtag; others get English.

Every one names the keyword STOP: it is what Twilio's own opt-out handling and our inbound webhook
(``omnicart.api.twilio_webhooks``) act on in every country, so a reply a customer is told to send
always works. A translated keyword (DUR, СТОП) would need Advanced Opt-Out configured at Twilio.
"""


def opt_out_footer(locale: str | None = None) -> str:
    """The opt-out line for a message in ``locale`` (``fa-IR`` reads as ``fa``), English otherwise."""
    language = (locale or "en").replace("_", "-").split("-")[0].lower()
    return OPT_OUT_FOOTERS.get(language, OPT_OUT_FOOTER)


def with_opt_out(body: str, marketing: bool, locale: str | None = None) -> str:
    """A marketing SMS ends with how to opt out (carriers require it), in its language; said once,
    whoever adds it (the renderer, then the Twilio channel, which does not know the language)."""
    if not marketing:
        return body
    folded = body.casefold()
    if any(footer.casefold() in folded for footer in OPT_OUT_FOOTERS.values()):
        return body
    return f"{body.rstrip()}\n{opt_out_footer(locale)}"
