"""Beyond one machine: two worker processes and two API processes on one Temporal server and
one PostgreSQL database, as docs/deploy.md lays them out, and a worker killed mid-load.

Each part is its own process, started as production starts it (`python worker.py`,
`cyklo api`); the providers are the emulator, reporting deliveries through signed webhooks.
Sign-ups go through both APIs in turn. The kill comes while every activity slot of both
workers is inside a provider call (the emulator holds its answers): a kill between claiming a
send and calling the provider leaves it `failed (outcome unknown)` by design (at most once,
docs/reliability.md, the fault suite's kills), so that moment is left out here; this test is
about the work the dead worker had — its sends at the provider, its cached journeys, the
sign-ups still arriving — moving to the other worker with nothing lost and nothing sent twice.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import IO

import httpx
import psycopg
from sqlmodel import col, select
from temporalio.client import Client

from bench.stack import process_environment
from definition.schedule import daytime_zone
from definition.statuses import REACHED_PROVIDER
from emulator.server import ProviderEmulator, Webhooks
from emulator.signing import new_sendgrid_key, sendgrid_public_key
from publishing import publish_journeys
from settings import Settings
from stack.local import Ports, connect_when_ready, die_with_parent, free_port, temporal_dev_server
from storage.database import session_for
from storage.models import Message
from tests.conftest import JOURNEYS, REPO, emulator_settings
from tests.test_event_rules import eventually
from worker import ACTIVITY_THREADS
from workflows.handle import JourneyHandle

CUSTOMERS = 90
BEFORE_THE_KILL = 20
"""Welcomed before the emulator starts holding its answers."""
WHILE_HELD = 50
"""Signed up while answers are held: more than both workers' activity slots (2 × 16) can take,
so the slots fill even though each worker's local activities wait for its threads meanwhile."""
API_KEY = "scale-out-test-key-0123"
PROVIDER_TIMEOUT_SECONDS = 20
"""Long enough that every slot fills before the first held call's client gives up, short of
the send's 30 s start-to-close."""


def calls_still_waited_for(emulator: ProviderEmulator) -> list[float]:
    margin = 5
    return [age for age in emulator.held_ages("email") if age < PROVIDER_TIMEOUT_SECONDS - margin]


async def test_two_workers_and_two_apis_welcome_every_customer_once_through_a_worker_kill(
    emulator: ProviderEmulator, postgres_url: str, tmp_path: Path
) -> None:
    async with running_cluster(emulator, postgres_url, tmp_path) as cluster:
        customers = [f"scale-{n}" for n in range(CUSTOMERS)]
        await cluster.put_profiles(customers)

        await cluster.sign_up(customers[:BEFORE_THE_KILL])
        await eventually(now(lambda: len(emulator.messages("email")) >= BEFORE_THE_KILL), seconds=60)

        emulator.hold("email")
        held_load = asyncio.ensure_future(cluster.sign_up(customers[BEFORE_THE_KILL : BEFORE_THE_KILL + WHILE_HELD]))
        # Every slot of both workers inside a provider call: none between claim and call. A held
        # call its client gave up on frees its slot for another send, so only calls younger than
        # the client's timeout count, with a margin for the moment between this look and the kill.
        await eventually(now(lambda: len(calls_still_waited_for(emulator)) >= 2 * ACTIVITY_THREADS), seconds=60)
        cluster.workers[0].kill()
        emulator.release()
        await held_load
        await cluster.sign_up(customers[BEFORE_THE_KILL + WHILE_HELD :])

        # The dead worker's journeys go to the other once their workflow tasks time out (10 s).
        await eventually(lambda: cluster.journeys_settled(customers), seconds=180)
        await eventually(now(lambda: emulator.webhooks_pending() == 0))

        at_provider = Counter(m.custom_args["customer_id"] for m in emulator.messages("email"))
        assert sorted(at_provider) == sorted(customers), "every customer has a welcome at the provider"
        assert set(at_provider.values()) == {1}, [c for c, n in at_provider.items() if n != 1]

        ledger = welcomes_in_ledger(postgres_url, customers)
        assert Counter(row.customer_id for row in ledger) == Counter(customers), "one welcome row each"
        wrong = [(row.customer_id, row.status, row.reason) for row in ledger if row.status not in REACHED_PROVIDER]
        assert wrong == [], "every row says the provider took the welcome"
        by_id = {str(row.id): row.customer_id for row in ledger}
        assert all(by_id.get(m.custom_args.get("cyklo_message_id", "")) == m.custom_args["customer_id"]
                   for m in emulator.messages("email"))  # fmt: skip

        # The killed worker's held sends, run again on the survivor (a local activity starts over
        # in the journey's next workflow task), which found each row decided — `sending`, or moved
        # on by the provider's webhook meanwhile — and did not send again.
        welcomes = [line for line in cluster.workers[1].log().splitlines() if "lifecycle/welcome attempt" in line]
        not_resent = [line for line in welcomes if not line.endswith(": sent")]
        assert len(not_resent) >= ACTIVITY_THREADS, not_resent
        assert all(api.returncode() is None for api in cluster.apis), "both APIs still serve"


