"""SendGrid's `POST /v3/mail/send`: the checks SendGrid makes, its error bodies and rate-limit headers."""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

from definition.channels import Channel
from emulator.endpoint import Endpoint, retry_after
from emulator.records import RecordedMessage

SENDGRID_PATH = "/v3/mail/send"


class SendGridEndpoint(Endpoint):
    def _sendgrid(self, body: bytes) -> None:
        self.emulator.attempt(Channel.EMAIL)
        scheme, _, token = self.headers.get("Authorization", "").partition(" ")
        if scheme != "Bearer" or not token.strip():
            self._sendgrid_errors(401, "The provided authorization grant is invalid, expired, or revoked")
            return
        fault = self.emulator.take_fault(Channel.EMAIL)
        if fault is not None:
            headers: dict[str, str] = {}
            if fault.status == 429:
                # SendGrid's rate-limit headers come with every 429; Retry-After only if asked.
                wait = fault.retry_after if fault.retry_after is not None else 60
                headers = {
                    "X-RateLimit-Limit": "600",
                    "X-RateLimit-Remaining": "0",
                    "X-RateLimit-Reset": str(int(time.time()) + wait),
                }
            self._sendgrid_errors(
                fault.status, f"emulated failure {fault.status}", retry_after(fault) | headers
            )
            return
        try:
            mail = json.loads(body)
        except ValueError:
            self._sendgrid_errors(400, "Bad Request")
            return
        problems = sendgrid_problems(mail)
        if problems:
            self._json(400, {"errors": problems})
            return
        personalization = mail["personalizations"][0]
        contents = {item["type"]: item["value"] for item in mail.get("content", [])}
        provider_id = secrets.token_urlsafe(16)
        message = RecordedMessage(
            channel=Channel.EMAIL,
            provider_id=provider_id,
            to=personalization["to"][0]["email"],
            sender=mail["from"]["email"],
            subject=personalization.get("subject") or mail.get("subject"),
            html=contents.get("text/html"),
            text=contents.get("text/plain"),
            custom_args=dict(personalization.get("custom_args", {})),
            categories=list(mail.get("categories", [])),
            headers=self._recorded_headers(),
            raw=mail,
        )
        if self.emulator.accept(message):
            self._send(202, b"", {"X-Message-Id": provider_id})
        else:
            self.close_connection = True

    def _sendgrid_errors(self, status: int, text: str, headers: dict[str, str] | None = None) -> None:
        self._json(status, {"errors": [{"message": text, "field": None}]}, headers)


def sendgrid_problems(mail: Any) -> list[dict[str, Any]]:
    """The errors SendGrid would list for this body (the ones a client can get wrong), all at once."""

    def error(field_name: str | None, text: str) -> dict[str, Any]:
        return {"message": text, "field": field_name}

    if not isinstance(mail, dict):
        return [error(None, "Bad Request")]
    problems = []
    personalizations = mail.get("personalizations")
    if not isinstance(personalizations, list):
        personalizations = []
    if not personalizations:
        problems.append(error("personalizations", "The personalizations field is required."))
    elif not all(
        isinstance(item, dict)
        and isinstance(item.get("to"), list)
        and item["to"]
        and all(isinstance(to, dict) and to.get("email") for to in item["to"])
        for item in personalizations
    ):
        problems.append(
            error("personalizations.0.to", "The to array is required for all personalization objects.")
        )
    sender = mail.get("from")
    if not isinstance(sender, dict) or not sender.get("email"):
        problems.append(error("from.email", "The from object must be provided for every email send."))
    if not mail.get("template_id"):
        subjects = [item.get("subject") for item in personalizations if isinstance(item, dict)]
        if not mail.get("subject") and not (subjects and all(subjects)):
            problems.append(error("subject", "The subject is required."))
        content = mail.get("content")
        if (
            not isinstance(content, list)
            or not content
            or not all(isinstance(item, dict) and item.get("type") and item.get("value") for item in content)
        ):
            problems.append(
                error("content", "Unless a valid template_id is provided, the content parameter is required.")
            )
    return problems
