"""SMS through the real Twilio client, with E.164 numbers and honest segment counts."""

from __future__ import annotations

import threading
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import phonenumbers
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from activities.provider_errors import (
    InvalidPhone,
    ProviderAmbiguous,
    ProviderRejected,
    ProviderRetryable,
    never_connected,
)
from settings import Settings

GSM7_BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = set("^{}\\[~]|€\f")
"""Sent as escape + character: two septets each."""


def normalize_phone(raw: str, default_region: str) -> str:
    """E.164 form of a mobile-capable number; InvalidPhone says what is wrong."""
    try:
        number = phonenumbers.parse(raw, default_region)
    except phonenumbers.NumberParseException as error:
        raise InvalidPhone(f"invalid phone: not a phone number ({error})") from None
    if number.extension:
        raise InvalidPhone("invalid phone: it has an extension, SMS needs a mobile number")
    if not phonenumbers.is_valid_number(number):
        raise InvalidPhone("invalid phone: not a valid number (give it as E.164, e.g. +48601234567)")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def sms_encoding(text: str) -> tuple[str, int]:
    """('GSM-7' or 'UCS-2', segments) as the carrier will count them."""
    if all(character in GSM7_BASIC or character in GSM7_EXTENSION for character in text):
        septets = sum(2 if character in GSM7_EXTENSION else 1 for character in text)
        return "GSM-7", 1 if septets <= 160 else -(-septets // 153)
    units = len(text.encode("utf-16-le")) // 2
    return "UCS-2", 1 if units <= 70 else -(-units // 67)


class _RedirectingHttpClient(TwilioHttpClient):
    """Sends every *.twilio.com request to another base URL (the emulator)."""

    def __init__(self, base_url: str, timeout: float) -> None:
        super().__init__(timeout=timeout)
        self._base = urlsplit(base_url)

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        parts = urlsplit(url)
        if parts.hostname and parts.hostname.endswith("twilio.com"):
            url = urlunsplit((self._base.scheme, self._base.netloc, parts.path, parts.query, parts.fragment))
        return super().request(method, url, *args, **kwargs)


_clients = threading.local()


def _client(settings: Settings) -> Client:
    key = (settings.twilio_account_sid, settings.twilio_auth_token, settings.twilio_base_url)
    cache: dict[tuple[object, ...], Client] = getattr(_clients, "cache", None) or {}
    _clients.cache = cache
    if key not in cache:
        http: TwilioHttpClient = (
            _RedirectingHttpClient(settings.twilio_base_url, settings.provider_timeout_seconds)
            if settings.twilio_base_url
            else TwilioHttpClient(timeout=settings.provider_timeout_seconds)
        )
        cache[key] = Client(settings.twilio_account_sid, settings.twilio_auth_token, http_client=http)
    return cache[key]


def send_sms(to: str, body: str, settings: Settings) -> str:
    """Send; return Twilio's message sid. Raises ProviderRetryable or ProviderRejected."""
    try:
        message = _client(settings).messages.create(to=to, from_=settings.sms_from, body=body)
    except TwilioRestException as error:
        if error.status == 429 or error.status >= 500:
            raise ProviderRetryable(f"Twilio {error.status} ({error.code}): {error.msg}") from error
        raise ProviderRejected(
            str(error.code or error.status), f"Twilio rejected the SMS: {error.msg}"
        ) from error
    except TwilioException as error:
        raise ProviderRetryable(f"Twilio error: {error}") from error
    except (OSError, ConnectionError) as error:
        if never_connected(error):
            raise ProviderRetryable(f"Twilio unreachable: {error}") from error
        raise ProviderAmbiguous(f"Twilio did not answer: {error}") from error
    return str(message.sid)
