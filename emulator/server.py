"""A local emulator of the SendGrid and Twilio HTTP APIs that the real clients talk to.

It records every accepted message (Twilio's message list shows them, filtered and paged as
Twilio does), can be told to fail the next requests (429 with
Retry-After, 5xx, Twilio error codes), and can hold its answers back after accepting a
message, so a test can kill a worker between the provider's acceptance and the reply.

The parts: emulator.state (what it recorded and was told), emulator.sendgrid and
emulator.twilio (the endpoints), emulator.webhooks (delivery reports), emulator.outbox and
emulator.http (the server).
"""

from __future__ import annotations

import threading
from pathlib import Path

from emulator.http import Server, handler_for
from emulator.records import RecordedMessage
from emulator.state import ProviderState
from emulator.webhooks import Webhooks

# The emulator's public face, imported from here by tests, the stack and the bench.
__all__ = ["ProviderEmulator", "RecordedMessage", "Webhooks"]


class ProviderEmulator(ProviderState):
    """SendGrid's `POST /v3/mail/send` and Twilio's `POST …/Messages.json` on 127.0.0.1.

    The port is bound at construction, so `url` is known before `start()`."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, outbox: Path | None = None) -> None:
        super().__init__(outbox)
        self._server = Server((host, port), handler_for(self))
        self._thread: threading.Thread | None = None
        self._closed = False

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
