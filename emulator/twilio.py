"""Twilio's Messages resource: `POST …/Messages.json` and its message list, with Twilio's
error codes, its checks in Twilio's order, and its filters and paging."""

from __future__ import annotations

import base64
import re
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlencode

import phonenumbers

from definition.channels import Channel
from definition.sms_text import sms_encoding
from emulator.endpoint import Endpoint, retry_after
from emulator.records import RecordedMessage

TWILIO_PATH = re.compile(r"^/2010-04-01/Accounts/(?P<sid>[^/]+)/Messages\.json$")
TWILIO_BODY_LIMIT = 1600

# What Twilio says for the codes tests inject; {to} is the recipient, as Twilio quotes it.
TWILIO_ERRORS = {
    20003: "Authenticate",
    20429: "Too Many Requests",
    20500: "Internal Server Error",
    20503: "Service Unavailable",
    21211: "The 'To' number {to} is not a valid phone number.",
    21408: "Permission to send an SMS has not been enabled for the region indicated by the 'To' number: {to}.",
    21602: "Message body is required.",
    21603: "A 'From' phone number is required.",
    21604: "A 'To' phone number is required.",
    21610: "Attempt to send to unsubscribed recipient",
    21612: "The 'To' phone number: {to}, is not currently reachable using the 'From' phone number via SMS.",
    21614: "'To' number {to} is not a valid mobile number",
    21617: "The concatenated message body exceeds the 1600 character limit.",
}
TWILIO_CODE_FOR_STATUS = {401: 20003, 429: 20429, 500: 20500, 503: 20503}


class TwilioEndpoint(Endpoint):
    def _twilio(self, account_sid: str, body: bytes) -> None:
        self.emulator.attempt(Channel.SMS)
        if self._basic_user() != account_sid:
            self._twilio_error(401, 20003)
            return
        form = {
            key: values[0] if len(values) == 1 else values
            for key, values in parse_qs(body.decode("ascii", "replace"), keep_blank_values=True).items()
        }
        to = str(form.get("To", ""))
        fault = self.emulator.take_fault(Channel.SMS)
        if fault is not None:
            code = fault.code or TWILIO_CODE_FOR_STATUS.get(fault.status, fault.status)
            self._twilio_error(fault.status, code, to, retry_after(fault))
            return
        problem = _twilio_problem(form)
        if problem is not None:
            self._twilio_error(400, problem, to)
            return
        sid = "SM" + secrets.token_hex(16)
        message = RecordedMessage(
            channel=Channel.SMS,
            provider_id=sid,
            to=to,
            sender=str(form.get("From", "")),
            body=str(form.get("Body", "")),
            headers=self._recorded_headers(),
            raw=form,
        )
        if self.emulator.accept(message):
            self._json(201, _twilio_message(account_sid, message))
        else:
            self.close_connection = True

    def _twilio_list(self, account_sid: str, query: str) -> None:
        """`GET …/Messages.json`: To, From, DateSent, DateSent< and DateSent> (on or before,
        on or after; a date or a UTC time), PageSize and Page; newest first."""
        if self._basic_user() != account_sid:
            self._twilio_error(401, 20003)
            return
        fault = self.emulator.take_fault(Channel.SMS)
        if fault is not None:
            code = fault.code or TWILIO_CODE_FOR_STATUS.get(fault.status, fault.status)
            self._twilio_error(fault.status, code, headers=retry_after(fault))
            return
        params = {key: values[-1] for key, values in parse_qs(query, keep_blank_values=True).items()}
        try:
            size, page = int(params.get("PageSize", 50)), int(params.get("Page", 0))
            if not (1 <= size <= 1000 and page >= 0):
                raise ValueError("PageSize is 1 to 1000, Page 0 or more")
            matches = [_date_filter(params.get(key), sign) for key, sign in DATE_FILTERS]
        except ValueError as problem:
            self._json(400, {"code": 20001, "message": str(problem), "status": 400})
            return
        found = [
            message
            for message in reversed(self.emulator.messages("sms"))
            if params.get("To", message.to) == message.to
            and params.get("From", message.sender) == message.sender
            and all(match(message.received_at) for match in matches)
        ]
        chunk = found[page * size : (page + 1) * size]
        filters = {
            key: value for key, value in params.items() if key not in ("Page", "PageSize", "PageToken")
        }

        def page_uri(number: int) -> str:
            paging = {
                "PageSize": size,
                "Page": number,
                **({"PageToken": f"PA{number}"} if number else {}),
            }
            return f"/2010-04-01/Accounts/{account_sid}/Messages.json?" + urlencode({**filters, **paging})

        start = page * size
        self._json(
            200,
            {
                "end": start + max(len(chunk) - 1, 0),
                "first_page_uri": page_uri(0),
                "next_page_uri": page_uri(page + 1) if len(found) > start + size else None,
                "page": page,
                "page_size": size,
                "previous_page_uri": page_uri(page - 1) if page else None,
                "start": start,
                "uri": page_uri(page),
                "messages": [_twilio_message(account_sid, message, listed=True) for message in chunk],
            },
        )

    def _twilio_error(
        self, status: int, code: int, to: str = "", headers: dict[str, str] | None = None
    ) -> None:
        text = TWILIO_ERRORS.get(code, f"emulated failure {status}").format(to=to)
        payload = {
            "code": code,
            "message": text,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        }
        self._json(status, payload, headers)

    def _basic_user(self) -> str | None:
        scheme, _, credentials = self.headers.get("Authorization", "").partition(" ")
        if scheme != "Basic":
            return None
        try:
            return base64.b64decode(credentials, validate=True).decode().split(":", 1)[0]
        except ValueError:
            return None


