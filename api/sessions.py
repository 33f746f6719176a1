"""Support page sign-in: a key entered once becomes a signed, expiring session cookie.

The cookie holds no key, only a keyed fingerprint of it and a random nonce, signed with the
session secret (itsdangerous). Each request looks the fingerprint up among the keys configured
now, so a key removed from CYKLO_API_KEYS, or a scope taken from it, ends its sessions at once,
and any number of API processes sharing the secret accept the same cookie.

CSRF: every form of a session carries an HMAC of the session's nonce; the sign-in form, which
comes before any session, carries an HMAC of a random value kept in its own cookie (signed
double submit), so a page elsewhere can neither read nor forge either.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta

from itsdangerous import BadData, URLSafeTimedSerializer

from api.auth import Caller, identify, key_label

SESSION_COOKIE = "cyklo_support"
SIGN_IN_COOKIE = "cyklo_sign_in"
COOKIE_PATH = "/support"


@dataclass(frozen=True)
class SupportSession:
    caller: Caller
    csrf_token: str

    def may(self, scope: str) -> bool:
        return scope in self.caller.scopes


class SupportSessions:
    def __init__(self, secret: str, keys: dict[str, frozenset[str]], lifetime: timedelta) -> None:
        self._secret = secret.encode()
        self._serializer = URLSafeTimedSerializer(secret, salt="cyklo.support.session")
        self._by_fingerprint = {self._mac("key", key): key for key in keys}
        self._keys = keys
        self.lifetime = lifetime

    def sign_in(self, presented: str) -> tuple[Caller, str] | None:
        """The caller and a new session cookie's value for a known key; None for an unknown one."""
        caller = identify(self._keys, presented)
        if caller is None:
            return None
        # Known, so equal to a configured key: its fingerprint is the one resume looks up.
        fingerprint = self._mac("key", presented)
        cookie = self._serializer.dumps({"key": fingerprint, "nonce": secrets.token_urlsafe(16)})
        return caller, cookie

    def resume(self, cookie: str | None) -> SupportSession | None:
        """The session a cookie stands for, or None when it is missing, forged, expired or revoked."""
        if not cookie:
            return None
        try:
            payload = self._serializer.loads(cookie, max_age=int(self.lifetime.total_seconds()))
        except BadData:
            return None
        if not isinstance(payload, dict):
            return None
        key = self._by_fingerprint.get(str(payload.get("key")))
        if key is None:
            return None
        caller = Caller(key_label(key), self._keys[key])
        return SupportSession(caller, self._mac("csrf", str(payload.get("nonce"))))

    def new_sign_in_form(self) -> tuple[str, str]:
        """(value for the sign-in cookie, token for the sign-in form)."""
        value = secrets.token_urlsafe(16)
        return value, self._mac("sign-in", value)

    def sign_in_form_matches(self, cookie: str | None, token: str) -> bool:
        return bool(cookie) and hmac.compare_digest(self._mac("sign-in", cookie or ""), token)

    def _mac(self, purpose: str, value: str) -> str:
        return hmac.new(self._secret, f"{purpose}:{value}".encode(), hashlib.sha256).hexdigest()


def csrf_matches(session: SupportSession, token: str) -> bool:
    return hmac.compare_digest(session.csrf_token, token)
