"""The emulator's state: what it accepted, the faults and holds it was told to apply, and
where it reports deliveries. Threads of the HTTP server share it behind one lock."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

from emulator.records import CHANNELS, Channel, Fault, RecordedMessage, checked_channel
from emulator.webhooks import Webhooks, post_report

DELIVERY_DELAY_SECONDS = 0.5
SENDGRID_WEBHOOK_RETRY_SECONDS = 120.0
"""SendGrid posts an event again while the receiver answers non-2xx or cannot be reached
(for 24 hours); the emulator keeps trying for two minutes. Twilio does not retry a status
callback by default, so neither does the emulator: `cyklo reconcile` covers what is lost."""


class ProviderState:
    def __init__(self, outbox: Path | None = None) -> None:
        """`outbox`: a JSON-lines file that keeps the accepted messages across restarts
        (`cyklo dev` keeps it in its data folder); without one they live in memory only."""
        self._lock = threading.Lock()
        self._outbox = outbox
        self._messages: list[RecordedMessage] = _read_outbox(outbox) if outbox is not None else []
        self._attempts: dict[str, int] = dict.fromkeys(CHANNELS, 0)
        self._faults: dict[str, list[Fault]] = {channel: [] for channel in CHANNELS}
        self._held: dict[str, threading.Event] = {}
        self._waiting: dict[int, tuple[Channel, float]] = {}
        """Requests now held, by id(message): their channel and when they came (monotonic)."""
        self._stopping = False
        self._webhooks: Webhooks | None = None
        self._reports_pending = 0

    def messages(self, channel: str | None = None) -> list[RecordedMessage]:
        """Accepted messages, oldest first."""
        with self._lock:
            return [message for message in self._messages if channel is None or message.channel == channel]

    def attempts(self, channel: str) -> int:
        """Requests that reached the channel's endpoint, accepted or not."""
        with self._lock:
            return self._attempts[checked_channel(channel)]

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
            self._faults[checked_channel(channel)].append(Fault(status, count, retry_after, code))

    def hold(self, channel: str) -> None:
        """Accept and record the channel's requests at once, but answer none until release()."""
        with self._lock:
            self._held.setdefault(checked_channel(channel), threading.Event())

    def held_ages(self, channel: str) -> list[float]:
        """Seconds since each of the channel's held requests came, oldest first. A client may
        have given up on a held request (its timeout) while the emulator still holds it."""
        wanted = checked_channel(channel)
        now = time.monotonic()
        with self._lock:
            return sorted((now - came for held, came in self._waiting.values() if held == wanted), reverse=True)

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
            if self._outbox is not None:
                self._outbox.write_text("")
            self._attempts = dict.fromkeys(CHANNELS, 0)
            self._faults = {channel: [] for channel in CHANNELS}

    def deliver_as(self, provider_id: str, status: str, error_code: int | None = None) -> None:
        """Say that a recorded message ended otherwise than delivered (e.g. "undelivered", 30007)."""
        with self._lock:
            message = next((found for found in self._messages if found.provider_id == provider_id), None)
            if message is None:
                raise ValueError(f"no recorded message {provider_id!r}")
            message.delivery, message.error_code = status, error_code

    def webhooks_pending(self) -> int:
        """Messages whose delivery news is still to be posted (or retried)."""
        with self._lock:
            return self._reports_pending

    def send_webhooks_to(self, webhooks: Webhooks) -> None:
        """From now on, every accepted message is reported delivered through signed webhooks."""
        self._webhooks = webhooks

    def report(self, message: RecordedMessage, event: str, **fields: Any) -> int:
        """Post one signed webhook about `message` (email: delivered, open, click, bounce, …;
        sms: sent, delivered, undelivered, failed); returns the HTTP status cyklo answered."""
        if self._webhooks is None:
            raise RuntimeError("no webhooks configured: call send_webhooks_to() first")
        return post_report(self._webhooks, message, event, fields)

    # --- used by the endpoints -----------------------------------------------------------

    def attempt(self, channel: Channel) -> None:
        with self._lock:
            self._attempts[channel] += 1

    def take_fault(self, channel: Channel) -> Fault | None:
        with self._lock:
            faults = self._faults[channel]
            if not faults:
                return None
            fault = faults[0]
            fault.count -= 1
            if fault.count <= 0:
                faults.pop(0)
            return fault

    def accept(self, message: RecordedMessage) -> bool:
        """Record the message, wait while its channel is held; False if the emulator
        stopped meanwhile and the request must end without an answer."""
        with self._lock:
            self._messages.append(message)
            if self._outbox is not None:
                with self._outbox.open("a", encoding="utf-8") as outbox:
                    outbox.write(json.dumps(message.as_json(), ensure_ascii=False) + "\n")
            # Once stopping, nothing would ever release a new hold.
            gate = None if self._stopping else self._held.get(message.channel)
            if gate is not None:
                self._waiting[id(message)] = (message.channel, time.monotonic())
        self._report_delivery(message)
        if gate is not None:
            gate.wait()
        with self._lock:
            self._waiting.pop(id(message), None)
            return not self._stopping

    def _report_delivery(self, message: RecordedMessage) -> None:
        if self._webhooks is None:
            return
        events = ("processed", "delivered") if message.channel == Channel.EMAIL else ("sent", "delivered")

        def deliver() -> None:
            # Like the real providers, news of delivery comes a moment after the answer.
            time.sleep(DELIVERY_DELAY_SECONDS)
            try:
                for event in events:
                    self._report_until_taken(message, event)
            finally:
                with self._lock:
                    self._reports_pending -= 1

        with self._lock:
            self._reports_pending += 1
        threading.Thread(target=deliver, name="emulator-webhooks", daemon=True).start()

    def _report_until_taken(self, message: RecordedMessage, event: str) -> bool:
        """Post one webhook as its provider would: SendGrid again with backoff while cyklo
        answers non-2xx or is unreachable, Twilio once. False if it was never taken."""
        deadline = time.monotonic() + (SENDGRID_WEBHOOK_RETRY_SECONDS if message.channel == Channel.EMAIL else 0)
        pause = 0.5
        while True:
            try:
                if 200 <= self.report(message, event) < 300:
                    return True
            except OSError:
                pass
            with self._lock:
                stopping = self._stopping
            if stopping or time.monotonic() + pause > deadline:
                return False
            time.sleep(pause)
            pause = min(pause * 2, 8.0)


def _read_outbox(path: Path) -> list[RecordedMessage]:
    if not path.exists():
        return []
    messages = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            messages.append(RecordedMessage.from_json(json.loads(line)))
        except (ValueError, TypeError, KeyError):
            continue  # a line cut short when the emulator was killed mid-write: that message only
    return messages
