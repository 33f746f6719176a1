"""The emulator's HTTP server: one thread per connection (so a held answer blocks only its
own), routes to the SendGrid and Twilio endpoints, the outbox and the control API."""

from __future__ import annotations

import json
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from emulator.outbox import outbox_page
from emulator.records import checked_channel
from emulator.sendgrid import SENDGRID_PATH, SendGridEndpoint
from emulator.state import ProviderState
from emulator.twilio import TWILIO_PATH, TwilioEndpoint


class Server(ThreadingHTTPServer):
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


class BadRequest(Exception):
    pass


def handler_for(emulator: ProviderState) -> type[BaseHTTPRequestHandler]:
    class Handler(SendGridEndpoint, TwilioEndpoint):
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
                    found = emulator.messages(None if channel is None else checked_channel(channel))
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
                except BadRequest as problem:
                    self._json(400, {"error": str(problem)})
            else:
                self._json(404, {"error": "not found"})

        def _control(self, path: str, body: bytes) -> None:
            if path == "/_emulator/reset":
                emulator.reset()
            elif path == "/_emulator/release":
                emulator.release()
            elif path in ("/_emulator/faults", "/_emulator/hold"):
                order = json_object(body)
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
                    raise BadRequest(f"missing field {missing}") from None
                except (TypeError, ValueError) as problem:
                    raise BadRequest(str(problem)) from None
            else:
                self._json(404, {"error": "not found"})
                return
            self._send(204, b"", {})

    Handler.emulator = emulator
    return Handler


def json_object(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body or b"{}")
    except ValueError as problem:
        raise BadRequest(f"not JSON: {problem}") from None
    if not isinstance(value, dict):
        raise BadRequest("expected a JSON object")
    return value
