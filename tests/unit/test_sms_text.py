"""How carriers count an SMS: GSM-7 or UCS-2, and the segments it is billed as."""

from __future__ import annotations

import pytest

from definition.sms_text import sms_encoding

pytestmark = pytest.mark.unit


def test_plain_text_is_gsm7_with_160_characters_alone_and_153_per_part() -> None:
    assert sms_encoding("a" * 160) == ("GSM-7", 1)
    assert sms_encoding("a" * 161) == ("GSM-7", 2)
    assert sms_encoding("a" * 306) == ("GSM-7", 2)
    assert sms_encoding("a" * 307) == ("GSM-7", 3)


@pytest.mark.parametrize("character", list("€[]{}^~|\\"))
def test_gsm7_extension_characters_count_twice(character: str) -> None:
    assert sms_encoding(character * 80) == ("GSM-7", 1)
    assert sms_encoding(character * 81) == ("GSM-7", 2)


def test_an_escape_sequence_is_never_split_between_parts() -> None:
    # 306 septets would fit two parts, but the € cannot straddle the first boundary.
    assert sms_encoding("a" * 152 + "€" + "a" * 152) == ("GSM-7", 3)


@pytest.mark.parametrize("letter", list("ąćęłńóśźżĄĆĘŁŃÓŚŹŻ"))
def test_any_polish_letter_forces_ucs2(letter: str) -> None:
    assert sms_encoding(f"Promocja {letter}") == ("UCS-2", 1)


def test_polish_letters_force_ucs2_and_shorter_segments() -> None:
    assert sms_encoding("ą" * 70) == ("UCS-2", 1)
    assert sms_encoding("Dziękujemy" + "a" * 61) == ("UCS-2", 2)
    assert sms_encoding("ż" * 134) == ("UCS-2", 2)
    assert sms_encoding("ż" * 135) == ("UCS-2", 3)


def test_ucs2_counts_utf16_units_and_never_splits_a_surrogate_pair() -> None:
    assert sms_encoding("😀" * 35) == ("UCS-2", 1)
    assert sms_encoding("😀" * 36) == ("UCS-2", 2)
    assert sms_encoding("a" * 66 + "😀" + "a" * 66) == ("UCS-2", 3)
