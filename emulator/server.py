"""A local emulator of the SendGrid and Twilio HTTP APIs that the real clients talk to.

It records every accepted message (Twilio's message list shows them, filtered and paged as
Twilio does), can be told to fail the next requests (429 with
Retry-After, 5xx, Twilio error codes), and can hold its answers back after accepting a
message, so a test can kill a worker between the provider's acceptance and the reply.

Threads: one per connection (stdlib ThreadingHTTPServer), so a held answer blocks only its
own connection; the recorded state sits behind one lock.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from html import escape
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import phonenumbers
from cryptography.hazmat.primitives.asymmetric import ec

from activities.sms import sms_encoding
from definition.channels import Channel
from emulator.signing import sign_sendgrid, sign_twilio

CHANNELS = (Channel.EMAIL, Channel.SMS)
"""The channels emulated (SendGrid, Twilio); a webhook's receiver is the shop's own."""

SENDGRID_PATH = "/v3/mail/send"
TWILIO_PATH = re.compile(r"^/2010-04-01/Accounts/(?P<sid>[^/]+)/Messages\.json$")
DELIVERY_DELAY_SECONDS = 0.5
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


@dataclass
class RecordedMessage:
    channel: Channel
    provider_id: str
    to: str
    sender: str
    subject: str | None = None
    html: str | None = None
    text: str | None = None
    body: str | None = None
    custom_args: dict[str, str] = field(default_factory=dict)
    categories: list[str] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    """The HTTP request's headers, credentials redacted. The email's own headers
    (List-Unsubscribe, …) are in `raw["headers"]`, where SendGrid's API puts them."""
    raw: dict[str, Any] = field(default_factory=dict)
    """SendGrid: the JSON body. Twilio: the form, a list where a field repeats."""
    received_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    delivery: str = "delivered"
    """What the provider later says became of it: Twilio's list shows it (deliver_as changes it)."""
    error_code: int | None = None

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["received_at"] = self.received_at.isoformat()
        return data


@dataclass(frozen=True)
class Webhooks:
    """Where and how the emulator reports deliveries, signed like the real providers."""

    base_url: str
    sendgrid_key: ec.EllipticCurvePrivateKey
    twilio_auth_token: str


@dataclass
class _Fault:
    status: int
    count: int
    retry_after: int | None
    code: int | None


