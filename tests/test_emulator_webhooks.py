"""The emulator reports deliveries as the providers do: SendGrid posts an event again while
the receiver cannot take it, Twilio posts a status callback once. The fault suite's figures
rest on this (an API briefly out during a database outage must still learn of deliveries)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from activities.email import send_email
from activities.sms import send_sms
from emulator.server import ProviderEmulator, Webhooks
from emulator.signing import new_sendgrid_key
from tests.conftest import emulator_settings
from tests.test_providers import an_email


class Receiver(ThreadingHTTPServer):
    """Answers 503 to the first `refusals` posts of each provider, 200 after; keeps what came."""

    def __init__(self, refusals: int) -> None:
        self.refusals = {"/webhooks/sendgrid": refusals, "/webhooks/twilio/status": refusals}
        self.received: list[tuple[str, int, bytes]] = []
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        with self.server.lock:
            refuse = self.server.refusals.get(self.path, 0) > 0
            if refuse:
                self.server.refusals[self.path] -= 1
            status = 503 if refuse else 200
            self.server.received.append((self.path, status, body))
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver(refusals=2)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_sendgrid_events_are_posted_again_until_taken_twilio_callbacks_once(
    emulator: ProviderEmulator, receiver: Receiver
) -> None:
    host, port = receiver.server_address[:2]
    emulator.send_webhooks_to(Webhooks(f"http://{host!s}:{port}", new_sendgrid_key(), "token"))
    settings = emulator_settings(emulator)
    send_email(an_email(), settings)
    send_sms("+48601234567", "Dzięki!", settings)

    deadline = time.monotonic() + 20
    while emulator.webhooks_pending() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert emulator.webhooks_pending() == 0

    sendgrid = [(status, json.loads(body)[0]["event"]) for path, status, body in receiver.received
                if path == "/webhooks/sendgrid"]  # fmt: skip
    # The first event refused twice, then taken; the next taken at once: nothing lost.
    assert sendgrid == [(503, "processed"), (503, "processed"), (200, "processed"), (200, "delivered")]
    twilio = [status for path, status, _ in receiver.received if path == "/webhooks/twilio/status"]
    # Twilio does not retry a refused status callback: `cyklo reconcile` settles what it loses.
    assert twilio == [503, 503]
