"""How a provider call went wrong: worth retrying, never going to work, or unknowable."""

from __future__ import annotations

import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from typing import ClassVar

import requests
from urllib3.exceptions import ConnectTimeoutError


class ProviderError(Exception):
    kind: ClassVar[str]
    """How it went wrong, as /metrics counts it (cyklo_provider_errors_total)."""


class ProviderRetryable(ProviderError):
    """429, 5xx, or a connection that never carried the request: the same request may succeed later."""

    kind = "retryable"

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


class ProviderRejected(ProviderError):
    """A permanent 4xx: bad address, unsubscribed number, invalid number, bad credentials."""

    kind = "rejected"

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class ProviderAmbiguous(ProviderError):
    """The request went out but no answer came (read timeout, reset): the provider may have
    taken the message, so sending again could send it twice."""

    kind = "ambiguous"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def retry_after_seconds(headers: Mapping[str, str] | None) -> float | None:
    """Seconds the provider asked us to wait: `Retry-After` (seconds or an HTTP date), else
    SendGrid's `X-RateLimit-Reset` (epoch seconds), else None."""
    if not headers:
        return None
    value = headers.get("Retry-After")
    if value is not None:
        try:
            return max(0.0, float(value))
        except ValueError:
            pass
        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None
    reset = headers.get("X-RateLimit-Reset")
    if reset is not None:
        try:
            return max(0.0, float(reset) - time.time())
        except ValueError:
            return None
    return None


def never_connected(error: requests.ConnectionError) -> bool:
    """Whether `requests` failed before the request left: a refused, unresolvable or timed-out
    connection, which is safe to retry, unlike one dropped while waiting for the answer."""
    if isinstance(error, requests.ConnectTimeout):
        return True
    # requests wraps urllib3's MaxRetryError; its reason tells a refused or unresolvable
    # connection (NewConnectionError subclasses ConnectTimeoutError) from a dropped one.
    reason = getattr(error.args[0], "reason", None) if error.args else None
    return isinstance(reason, ConnectTimeoutError)
