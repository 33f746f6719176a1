"""`cyklo dev`: one command runs everything; Ctrl-C stops it all; starting again resumes."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from client.platform import Cyklo
from tests.conftest import REPO, SANDBOX


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for probe in sockets:
        probe.bind(("127.0.0.1", 0))
    ports = [int(probe.getsockname()[1]) for probe in sockets]
    for probe in sockets:
        probe.close()
    return ports


class LocalStack:
    def __init__(self, data: Path) -> None:
        api, temporal, emulator = _free_ports(3)
        self.data, self.api_url = data, f"http://127.0.0.1:{api}"
        self.outbox_url = f"http://127.0.0.1:{emulator}/outbox"
        self.arguments = [
            sys.executable,
            "-m",
            "cli.main",
            "dev",
            "--data",
            str(data),
            "--api-port",
            str(api),
            "--temporal-port",
            str(temporal),
            "--emulator-port",
            str(emulator),
        ]
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> str:
        # As a shop runs it: the embedded database, the worker without the sandbox.
        environment = {
            key: value for key, value in os.environ.items() if key not in ("CYKLO_DATABASE_URL", SANDBOX)
        }
        self.process = subprocess.Popen(
            self.arguments,
            cwd=REPO,
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.api_url + "/health", timeout=1).status_code == 200:
                    return (self.data / "dev-api-key").read_text().strip()
            except httpx.HTTPError:
                time.sleep(0.3)
        self.stop()
        raise AssertionError("cyklo dev did not come up")

    def stop(self) -> str:
        assert self.process is not None
        self.process.send_signal(signal.SIGINT)
        output, _ = self.process.communicate(timeout=60)
        return output


def test_dev_stack_stops_on_ctrl_c_and_resumes_journeys_when_started_again(tmp_path: Path) -> None:
    stack = LocalStack(tmp_path / "data")
    key = stack.start()
    with Cyklo(stack.api_url, key) as cyklo:
        cyklo.identify("c-dev", email="dev@example.com", consents={"email": True})
        cyklo.track("c-dev", "purchase", {"order_id": "o-1", "amount": 10.0}, event_id="dev-1")
        time.sleep(2)
        before = cyklo.customer("c-dev")["journeys"]["lifecycle"]
    sent_before = _outbox_count(stack.outbox_url)
    first_output = stack.stop()

    assert "API docs" in first_output and "Temporal UI" in first_output
    assert key not in first_output and str(stack.data / "dev-api-key") in first_output
    assert "cyklo stopped" in first_output
    assert not _listening(stack.api_url), "Ctrl-C stopped the API"

    assert stack.start() == key, "the development key stays with the data folder"
    with Cyklo(stack.api_url, key) as cyklo:
        after = cyklo.customer("c-dev")["journeys"]["lifecycle"]
    sent_after = _outbox_count(stack.outbox_url)
    stack.stop()

    assert sent_before >= 1 and sent_after == sent_before, "the outbox is kept in the data folder too"
    assert (stack.data / "outbox.jsonl").exists()
    assert before["stage"] == after["stage"] == "new"
    assert after["next_wake_at"] == before["next_wake_at"], "the cross-sell timer survived the restart"


def test_a_port_in_use_is_named(tmp_path: Path) -> None:
    stack = LocalStack(tmp_path / "data")
    api_port = int(stack.api_url.rsplit(":", 1)[1])
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", api_port))
        taken.listen()
        result = subprocess.run(stack.arguments, cwd=REPO, capture_output=True, text=True, timeout=60)

    assert result.returncode != 0
    assert f"port {api_port} (api) is already in use" in result.stderr
    assert "Traceback" not in result.stderr


def _listening(url: str) -> bool:
    try:
        httpx.get(url + "/health", timeout=1)
    except httpx.HTTPError:
        return False
    return True


def _outbox_count(url: str) -> int:
    found = re.search(r"Outbox — (\d+) message", httpx.get(url, timeout=5).text)
    assert found, "the outbox page counts its messages"
    return int(found.group(1))
