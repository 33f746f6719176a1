"""How a provider call went wrong: worth retrying, or never going to work."""

from __future__ import annotations


class ProviderRetryable(Exception):
    """429, 5xx, timeouts, connection refused: the same request may succeed later."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


class ProviderRejected(Exception):
    """A permanent 4xx: bad address, unsubscribed number, invalid number."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class InvalidPhone(ValueError):
    pass
