"""SMS through the real Twilio client, with E.164 numbers and honest segment counts."""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

import requests
from twilio.base.exceptions import TwilioException
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from activities.adapter import Delivery
from activities.provider_errors import (
    ProviderAmbiguous,
    ProviderRejected,
    ProviderRetryable,
    never_connected,
    retry_after_seconds,
)
from definition.phones import normalize_phone
from definition.sms_text import sms_encoding
from definition.statuses import NO_CONSENT, MessageStatus
from settings import Settings
from storage.models import Customer, Message
from workflows.interface import SendRequest

TWILIO_OUTCOMES = {
    "sent": MessageStatus.SENT,
    "delivered": MessageStatus.DELIVERED,
    "read": MessageStatus.DELIVERED,
    "undelivered": MessageStatus.FAILED,
    "failed": MessageStatus.FAILED,
    "canceled": MessageStatus.FAILED,
}
"""What Twilio's message statuses mean for the ledger. The others (queued, accepted, sending,
scheduled) say only that Twilio took the message."""

MAX_SEGMENTS = 10
"""Parts of one SMS: carriers join up to about 10 reliably, and each part is billed."""


def size_problem(text: str) -> str | None:
    """Why this SMS is too long to send, naming the cap; None if it fits."""
    encoding, segments = sms_encoding(text)
    if segments > MAX_SEGMENTS:
        return f"SMS is {segments} segments ({encoding}): at most {MAX_SEGMENTS}"
    return None


class _HttpClient(TwilioHttpClient):
    """Twilio's own HTTP client, optionally sending every *.twilio.com request to another
    base URL (the emulator), and keeping the last answer's headers for Retry-After, which
    TwilioRestException does not carry."""

    def __init__(self, timeout: float, base_url: str | None) -> None:
        super().__init__(timeout=timeout)
        self._base = urlsplit(base_url.rstrip("/")) if base_url else None
        self.last_headers: Mapping[str, str] | None = None

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Response:
        self.last_headers = None
        parts = urlsplit(url)
        host = parts.hostname or ""
        if self._base is not None and (host == "twilio.com" or host.endswith(".twilio.com")):
            # Rewriting every host (api., api.dublin.ie1., …) keeps working when a region or
            # edge is configured, which `client.api.base_url = …` would not.
            url = urlunsplit(
                (self._base.scheme, self._base.netloc, self._base.path + parts.path, parts.query, "")
            )
        response = super().request(method, url, *args, **kwargs)
        self.last_headers = response.headers
        return response


_clients = threading.local()


def twilio_client(settings: Settings) -> Client:
    """The Twilio client for these settings, one per thread: its requests Session is not
    meant to be shared between threads, and `last_headers` must be this call's."""
    key = (
        settings.twilio_account_sid,
        settings.twilio_auth_token,
        settings.twilio_base_url,
        settings.provider_timeout_seconds,
    )
    cache: dict[tuple[object, ...], Client] = _clients.__dict__.setdefault("cache", {})
    if key not in cache:
        http = _HttpClient(settings.provider_timeout_seconds, settings.twilio_base_url)
        cache[key] = Client(settings.twilio_account_sid, settings.twilio_auth_token, http_client=http)
    return cache[key]


def send_sms(to: str, body: str, settings: Settings) -> str:
    """Send; return Twilio's message sid.

    Raises ProviderRetryable (429, 5xx, never connected), ProviderRejected (other 4xx, e.g.
    21211 invalid number, 21610 unsubscribed) or ProviderAmbiguous (the request went out but
    no usable answer came back)."""
    if not (settings.twilio_account_sid and settings.twilio_auth_token):
        # The library would call /Accounts/None/… with the user "None"; say what is wrong instead.
        raise ProviderRejected("configuration", "TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN must be set")
    client = twilio_client(settings)
    try:
        message = client.messages.create(to=to, from_=settings.sms_from, body=body)
    except TwilioException as error:
        # TwilioRestException, and TwilioServiceException for problem-details bodies: both
        # carry the HTTP status and Twilio's error code.
        status = int(getattr(error, "status", 0) or 0)
        code = getattr(error, "code", None)
        text = getattr(error, "msg", None) or getattr(error, "detail", None) or str(error)
        if status == 429 or status >= 500:
            headers = cast(_HttpClient, client.http_client).last_headers
            raise ProviderRetryable(
                f"Twilio {status} ({code}): {text}", retry_after_seconds(headers)
            ) from error
        raise ProviderRejected(str(code or status), f"Twilio rejected the SMS: {text}") from error
    except requests.ConnectionError as error:
        if never_connected(error):
            raise ProviderRetryable(f"Twilio unreachable: {error}") from error
        raise ProviderAmbiguous(f"Twilio did not answer: {error}") from error
    except (requests.RequestException, json.JSONDecodeError) as error:
        # A read timeout, a broken answer, or a 2xx that is not JSON: the request went out.
        raise ProviderAmbiguous(f"Twilio did not answer: {type(error).__name__}: {error}") from error
    return str(message.sid)


class SmsChannel:
    """The SMS adapter (activities.adapter.ChannelAdapter)."""

    def refusal(self, customer: Customer, transactional: bool) -> str | None:
        if not customer.phone:
            return "no phone number"
        if customer.sms_suppressed:
            return "SMS suppressed after STOP"
        if not transactional and not customer.consent_sms:
            return f"{NO_CONSENT} for sms"
        return None

    def destination(self, customer: Customer, request: SendRequest, settings: Settings) -> str:
        assert customer.phone is not None, "refused when claimed"
        return normalize_phone(customer.phone, settings.default_phone_region)

    def check(self, message: Message, rendered: Mapping[str, str]) -> str | None:
        # Kept for `cyklo reconcile`, which matches Twilio's list by segment count.
        message.sms_encoding, message.sms_segments = sms_encoding(rendered["txt"])
        return size_problem(rendered["txt"])

    def deliver(self, delivery: Delivery, settings: Settings) -> str | None:
        return send_sms(delivery.destination, delivery.rendered["txt"], settings)
