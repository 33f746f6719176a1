"""Phone numbers as cyklo keeps them: E.164, checked once where a profile comes in and again
before an SMS goes out, by the same rule."""

from __future__ import annotations

import phonenumbers


class InvalidPhone(ValueError):
    pass


def normalize_phone(raw: str, default_region: str) -> str:
    """E.164 form of a valid number without an extension; InvalidPhone says what is wrong.

    The messages leave the number out: they end up in logs and the send ledger."""
    try:
        number = phonenumbers.parse(raw, default_region)
    except phonenumbers.NumberParseException as error:
        raise InvalidPhone(f"invalid phone: not a phone number ({error})") from None
    if number.extension:
        raise InvalidPhone("invalid phone: it has an extension, an SMS cannot dial one")
    if not phonenumbers.is_valid_number(number):
        raise InvalidPhone(
            f"invalid phone: not a valid number for region {default_region} (give it as E.164, e.g. +48601234567)"
        )
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
