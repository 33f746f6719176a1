"""uvicorn's logging with secrets kept out: `cyklo api` writes access lines, and none may carry a key.

Keys no longer belong in URLs (api/auth.py refuses them), but a client can still send one
there, and that refused request is logged too. So an access line keeps the values of known,
harmless query parameters only, and every line, access or not, has the configured secrets and
any `Bearer …` credential replaced before it is written.
"""

from __future__ import annotations

import copy
import logging
import re
from collections.abc import Iterable
from typing import Any

from uvicorn.config import LOGGING_CONFIG

from api.auth import parse_keys
from settings import Settings

REDACTED = "[redacted]"
# Query parameters whose values the API and the support page use and that hold no secret.
HARMLESS_PARAMETERS = frozenset({"stage", "limit", "next", "notice", "customer"})
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[^\s\"',]+")
_PARAMETER_NAME = re.compile(r"[A-Za-z0-9_.\-\[\]]{1,64}")


class RedactSecrets(logging.Filter):
    """Rewrites a record so that no secret reaches the handler's output; never drops a record."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        # Longest first: a secret that contains another is replaced whole.
        self._secrets = sorted({secret for secret in secrets if len(secret) >= 8}, key=len, reverse=True)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "uvicorn.access" and isinstance(record.args, tuple) and len(record.args) == 5:
            # uvicorn's AccessFormatter reads these five arguments by position; keep their shape.
            client, method, path, version, status_code = record.args
            record.args = (client, method, self._scrub(redact_query(str(path))), version, status_code)
            return True
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            return True  # a malformed call: the handler reports it as logging always does
        scrubbed = self._scrub(message)
        if scrubbed != message:
            record.msg, record.args = scrubbed, ()
        return True

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return _BEARER.sub(lambda found: f"{found.group(1)} {REDACTED}", text)


def redact_query(path: str) -> str:
    """`/x?stage=new&key=K` → `/x?stage=new&key=[redacted]`: only harmless values survive."""
    path, separator, query = path.partition("?")
    if not separator:
        return path
    kept = []
    for pair in query.split("&"):
        name, equals, _ = pair.partition("=")
        if equals and name in HARMLESS_PARAMETERS:
            kept.append(pair)
        elif equals and _PARAMETER_NAME.fullmatch(name):
            kept.append(f"{name}={REDACTED}")
        elif pair:
            kept.append(REDACTED)
    return f"{path}?{'&'.join(kept)}"


def secrets_of(settings: Settings) -> list[str]:
    """Every secret the API process knows: its keys and the credentials it holds."""
    return [
        *parse_keys(settings.api_keys),
        settings.session_secret,
        settings.sendgrid_api_key,
        settings.twilio_auth_token,
        settings.webhook_secret,
    ]


def log_config(settings: Settings) -> dict[str, Any]:
    """uvicorn's own logging configuration with RedactSecrets on each of its handlers."""
    config = copy.deepcopy(LOGGING_CONFIG)
    config["filters"] = {"redact": {"()": RedactSecrets, "secrets": secrets_of(settings)}}
    for handler in config["handlers"].values():
        handler["filters"] = ["redact"]
    return config
