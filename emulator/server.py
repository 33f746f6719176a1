"""A local emulator of the SendGrid and Twilio HTTP APIs that the real clients talk to.

It records every accepted message, can be told to fail the next requests (429 with
Retry-After, 5xx, Twilio error codes), and can hold its answers back after accepting a
message, so a test can kill a worker between the provider's acceptance and the reply.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import threading
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from html import escape
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode

import phonenumbers
from cryptography.hazmat.primitives.asymmetric import ec

from emulator.signing import sign_sendgrid, sign_twilio

SENDGRID_PATH = "/v3/mail/send"
DELIVERY_DELAY_SECONDS = 0.5
TWILIO_PATH = re.compile(r"^/2010-04-01/Accounts/(?P<sid>[^/]+)/Messages\.json$")


@dataclass
class RecordedMessage:
    channel: str
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
    raw: dict[str, Any] = field(default_factory=dict)
    received_at: datetime = field(default_factory=lambda: datetime.now(UTC))

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
    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._lock = threading.Lock()
        self._messages: list[RecordedMessage] = []
        self._attempts: dict[str, int] = {"email": 0, "sms": 0}
        self._faults: dict[str, list[_Fault]] = {"email": [], "sms": []}
        self._held: dict[str, threading.Event] = {}
        self._server = ThreadingHTTPServer((host, port), _handler_for(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None
        self._webhooks: Webhooks | None = None

    def send_webhooks_to(self, webhooks: Webhooks) -> None:
        """From now on, every accepted message is reported delivered through signed webhooks."""
        self._webhooks = webhooks

    def report(self, message: RecordedMessage, event: str, **fields: Any) -> int:
        """Post one signed webhook about `message` (email: delivered, open, click, bounce, …;
        sms: sent, delivered, undelivered, failed); returns the HTTP status cyklo answered."""
        webhooks = self._webhooks
        if webhooks is None:
            raise RuntimeError("no webhooks configured: call send_webhooks_to() first")
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

    def _report_delivery(self, message: RecordedMessage) -> None:
        if self._webhooks is None:
            return
        events = ("processed", "delivered") if message.channel == "email" else ("sent", "delivered")

        def deliver() -> None:
            # Like the real providers, news of delivery comes a moment after the answer.
            time.sleep(DELIVERY_DELAY_SECONDS)
            for event in events:
                try:
                    self.report(message, event)
                except OSError:
                    return  # cyklo's API is not up: a real provider would retry; the emulator need not

        threading.Thread(target=deliver, name="emulator-webhooks", daemon=True).start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> ProviderEmulator:
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="provider-emulator", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self.release()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> ProviderEmulator:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def messages(self, channel: str | None = None) -> list[RecordedMessage]:
        with self._lock:
            return [message for message in self._messages if channel is None or message.channel == channel]

    def attempts(self, channel: str) -> int:
        with self._lock:
            return self._attempts[channel]

    def fail_next(
        self,
        channel: str,
        status: int,
        count: int = 1,
        retry_after: int | None = None,
        code: int | None = None,
    ) -> None:
        with self._lock:
            self._faults[channel].append(_Fault(status, count, retry_after, code))

    def hold(self, channel: str) -> None:
        with self._lock:
            self._held[channel] = threading.Event()

    def release(self) -> None:
        with self._lock:
            held, self._held = self._held, {}
        for gate in held.values():
            gate.set()

    def reset(self) -> None:
        self.release()
        with self._lock:
            self._messages.clear()
            self._attempts = {"email": 0, "sms": 0}
            self._faults = {"email": [], "sms": []}

    # --- used by the request handler ----------------------------------------------------

    def _take_fault(self, channel: str) -> _Fault | None:
        with self._lock:
            self._attempts[channel] += 1
            faults = self._faults[channel]
            if not faults:
                return None
            fault = faults[0]
            fault.count -= 1
            if fault.count <= 0:
                faults.pop(0)
            return fault

    def _record(self, message: RecordedMessage) -> threading.Event | None:
        with self._lock:
            self._messages.append(message)
            gate = self._held.get(message.channel)
        self._report_delivery(message)
        return gate


def _handler_for(emulator: ProviderEmulator) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_: Any) -> None:  # quiet: tests and the dev stack read the records
            pass

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            if self.path == "/health":
                self._json(200, {"status": "ok"})
            elif self.path.split("?")[0] in ("/", "/outbox"):
                page = outbox_page(emulator.messages()).encode()
                self._send(200, page, {"Content-Type": "text/html; charset=utf-8"})
            elif self.path.startswith("/_emulator/messages"):
                self._json(200, [message.as_json() for message in emulator.messages()])
            else:
                self._json(404, {"error": "not found"})

        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.path == SENDGRID_PATH:
                self._sendgrid(body)
            elif match := TWILIO_PATH.match(self.path):
                self._twilio(match.group("sid"), body)
            elif self.path == "/_emulator/faults":
                fault = json.loads(body or b"{}")
                emulator.fail_next(
                    fault["channel"],
                    int(fault["status"]),
                    int(fault.get("count", 1)),
                    fault.get("retry_after"),
                    fault.get("code"),
                )
                self._json(204, None)
            elif self.path == "/_emulator/reset":
                emulator.reset()
                self._json(204, None)
            else:
                self._json(404, {"error": "not found"})

        def _sendgrid(self, body: bytes) -> None:
            if (
                not self.headers.get("Authorization", "").startswith("Bearer ")
                or self.headers["Authorization"] == "Bearer "
            ):
                self._json(
                    401,
                    {"errors": [{"message": "The provided authorization grant is invalid", "field": None}]},
                )
                return
            fault = emulator._take_fault("email")
            if fault is not None:
                self._fault(
                    fault, {"errors": [{"message": f"emulated failure {fault.status}", "field": None}]}
                )
                return
            try:
                mail = json.loads(body)
                personalization = mail["personalizations"][0]
                recipient = personalization["to"][0]["email"]
            except (ValueError, KeyError, IndexError, TypeError):
                self._json(400, {"errors": [{"message": "Bad Request", "field": "personalizations"}]})
                return
            contents = {item["type"]: item["value"] for item in mail.get("content", [])}
            provider_id = secrets.token_urlsafe(16)
            gate = emulator._record(
                RecordedMessage(
                    channel="email",
                    provider_id=provider_id,
                    to=recipient,
                    sender=mail.get("from", {}).get("email", ""),
                    subject=personalization.get("subject") or mail.get("subject"),
                    html=contents.get("text/html"),
                    text=contents.get("text/plain"),
                    custom_args={**mail.get("custom_args", {}), **personalization.get("custom_args", {})},
                    categories=list(mail.get("categories", [])),
                    headers=dict(mail.get("headers", {})),
                    raw=mail,
                )
            )
            if gate is not None:
                gate.wait()
            self._send(202, b"", {"X-Message-Id": provider_id})

        def _twilio(self, account_sid: str, body: bytes) -> None:
            if self._basic_user() != account_sid:
                self._json(401, _twilio_error(20003, "Authenticate", 401))
                return
            form = {key: values[0] for key, values in parse_qs(body.decode("utf-8")).items()}
            to = form.get("To", "")
            fault = emulator._take_fault("sms")
            if fault is not None:
                # Twilio's own texts quote the number, e.g. for 21211 and 21610.
                text = f"emulated failure {fault.status} for {to}"
                self._fault(fault, _twilio_error(fault.code or 20500, text, fault.status))
                return
            if not _valid_e164(to):
                self._json(
                    400, _twilio_error(21211, f"The 'To' number {to} is not a valid phone number.", 400)
                )
                return
            sid = "SM" + secrets.token_hex(16)
            gate = emulator._record(
                RecordedMessage(
                    channel="sms",
                    provider_id=sid,
                    to=to,
                    sender=form.get("From", ""),
                    body=form.get("Body"),
                    raw=form,
                )
            )
            if gate is not None:
                gate.wait()
            from activities.sms import sms_encoding

            _, segments = sms_encoding(form.get("Body", ""))
            now = datetime.now(UTC).strftime("%a, %d %b %Y %H:%M:%S +0000")
            self._json(
                201,
                {
                    "sid": sid,
                    "account_sid": account_sid,
                    "to": to,
                    "from": form.get("From"),
                    "body": form.get("Body"),
                    "status": "queued",
                    "num_segments": str(segments),
                    "num_media": "0",
                    "direction": "outbound-api",
                    "api_version": "2010-04-01",
                    "date_created": now,
                    "date_updated": now,
                    "date_sent": None,
                    "price": None,
                    "price_unit": "USD",
                    "error_code": None,
                    "error_message": None,
                    "messaging_service_sid": None,
                    "uri": f"/2010-04-01/Accounts/{account_sid}/Messages/{sid}.json",
                    "subresource_uris": {
                        "media": f"/2010-04-01/Accounts/{account_sid}/Messages/{sid}/Media.json"
                    },
                },
            )

        def _basic_user(self) -> str | None:
            header = self.headers.get("Authorization", "")
            if not header.startswith("Basic "):
                return None
            try:
                return base64.b64decode(header[6:]).decode().split(":", 1)[0]
            except ValueError:
                return None

        def _fault(self, fault: _Fault, payload: dict[str, Any]) -> None:
            headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
            self._json(fault.status, payload, headers)

        def _json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
            data = b"" if payload is None else json.dumps(payload).encode()
            self._send(status, data, {"Content-Type": "application/json", **(headers or {})})

        def _send(self, status: int, data: bytes, headers: dict[str, str]) -> None:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


def outbox_page(messages: list[RecordedMessage]) -> str:
    """What the emulator received, as the customer would see it: newest first."""
    from activities.sms import sms_encoding

    cards = []
    for message in reversed(messages):
        when = message.received_at.strftime("%Y-%m-%d %H:%M:%S UTC")
        if message.channel == "email":
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


def _twilio_error(code: int, message: str, status: int) -> dict[str, Any]:
    return {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


def _valid_e164(number: str) -> bool:
    try:
        return number.startswith("+") and phonenumbers.is_valid_number(phonenumbers.parse(number, None))
    except phonenumbers.NumberParseException:
        return False
