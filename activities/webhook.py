"""Webhooks: the rendered JSON body POSTed to the shop's endpoint, signed.

Headers, for the receiver:
    X-Cyklo-Timestamp        Unix seconds when the request was signed
    X-Cyklo-Signature        `sha256=` + hex HMAC-SHA256 of `{timestamp}.{body}` under
                             CYKLO_WEBHOOK_SECRET (the body's exact bytes)
    X-Cyklo-Idempotency-Key  the ledger's key for this step occurrence: a retried request
                             carries the same one, so the receiver can drop the repeat
    X-Cyklo-Message-Id       the ledger row's id

A receiver checks the signature with a constant-time comparison and refuses old timestamps
(a replay). It reaches the shop, not the customer: consent, quiet hours and the frequency cap
do not apply.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from collections.abc import Mapping

import requests

from activities.adapter import Delivery
from activities.provider_errors import (
    ProviderAmbiguous,
    ProviderRejected,
    ProviderRetryable,
    never_connected,
    retry_after_seconds,
)
from settings import Settings
from storage.models import Customer, Message
from workflows.interface import SendRequest

SIGNATURE = "X-Cyklo-Signature"
TIMESTAMP = "X-Cyklo-Timestamp"
IDEMPOTENCY_KEY = "X-Cyklo-Idempotency-Key"
MESSAGE_ID = "X-Cyklo-Message-Id"
MAX_BODY_BYTES = 1_000_000
"""A body larger than this is a template gone wrong."""
TEXT_SHOWN = 200
"""Characters of a refusal's body kept in the ledger's reason."""

_sessions = threading.local()


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """The X-Cyklo-Signature value of `body` signed at `timestamp`."""
    digest = hmac.new(secret.encode("utf-8"), timestamp.encode("ascii") + b"." + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


def _session() -> requests.Session:
    # One per thread: a requests Session is not meant to be shared between threads.
    session: requests.Session | None = getattr(_sessions, "session", None)
    if session is None:
        session = _sessions.session = requests.Session()
    return session


def post_webhook(url: str, body: bytes, idempotency_key: str, message_id: int, settings: Settings) -> None:
    """POST the body, signed. Raises ProviderRetryable (429, 5xx, never connected),
    ProviderRejected (other answers but 2xx) or ProviderAmbiguous (sent, no answer)."""
    if not settings.webhook_secret:
        raise ProviderRejected("configuration", "CYKLO_WEBHOOK_SECRET is not set")
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        TIMESTAMP: timestamp,
        SIGNATURE: signature(settings.webhook_secret, timestamp, body),
        IDEMPOTENCY_KEY: idempotency_key,
        MESSAGE_ID: str(message_id),
    }
    try:
        # No redirects: a signed body must not be replayed to wherever a 3xx points.
        response = _session().post(
            url, data=body, headers=headers, timeout=settings.provider_timeout_seconds, allow_redirects=False
        )
    except requests.ConnectionError as error:
        if never_connected(error):
            raise ProviderRetryable(f"webhook unreachable: {type(error).__name__}") from error
        raise ProviderAmbiguous(f"webhook did not answer: {type(error).__name__}") from error
    except requests.RequestException as error:
        # A read timeout or a broken answer: the request went out in full.
        raise ProviderAmbiguous(f"webhook did not answer: {type(error).__name__}: {error}") from error
    status = response.status_code
    if status == 429 or status >= 500:
        raise ProviderRetryable(
            f"webhook {status}: {response.text[:TEXT_SHOWN]}", retry_after_seconds(response.headers)
        )
    if not 200 <= status < 300:
        raise ProviderRejected(str(status), f"webhook refused: {response.text[:TEXT_SHOWN]}")


class WebhookChannel:
    """The webhook adapter (activities.adapter.ChannelAdapter)."""

    def refusal(self, customer: Customer, transactional: bool) -> str | None:
        return None  # the shop's own endpoint: no address, suppression or consent of the customer's

    def destination(self, customer: Customer, request: SendRequest, settings: Settings) -> str:
        assert request.url is not None, "the journey model requires a url for a webhook"
        return request.url

    def check(self, message: Message, rendered: Mapping[str, str]) -> str | None:
        size = len(rendered["json"].encode("utf-8", "surrogatepass"))
        if size > MAX_BODY_BYTES:
            return f"webhook body is {size:,} bytes: at most {MAX_BODY_BYTES:,}"
        return None

    def deliver(self, delivery: Delivery, settings: Settings) -> str | None:
        body = delivery.rendered["json"].encode("utf-8")
        post_webhook(
            delivery.destination, body, delivery.request.idempotency_key, delivery.message_id, settings
        )
        return None
