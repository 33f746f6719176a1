"""A shop's webhook endpoint on 127.0.0.1: checks cyklo's signature the way a shop would
(its own HMAC, a constant-time comparison, a bounded timestamp) and answers as told."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MAX_AGE = 300


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    signed: bool
    answered: int

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Answer:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


class Receiver:
    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.received: list[Received] = []
        self._answers: list[Answer] = []
        self._lock = threading.Lock()
        self.url = ""

    def answer_next(self, *answers: Answer) -> None:
        with self._lock:
            self._answers.extend(answers)

    def accepted(self) -> list[Received]:
        return [request for request in self.received if 200 <= request.answered < 300]

    def _signed(self, headers: dict[str, str], body: bytes) -> bool:
        timestamp = headers.get("X-Cyklo-Timestamp", "")
        if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > MAX_AGE:
            return False
        expected = hmac.new(self.secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(headers.get("X-Cyklo-Signature", ""), f"sha256={expected}")

    @contextmanager
    def running(self) -> Iterator[Receiver]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                headers = dict(self.headers.items())
                signed = receiver._signed(headers, body)
                with receiver._lock:
                    answer = receiver._answers.pop(0) if receiver._answers else Answer(204)
                status = answer.status if signed else 401
                receiver.received.append(Received(headers, body, signed, status))
                time.sleep(answer.delay)
                self.send_response(status)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        self.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/cyklo"
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            server.shutdown()
            server.server_close()
