"""What the emulated endpoints share: the state they record into, and how an answer is written."""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler
from typing import Any, ClassVar

from emulator.records import Fault
from emulator.state import ProviderState


class Endpoint(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    emulator: ClassVar[ProviderState]

    def log_message(self, *_: Any) -> None:  # quiet: tests and the dev stack read the records
        pass

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


def retry_after(fault: Fault) -> dict[str, str]:
    return {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
