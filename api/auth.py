"""API keys with scopes, from the environment (CYKLO_API_KEYS=`KEY=events,support:read;…`).

A key travels only in a header. One in a URL would be written into access logs, proxy logs
and browser history, so a request carrying one is refused, even when its header is right:
the caller learns to fix the URL before the key has spread further.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass

from fastapi import Request

from definition.problems import SaidToPeople

SCOPES = frozenset({"events", "support:read", "support:write", "reports", "metrics", "import"})
URL_KEY_PARAMETERS = ("key", "api_key")
KEY_IN_URL_REFUSED = (
    "API keys in URLs are refused (they end up in logs and browser history): "
    "send `Authorization: Bearer KEY` instead"
)


class ApiKeyError(SaidToPeople, ValueError):
    pass


@dataclass(frozen=True)
class Caller:
    """Who presented a known key: a label safe to record as the "by" of an action, and its scopes."""

    label: str
    scopes: frozenset[str]


def parse_keys(text: str) -> dict[str, frozenset[str]]:
    """`KEY=scope,scope;KEY2=scope` → {key: scopes}; a bad entry is an error naming it."""
    keys: dict[str, frozenset[str]] = {}
    for number, entry in enumerate(filter(None, (part.strip() for part in text.split(";"))), start=1):
        key, separator, scopes_text = entry.partition("=")
        scopes = frozenset(filter(None, (scope.strip() for scope in scopes_text.split(","))))
        if not separator or len(key.strip()) < 16:
            raise ApiKeyError(
                f"CYKLO_API_KEYS entry {number}: use KEY=scope,… with a key of 16 characters or more"
            )
        unknown = scopes - SCOPES
        if unknown or not scopes:
            raise ApiKeyError(
                f"CYKLO_API_KEYS entry {number}: unknown scope {', '.join(sorted(unknown)) or '(none)'}; "
                f"use {', '.join(sorted(SCOPES))}"
            )
        keys[key.strip()] = scopes
    return keys


def key_label(key: str) -> str:
    """Enough of a key to tell keys apart in a support action's record, too little to use it."""
    return f"key …{key[-4:]}"


def identify(keys: Mapping[str, frozenset[str]], presented: str) -> Caller | None:
    """The caller a presented key belongs to, compared in constant time; None if unknown."""
    for key, scopes in keys.items():
        if hmac.compare_digest(key.encode(), presented.encode()):
            return Caller(key_label(key), scopes)
    return None


def has_key_in_url(request: Request) -> bool:
    return any(name in request.query_params for name in URL_KEY_PARAMETERS)


def presented_key(request: Request) -> str | None:
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer ") and header[7:].strip():
        return header[7:].strip()
    return request.headers.get("X-API-Key") or None
