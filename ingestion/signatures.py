"""The signature both shop platforms put on a webhook: base64 of HMAC-SHA256 over the raw body.

Shopify sends it as `X-Shopify-Hmac-Sha256` (keyed with the app's client secret), WooCommerce
as `X-WC-Webhook-Signature` (keyed with the webhook's secret). Only the bytes as received
are verified, before anything parses them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable


def sign(secret: str, body: bytes) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def signed_by_any(body: bytes, signature: str | None, secrets: Iterable[str]) -> bool:
    """Whether one of `secrets` made `signature`: during a rotation the old and the new sign."""
    if not signature:
        return False
    given = signature.strip().encode()
    # Every secret is tried, whichever matches, so the time taken says nothing about which.
    matches = [hmac.compare_digest(sign(secret, body).encode(), given) for secret in secrets if secret]
    return any(matches)
