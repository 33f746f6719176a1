"""Delivery reports as the providers post them: SendGrid's event webhook and Twilio's status
callback, each signed the provider's way."""

from __future__ import annotations

import json
import secrets
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from cryptography.hazmat.primitives.asymmetric import ec

from emulator.records import RecordedMessage
from emulator.signing import sign_sendgrid, sign_twilio


@dataclass(frozen=True)
class Webhooks:
    """Where and how the emulator reports deliveries, signed like the real providers."""

    base_url: str
    sendgrid_key: ec.EllipticCurvePrivateKey
    twilio_auth_token: str


def post_report(webhooks: Webhooks, message: RecordedMessage, event: str, fields: dict[str, Any]) -> int:
    """Post one signed webhook about `message`; returns the HTTP status cyklo answered."""
    if message.channel == "email":
        body = json.dumps(
            [
                {
                    "email": message.to,
                    "timestamp": int(datetime.now(UTC).timestamp()),
                    "event": event,
                    "sg_event_id": secrets.token_urlsafe(16),
                    "sg_message_id": message.provider_id,
                    "category": message.categories,
                    **message.custom_args,
                    **fields,
                }
            ]
        ).encode()
        timestamp = str(int(datetime.now(UTC).timestamp()))
        headers = {
            "Content-Type": "application/json",
            "X-Twilio-Email-Event-Webhook-Signature": sign_sendgrid(webhooks.sendgrid_key, timestamp, body),
            "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
        }
        return post(webhooks.base_url + "/webhooks/sendgrid", body, headers)
    url = webhooks.base_url + "/webhooks/twilio/status"
    params = {"MessageSid": message.provider_id, "MessageStatus": event, "To": message.to, **fields}
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Twilio-Signature": sign_twilio(webhooks.twilio_auth_token, url, params),
    }
    return post(url, urlencode(params).encode(), headers)


def post(url: str, body: bytes, headers: dict[str, str]) -> int:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310 - loopback URL from configuration
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