def test_migrations_run_once_when_several_processes_start_at_once(postgres_url: str) -> None:
    """Workers and APIs migrate on start; four at once on an empty database all start."""
    started = [
        subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-c", f"from storage.database import migrate; migrate({postgres_url!r})"],
            cwd=REPO,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    errors = [process.communicate(timeout=120)[1] for process in started]
    assert [process.returncode for process in started] == [0, 0, 0, 0], errors
    with psycopg.connect(postgres_url) as database:
        assert database.execute("select count(*) from alembic_version").fetchone() == (1,)


# --- the cluster ------------------------------------------------------------------------


class Child:
    """A cyklo process of the cluster, its output in a log file."""

    def __init__(self, name: str, arguments: list[str], settings: Settings, folder: Path) -> None:
        self.path = folder / f"{name}.log"
        self._log: IO[bytes] = self.path.open("ab")
        self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and modules
            [sys.executable, *arguments],
            cwd=REPO,
            env=process_environment(settings),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent(),  # noqa: PLW1509 - no threads of ours yet at fork
        )

    def started(self, line: str) -> bool:
        """True once the log shows `line`, or the process ended (then the log says why)."""
        return line in self.log() or self.returncode() is not None

    def log(self) -> str:
        return self.path.read_text(errors="replace")

    def returncode(self) -> int | None:
        return self.process.poll()

    def kill(self) -> None:
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait()

    async def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                await asyncio.to_thread(self.process.wait, 20)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self._log.close()


class Cluster:
    def __init__(self, settings: Settings, workers: list[Child], apis: list[Child], urls: list[str]) -> None:
        self.settings = settings
        self.workers = workers
        self.apis = apis
        self.shops = [httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=60)
                      for url in urls]  # fmt: skip
        self.client: Client | None = None

    async def put_profiles(self, customers: list[str]) -> None:
        zone = daytime_zone(datetime.now(UTC))  # welcomes are not held for quiet hours

        async def one(index: int, customer: str) -> None:
            profile = {
                "email": f"{customer}@example.com",
                "first_name": "Ala",
                "locale": "pl",
                "timezone": zone,
                "consents": {"email": True, "source": "test"},
            }
            answer = await self.shops[index % 2].put(f"/v1/customers/{customer}", json=profile)
            assert answer.status_code in (200, 201), answer.text

        await in_turn([partial(one, i, c) for i, c in enumerate(customers)])

    async def sign_up(self, customers: list[str]) -> None:
        """Through both APIs in turn, each sent again until it is answered 202, as a shop does."""

        async def one(index: int, customer: str) -> None:
            event = {"customer_id": customer, "type": "signed_up", "event_id": f"signup-{customer}"}
            for _ in range(20):
                answer = await self.shops[index % 2].post("/v1/events", json=event)
                if answer.status_code == 202:
                    return
                await asyncio.sleep(0.5)
            raise AssertionError(f"{customer}'s sign-up never accepted: {answer.status_code} {answer.text}")

        await in_turn([partial(one, i, c) for i, c in enumerate(customers)])

    async def journeys_settled(self, customers: list[str]) -> bool:
        """Every customer's journey running with no activity and no workflow task outstanding."""
        if self.client is None:
            self.client = await connect_when_ready(self.settings)
        client = self.client
        for customer in customers:
            raw = (await JourneyHandle(client, "lifecycle", customer).workflow.describe()).raw_description
            if raw.pending_activities or raw.HasField("pending_workflow_task"):
                return False
        return True