def _twilio_problem(form: dict[str, Any]) -> int | None:
    """Twilio's error code for a request it would refuse, in the order Twilio checks."""
    to = form.get("To")
    if not to:
        return 21604
    if not isinstance(to, str) or not _valid_e164(to):
        return 21211
    if not form.get("From") and not form.get("MessagingServiceSid"):
        return 21603
    body = form.get("Body")
    if not body and not form.get("MediaUrl"):
        return 21602
    if isinstance(body, str) and len(body) > TWILIO_BODY_LIMIT:
        return 21617
    return None


def _twilio_message(account_sid: str, message: RecordedMessage, listed: bool = False) -> dict[str, Any]:
    """Every field of Twilio's Message resource: as the 201 answer to a new message has it
    (queued), or `listed` later in the message list (sent at once, then `delivery`)."""
    _, segments = sms_encoding(message.body or "")
    now = message.received_at.strftime("%a, %d %b %Y %H:%M:%S +0000")
    uri = f"/2010-04-01/Accounts/{account_sid}/Messages/{message.provider_id}"
    return {
        "account_sid": account_sid,
        "api_version": "2010-04-01",
        "body": message.body,
        "date_created": now,
        "date_sent": now if listed else None,
        "date_updated": now,
        "direction": "outbound-api",
        "error_code": message.error_code if listed else None,
        "error_message": None,
        "from": message.sender,
        "messaging_service_sid": None,
        "num_media": "0",
        "num_segments": str(segments),
        "price": None,
        "price_unit": "USD",
        "sid": message.provider_id,
        "status": message.delivery if listed else "queued",
        "subresource_uris": {"media": f"{uri}/Media.json"},
        "to": message.to,
        "uri": f"{uri}.json",
    }


DATE_FILTERS = (("DateSent", "="), ("DateSent>", ">"), ("DateSent<", "<"))


def _date_filter(value: str | None, sign: str) -> Callable[[datetime], bool]:
    """Twilio's DateSent filters: a date (YYYY-MM-DD) compares days, a time
    (YYYY-MM-DDTHH:MM:SSZ) compares seconds; `<` is on or before, `>` on or after."""
    if value is None:
        return lambda _: True
    by_day = len(value) == 10
    try:
        bound = datetime.strptime(value, "%Y-%m-%d" if by_day else "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        raise ValueError(f"{value!r} is no date (YYYY-MM-DD) or UTC time (YYYY-MM-DDTHH:MM:SSZ)") from None

    def matches(moment: datetime) -> bool:
        at = (
            moment.replace(hour=0, minute=0, second=0, microsecond=0)
            if by_day
            else moment.replace(microsecond=0)
        )
        return at >= bound if sign == ">" else at <= bound if sign == "<" else at == bound

    return matches


def _valid_e164(number: str) -> bool:
    try:
        return number.startswith("+") and phonenumbers.is_valid_number(phonenumbers.parse(number, None))
    except phonenumbers.NumberParseException:
        return False
