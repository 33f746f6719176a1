"""How a provider call went wrong: worth retrying, or never going to work."""

from __future__ import annotations

import socket


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


class ProviderAmbiguous(Exception):
    """The request went out but no answer came (read timeout, reset): the provider may have
    taken the message, so sending again could send it twice."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def never_connected(error: BaseException) -> bool:
    """True if the request provably never reached the provider: safe to send again."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, (ConnectionRefusedError, socket.gaierror)):
            return True
        name = type(seen).__name__
        if name in ("NewConnectionError", "ConnectTimeout", "NameResolutionError"):
            return True
        reason = getattr(seen, "reason", None)
        if isinstance(reason, BaseException) and reason is not seen and never_connected(reason):
            return True
        seen = (
            seen.__cause__
            or seen.__context__
            or (seen.args[0] if seen.args and isinstance(seen.args[0], BaseException) else None)
        )
    return False


class InvalidPhone(ValueError):
    pass
