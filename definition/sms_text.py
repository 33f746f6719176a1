"""How carriers count an SMS: its encoding (GSM-7 or UCS-2) and the segments it is split into.

One function for the send (the ledger keeps both, `cyklo reconcile` matches by the count),
the channel's size cap, `cyklo preview` and the emulator, so they can never disagree.
"""

from __future__ import annotations

from typing import Literal

SmsEncoding = Literal["GSM-7", "UCS-2"]

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
"""The GSM 03.38 default alphabet. No Polish letter (ą ć ę ł ń ó ś ź ż) is in it."""
GSM7_EXTENSION = frozenset("^{}\\[~]|€\f")
"""Sent as escape + character: two septets each."""


def sms_encoding(text: str) -> tuple[SmsEncoding, int]:
    """('GSM-7' or 'UCS-2', segments) as the carrier will count them.

    GSM-7: 160 septets alone, 153 per part; UCS-2: 70 UTF-16 units alone, 67 per part."""
    if all(character in GSM7_BASIC or character in GSM7_EXTENSION for character in text):
        septets = [2 if character in GSM7_EXTENSION else 1 for character in text]
        return "GSM-7", _segments(septets, single=160, part=153)
    units = [len(character.encode("utf-16-le")) // 2 for character in text]
    return "UCS-2", _segments(units, single=70, part=67)


def _segments(sizes: list[int], single: int, part: int) -> int:
    if sum(sizes) <= single:
        return 1
    # Parts are filled character by character: an escape sequence or a surrogate pair is
    # never split, so a part may end one unit short and the count exceed a plain division.
    count, used = 1, 0
    for size in sizes:
        if used + size > part:
            count, used = count + 1, 0
        used += size
    return count