@asynccontextmanager
async def running_cluster(emulator: ProviderEmulator, postgres_url: str, folder: Path) -> AsyncIterator[Cluster]:
    ports = Ports(temporal=free_port(), temporal_ui=free_port(), api=0, emulator=0)
    api_ports = [free_port(), free_port()]
    urls = [f"http://127.0.0.1:{port}" for port in api_ports]
    signing_key = new_sendgrid_key()
    settings = emulator_settings(
        emulator,
        database_url=postgres_url,
        temporal_address=f"127.0.0.1:{ports.temporal}",
        task_queue=f"scale-{uuid.uuid4().hex[:6]}",
        api_keys=f"{API_KEY}=events,support:read,support:write",
        publish_on_start=False,
        provider_timeout_seconds=PROVIDER_TIMEOUT_SECONDS,
        sendgrid_webhook_public_key=sendgrid_public_key(signing_key),
        public_url=urls[0],
        journeys_dir=JOURNEYS,
    )
    emulator.send_webhooks_to(Webhooks(urls[0], signing_key, settings.twilio_auth_token))
    async with AsyncExitStack() as running:
        await running.enter_async_context(temporal_dev_server(folder, ports))
        await connect_when_ready(settings)
        # Both workers at once on the empty database: each migrates it on start.
        workers = [Child(f"worker-{n}", ["worker.py"], settings, folder) for n in (1, 2)]
        for child in workers:
            running.push_async_callback(child.stop)
        for child in workers:
            await eventually(now(partial(child.started, "cyklo worker: ")), seconds=60)
            assert child.returncode() is None, child.log()
        # A deploy publishes once (`cyklo publish`), before the APIs read the entry rules.
        publish_journeys(settings, [JOURNEYS])
        apis = [Child(f"api-{n}", ["-m", "cli.main", "api", "--port", str(port)], settings, folder)
                for n, port in enumerate(api_ports, start=1)]  # fmt: skip
        for child in apis:
            running.push_async_callback(child.stop)
        for url, child in zip(urls, apis, strict=True):
            await eventually(partial(ready, url, child), seconds=60)
            assert child.returncode() is None, child.log()
        cluster = Cluster(settings, workers, apis, urls)
        for shop in cluster.shops:
            running.push_async_callback(shop.aclose)
        yield cluster


async def ready(url: str, child: Child) -> bool:
    """The API answers /ready (Temporal and the database reachable), or its process ended."""
    if child.returncode() is not None:
        return True
    try:
        async with httpx.AsyncClient() as http:
            return (await http.get(f"{url}/ready")).status_code == 200
    except httpx.HTTPError:
        return False


async def in_turn(calls: list[Callable[[], Awaitable[None]]], at_once: int = 8) -> None:
    gate = asyncio.Semaphore(at_once)

    async def one(call: Callable[[], Awaitable[None]]) -> None:
        async with gate:
            await call()

    await asyncio.gather(*(one(call) for call in calls))


def now(condition: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    """A plain condition for `eventually`, which awaits its check."""

    async def check() -> bool:
        return condition()

    return check


def welcomes_in_ledger(database_url: str, customers: list[str]) -> list[Message]:
    with session_for(database_url) as session:
        return list(
            session.exec(
                select(Message).where(col(Message.customer_id).in_(customers), Message.template == "welcome")
            ).all()
        )