class ProviderEmulator:
    """SendGrid's `POST /v3/mail/send` and Twilio's `POST …/Messages.json` on 127.0.0.1.

    The port is bound at construction, so `url` is known before `start()`."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._lock = threading.Lock()
        self._messages: list[RecordedMessage] = []
        self._attempts: dict[str, int] = dict.fromkeys(CHANNELS, 0)
        self._faults: dict[str, list[_Fault]] = {channel: [] for channel in CHANNELS}
        self._held: dict[str, threading.Event] = {}
        self._stopping = False
        self._server = _Server((host, port), _handler_for(self))
        self._thread: threading.Thread | None = None
        self._closed = False
        self._webhooks: Webhooks | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> ProviderEmulator:
        if self._thread is not None or self._closed:
            raise RuntimeError("the emulator runs once: make a new one")
        # A short poll interval: stop() waits for the serving loop to notice.
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="provider-emulator",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and drop every open connection. Held requests end without an
        answer, like a provider that took the message and then went away."""
        if self._closed:
            return
        self._closed = True
        with self._lock:
            self._stopping = True
        self.release()
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
        self._server.server_close()
        # Keep-alive connections outlive the listening socket: cut them, or a pooled
        # client would still reach a "stopped" emulator.
        self._server.drop_connections()

    def __enter__(self) -> ProviderEmulator:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def messages(self, channel: str | None = None) -> list[RecordedMessage]:
        """Accepted messages, oldest first."""
        with self._lock:
            return [message for message in self._messages if channel is None or message.channel == channel]

    def attempts(self, channel: str) -> int:
        """Requests that reached the channel's endpoint, accepted or not."""
        with self._lock:
            return self._attempts[_checked(channel)]

    def fail_next(
        self,
        channel: str,
        status: int,
        count: int = 1,
        retry_after: int | None = None,
        code: int | None = None,
    ) -> None:
        """Answer the channel's next `count` requests (sends, and Twilio's message list) with
        `status`, after faults already queued.

        `retry_after` adds a Retry-After header; `code` is Twilio's error code (default from
        the status, e.g. 20429 for 429)."""
        if not 400 <= status <= 599:
            raise ValueError(f"a fault is an HTTP error status (400-599), not {status}")
        if count < 1:
            raise ValueError(f"count must be at least 1, not {count}")
        with self._lock:
            self._faults[_checked(channel)].append(_Fault(status, count, retry_after, code))

    def hold(self, channel: str) -> None:
        """Accept and record the channel's requests at once, but answer none until release()."""
        with self._lock:
            self._held.setdefault(_checked(channel), threading.Event())

    def release(self) -> None:
        """Answer every held request and stop holding."""
        with self._lock:
            held, self._held = self._held, {}
        for gate in held.values():
            gate.set()

    def reset(self) -> None:
        """Forget messages, attempts and faults; answer held requests."""
        self.release()
        with self._lock:
            self._messages.clear()
            self._attempts = dict.fromkeys(CHANNELS, 0)
            self._faults = {channel: [] for channel in CHANNELS}

    def deliver_as(self, provider_id: str, status: str, error_code: int | None = None) -> None:
        """Say that a recorded message ended otherwise than delivered (e.g. "undelivered", 30007)."""
        with self._lock:
            message = next((found for found in self._messages if found.provider_id == provider_id), None)
            if message is None:
                raise ValueError(f"no recorded message {provider_id!r}")
            message.delivery, message.error_code = status, error_code

    def send_webhooks_to(self, webhooks: Webhooks) -> None:
        """From now on, every accepted message is reported delivered through signed webhooks."""
        self._webhooks = webhooks

    def report(self, message: RecordedMessage, event: str, **fields: Any) -> int:
        """Post one signed webhook about `message` (email: delivered, open, click, bounce, …;
        sms: sent, delivered, undelivered, failed); returns the HTTP status cyklo answered."""
        webhooks = self._webhooks
        if webhooks is None:
            raise RuntimeError("no webhooks configured: call send_webhooks_to() first")
        if message.channel == Channel.EMAIL:
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
                "X-Twilio-Email-Event-Webhook-Signature": sign_sendgrid(
                    webhooks.sendgrid_key, timestamp, body
                ),
                "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
            }
            return _post(webhooks.base_url + "/webhooks/sendgrid", body, headers)
        url = webhooks.base_url + "/webhooks/twilio/status"
        params = {"MessageSid": message.provider_id, "MessageStatus": event, "To": message.to, **fields}
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": sign_twilio(webhooks.twilio_auth_token, url, params),
        }
        return _post(url, urlencode(params).encode(), headers)

    # --- used by the request handler ----------------------------------------------------

    def _attempt(self, channel: Channel) -> None:
        with self._lock:
            self._attempts[channel] += 1

    def _take_fault(self, channel: Channel) -> _Fault | None:
        with self._lock:
            faults = self._faults[channel]
            if not faults:
                return None
            fault = faults[0]
            fault.count -= 1
            if fault.count <= 0:
                faults.pop(0)
            return fault

    def _accept(self, message: RecordedMessage) -> bool:
        """Record the message, wait while its channel is held; False if the emulator
        stopped meanwhile and the request must end without an answer."""
        with self._lock:
            self._messages.append(message)
            # Once stopping, nothing would ever release a new hold.
            gate = None if self._stopping else self._held.get(message.channel)
        self._report_delivery(message)
        if gate is not None:
            gate.wait()
        with self._lock:
            return not self._stopping

    def _report_delivery(self, message: RecordedMessage) -> None:
        if self._webhooks is None:
            return
        events = ("processed", "delivered") if message.channel == Channel.EMAIL else ("sent", "delivered")

        def deliver() -> None:
            # Like the real providers, news of delivery comes a moment after the answer.
            time.sleep(DELIVERY_DELAY_SECONDS)
            for event in events:
                try:
                    self.report(message, event)
                except OSError:
                    return  # cyklo's API is not up: a real provider would retry; the emulator need not

        threading.Thread(target=deliver, name="emulator-webhooks", daemon=True).start()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64  # bursts of sends from many activity threads

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(address, handler)
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def drop_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed by its handler

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (its timeout, a killed worker) while its answer was held is
        # what hold mode is for, not an emulator failure.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class _BadRequest(Exception):
    pass


