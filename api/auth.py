"""API keys with scopes, from the environment (CYKLO_API_KEYS=`KEY=events,support:read;…`)."""

from __future__ import annotations

import hmac
from collections.abc import Callable

from fastapi import HTTPException, Request, status

SCOPES = frozenset({"events", "support:read", "support:write"})


class ApiKeyError(ValueError):
    pass


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


def requires(scope: str) -> Callable[[Request], str]:
    """A FastAPI dependency: the caller's key must carry `scope`. Returns the key's label."""

    def check(request: Request) -> str:
        presented = _presented_key(request)
        if presented is None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "an API key is required: send `Authorization: Bearer KEY`",
                headers={"WWW-Authenticate": "Bearer"},
            )
        keys: dict[str, frozenset[str]] = request.app.state.api_keys
        for key, scopes in keys.items():
            if hmac.compare_digest(key.encode(), presented.encode()):
                if scope not in scopes:
                    raise HTTPException(status.HTTP_403_FORBIDDEN, f"this API key lacks the scope {scope!r}")
                return f"key …{key[-4:]}"
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "unknown API key", headers={"WWW-Authenticate": "Bearer"}
        )

    return check


def _presented_key(request: Request) -> str | None:
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer ") and header[7:].strip():
        return header[7:].strip()
    # The support page is opened in a browser, which cannot send a header: it carries
    # the key in its URL, and its forms pass it on.
    return request.headers.get("X-API-Key") or request.query_params.get("key") or None
