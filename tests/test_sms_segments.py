"""SMS segment counting: what a shop is billed for one message (GSM 03.38 / 3GPP TS 23.040)."""

from __future__ import annotations

import pytest

from omnicart.channels.sms_segments import count_segments, encoding_for


@pytest.mark.parametrize(
    ("text", "segments"),
    [
        ("a" * 160, 1),  # a single GSM-7 segment holds 160 characters
        ("a" * 161, 2),  # beyond that each segment holds 153
        ("a" * 306, 2),
        ("a" * 307, 3),
    ],
)
def test_gsm7_segments(text: str, segments: int) -> None:
    counted = count_segments(text)
    assert (counted.encoding, counted.units, counted.segments) == ("GSM-7", len(text), segments)


def test_gsm7_accents_and_symbols_of_the_basic_table_cost_one() -> None:
    text = "Ça coute 5£ @ Zürich: ÄÖÑÜ äöñüà èéùìò Δ_ΦΓΛΩΠΨΣΘΞ ¿¡§ 50% off!\n"
    counted = count_segments(text)
    assert (counted.encoding, counted.units) == ("GSM-7", len(text))
    assert encoding_for(text.replace("coute", "coûte")) == "UCS-2"  # û is not in the GSM alphabet


@pytest.mark.parametrize("char", list("^{}\\[~]|€\f"))
def test_extension_table_characters_count_twice(char: str) -> None:
    counted = count_segments(char * 80)
    assert (counted.encoding, counted.units, counted.segments) == ("GSM-7", 160, 1)
    assert count_segments(char * 81).segments == 2


def test_an_escape_pair_never_straddles_two_segments() -> None:
    # 152 + 2 + 152 = 306 septets would fit two 153-septet segments only by splitting the €.
    counted = count_segments("a" * 152 + "€" + "a" * 152)
    assert (counted.units, counted.segments) == (306, 3)


@pytest.mark.parametrize("char", ["ç", "’", "δ", "ł", "中"])
def test_one_character_outside_gsm_switches_to_ucs2(char: str) -> None:
    text = char + "a" * 69
    assert encoding_for(text) == "UCS-2"
    assert count_segments(text).segments == 1  # 70 UCS-2 units fit one segment
    assert count_segments(text + "a").segments == 2  # 71: concatenated, 67 per segment
    assert count_segments(char + "a" * 133).segments == 2  # 134 = 2 x 67
    assert count_segments(char + "a" * 134).segments == 3


def test_emoji_outside_the_bmp_cost_two_units_and_are_not_split() -> None:
    assert count_segments("🛒" * 35).units == 70
    assert count_segments("🛒" * 35).segments == 1
    assert count_segments("🛒" * 36).segments == 2  # 72 units; 33 emoji fit a 67-unit segment
    counted = count_segments("a" * 66 + "🛒" + "a" * 66)
    assert (counted.encoding, counted.units, counted.segments) == ("UCS-2", 134, 3)


def test_empty_text_is_no_segment() -> None:
    assert count_segments("").segments == 0