def _handler_for(emulator: ProviderEmulator) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_: Any) -> None:  # quiet: tests and the dev stack read the records
            pass

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            url = urlsplit(self.path)
            if url.path == "/health":
                self._json(200, {"status": "ok"})
            elif url.path in ("/", "/outbox"):
                page = outbox_page(emulator.messages()).encode()
                self._send(200, page, {"Content-Type": "text/html; charset=utf-8"})
            elif match := TWILIO_PATH.match(url.path):
                self._twilio_list(match.group("sid"), url.query)
            elif url.path == "/_emulator/messages":
                channel = parse_qs(url.query).get("channel", [None])[0]
                try:
                    found = emulator.messages(None if channel is None else _checked(channel))
                except ValueError as problem:
                    self._json(400, {"error": str(problem)})
                    return
                self._json(200, [message.as_json() for message in found])
            else:
                self._json(404, {"error": "not found"})

        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            path = urlsplit(self.path).path
            if path == SENDGRID_PATH:
                self._sendgrid(body)
            elif match := TWILIO_PATH.match(path):
                self._twilio(match.group("sid"), body)
            elif path.startswith("/_emulator/"):
                try:
                    self._control(path, body)
                except _BadRequest as problem:
                    self._json(400, {"error": str(problem)})
            else:
                self._json(404, {"error": "not found"})

        def _control(self, path: str, body: bytes) -> None:
            if path == "/_emulator/reset":
                emulator.reset()
            elif path == "/_emulator/release":
                emulator.release()
            elif path in ("/_emulator/faults", "/_emulator/hold"):
                order = _json_object(body)
                try:
                    if path == "/_emulator/hold":
                        emulator.hold(order["channel"])
                    else:
                        emulator.fail_next(
                            order["channel"],
                            int(order["status"]),
                            int(order.get("count", 1)),
                            None if order.get("retry_after") is None else int(order["retry_after"]),
                            None if order.get("code") is None else int(order["code"]),
                        )
                except KeyError as missing:
                    raise _BadRequest(f"missing field {missing}") from None
                except (TypeError, ValueError) as problem:
                    raise _BadRequest(str(problem)) from None
            else:
                self._json(404, {"error": "not found"})
                return
            self._send(204, b"", {})

        # --- SendGrid ------------------------------------------------------------------

        def _sendgrid(self, body: bytes) -> None:
            emulator._attempt(Channel.EMAIL)
            scheme, _, token = self.headers.get("Authorization", "").partition(" ")
            if scheme != "Bearer" or not token.strip():
                self._sendgrid_errors(401, "The provided authorization grant is invalid, expired, or revoked")
                return
            fault = emulator._take_fault(Channel.EMAIL)
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
                    fault.status, f"emulated failure {fault.status}", _retry_after(fault) | headers
                )
                return
            try:
                mail = json.loads(body)
            except ValueError:
                self._sendgrid_errors(400, "Bad Request")
                return
            problems = _sendgrid_problems(mail)
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
            if emulator._accept(message):
                self._send(202, b"", {"X-Message-Id": provider_id})
            else:
                self.close_connection = True

        def _sendgrid_errors(self, status: int, text: str, headers: dict[str, str] | None = None) -> None:
            self._json(status, {"errors": [{"message": text, "field": None}]}, headers)

        # --- Twilio --------------------------------------------------------------------

        def _twilio(self, account_sid: str, body: bytes) -> None:
            emulator._attempt(Channel.SMS)
            if self._basic_user() != account_sid:
                self._twilio_error(401, 20003)
                return
            form = {
                key: values[0] if len(values) == 1 else values
                for key, values in parse_qs(body.decode("ascii", "replace"), keep_blank_values=True).items()
            }
            to = str(form.get("To", ""))
            fault = emulator._take_fault(Channel.SMS)
            if fault is not None:
                code = fault.code or TWILIO_CODE_FOR_STATUS.get(fault.status, fault.status)
                self._twilio_error(fault.status, code, to, _retry_after(fault))
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
            if emulator._accept(message):
                self._json(201, _twilio_message(account_sid, message))
            else:
                self.close_connection = True

        def _twilio_list(self, account_sid: str, query: str) -> None:
            """`GET …/Messages.json`: To, From, DateSent, DateSent< and DateSent> (on or before,
            on or after; a date or a UTC time), PageSize and Page; newest first."""
            if self._basic_user() != account_sid:
                self._twilio_error(401, 20003)
                return
            fault = emulator._take_fault(Channel.SMS)
            if fault is not None:
                code = fault.code or TWILIO_CODE_FOR_STATUS.get(fault.status, fault.status)
                self._twilio_error(fault.status, code, headers=_retry_after(fault))
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
                for message in reversed(emulator.messages("sms"))
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

        # --- plumbing ------------------------------------------------------------------

        def _recorded_headers(self) -> dict[str, str]:
            headers = dict(self.headers.items())
            if "Authorization" in headers:
                # Never keep credentials: /_emulator/messages would show them to anyone local.
                headers["Authorization"] = headers["Authorization"].partition(" ")[0] + " [redacted]"
            return headers

        def _json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
            data = json.dumps(payload).encode()
            self._send(status, data, {"Content-Type": "application/json", **(headers or {})})

        def _send(self, status: int, data: bytes, headers: dict[str, str]) -> None:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


def _checked(channel: str) -> Channel:
    if channel not in CHANNELS:
        raise ValueError(f"channel must be one of {', '.join(CHANNELS)}, not {channel!r}")
    return Channel(channel)


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body or b"{}")
    except ValueError as problem:
        raise _BadRequest(f"not JSON: {problem}") from None
    if not isinstance(value, dict):
        raise _BadRequest("expected a JSON object")
    return value


def _retry_after(fault: _Fault) -> dict[str, str]:
    return {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}


def _sendgrid_problems(mail: Any) -> list[dict[str, Any]]:
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


def outbox_page(messages: list[RecordedMessage]) -> str:
    """What the emulator received, as the customer would see it: newest first."""
    cards = []
    for message in reversed(messages):
        when = message.received_at.strftime("%Y-%m-%d %H:%M:%S UTC")
        if message.channel == Channel.EMAIL:
            body = (
                f"<b>{escape(message.subject or '')}</b><br>"
                f'<iframe sandbox="" style="width:100%;height:420px;border:1px solid #ddd" '
                f'srcdoc="{escape(message.html or "", quote=True)}"></iframe>'
                f"<details><summary>plain text</summary><pre>{escape(message.text or '')}</pre></details>"
            )
        else:
            encoding, segments = sms_encoding(message.body or "")
            body = f"<pre>{escape(message.body or '')}</pre><small>{encoding}, {segments} segment(s)</small>"
        cards.append(
            f'<section class="message {message.channel}"><p>{when} · {message.channel} to '
            f"{escape(message.to)} · id {escape(message.provider_id)}</p>{body}</section>"
        )
    return (
        '<!doctype html><html><head><meta charset="utf-8"><title>cyklo outbox</title>'
        "<style>body{font-family:system-ui,sans-serif;margin:24px;max-width:900px}"
        "section{border-bottom:1px solid #ccc;padding:12px 0}</style></head><body>"
        f"<h1>Outbox — {len(messages)} message(s)</h1>{''.join(cards) or '<p>Nothing sent yet.</p>'}</body></html>"
    )


def _post(url: str, body: bytes, headers: dict[str, str]) -> int:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310 - loopback URL from configuration
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def _valid_e164(number: str) -> bool:
    try:
        return number.startswith("+") and phonenumbers.is_valid_number(phonenumbers.parse(number, None))
    except phonenumbers.NumberParseException:
        return False
