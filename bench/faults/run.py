"""One fault run: a stack, a load in rounds, faults at random moments meanwhile, the audit.

The load goes in rounds: every customer's first event, then every second event, … A round
ends once the ledger holds the rows its events make due (or after `settle_seconds`), so each
customer's events reach the journey in the order the simulation ran them, and the
prediction holds whatever the faults did to the timing. The faults run on their own
schedule across the whole load, one at a time, each finished (worker back, server up,
database reachable) before the next.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psutil
from sqlmodel import col, select
from temporalio.client import WorkflowExecutionStatus
from temporalio.service import RPCError

from bench.faults.audit import Counts, Row, compare, customer_of
from bench.faults.gate import DatabaseGate
from bench.faults.prediction import PATTERNS, Expected, Pattern, predict, profile
from bench.load import ShopClient
from bench.run import machine
from bench.stack import Stack, fresh_database, running_stack
from definition.schedule import daytime_zone
from definition.statuses import FINAL
from emulator.state import SENDGRID_WEBHOOK_RETRY_SECONDS
from reconciliation import reconcile
from stack.local import Ports, connect_when_ready, free_port, temporal_dev_server
from storage import customers as profiles
from storage.database import engine_for, normalise_url, session_for
from storage.models import Message
from workflows.handle import JourneyHandle

JOURNEY = "lifecycle"
PREDICTION_WINDOW = timedelta(hours=1)
"""How far the simulation runs: longer than any run, shorter than the journey's first wait (3 days)."""
RETRY_AFTER_SECONDS = 3


@dataclass
class Options:
    customers: int = 300
    kills: int = 20
    temporal_restarts: int = 1
    database_outage_seconds: float = 10.0
    storm: int = 40
    """Provider requests answered 429, 500 and 503 in each storm."""
    held_seconds: float = 3.0
    """Replies held back, shorter than the provider timeout: a slow provider."""
    timeouts: int = 1
    """Times replies are held past the provider timeout: sends whose outcome is unknown."""
    rate: float = 3.0
    """Events a second the shop sends."""
    settle_seconds: float = 300.0
    seed: int | None = None
    journeys: Path = Path("journeys")
    postgres_url: str = "postgresql://postgres@127.0.0.1:5432/test"
    """A database to connect to for creating (and dropping) the run's own database."""
    output: Path = Path("faults-results.json")
    keep: bool = False
    strict: bool = False
    """Sends of unknown outcome fail the run too."""


@dataclass
class Customer:
    id: str
    number: int
    pattern: Pattern
    accepted: list[str] = field(default_factory=list)
    """Ids of the events the API answered 202 for, in order."""


@dataclass
class Load:
    answers: Counter[str] = field(default_factory=Counter)
    """Every answer the shop got, by status (or the exception's name)."""
    never_accepted: int = 0


class FaultRun:
    def __init__(self, options: Options, stack: Stack, servers: contextlib.AsyncExitStack, gate: DatabaseGate,
                 direct_url: str, rng: random.Random, say: Callable[[str], None], began: float) -> None:  # fmt: skip
        self.options = options
        self.stack = stack
        self.servers = servers
        self.gate = gate
        self.direct_url = direct_url
        """The database without the gate: the driver's own reads must not depend on it."""
        self.rng = rng
        self.say = say
        self.began = began
        """Moments are printed from the run's start, the prediction included."""
        self.injected: list[dict[str, Any]] = []
        self.load = Load()

    # --- faults ---------------------------------------------------------------------------

    def plan(self) -> list[tuple[str, Callable[[], Awaitable[str]]]]:
        options = self.options
        faults: list[tuple[str, Callable[[], Awaitable[str]]]] = [
            ("worker kill -9", self.kill_worker)
        ] * options.kills
        faults += [("Temporal dev server restart", self.restart_temporal)] * options.temporal_restarts
        if options.database_outage_seconds > 0:
            faults.append(("database outage", self.cut_database))
        if options.storm > 0:
            faults += [
                (f"provider 429 storm (Retry-After {RETRY_AFTER_SECONDS} s)", self.storm_429),
                ("provider 500 storm", self.storm_500),
                ("provider 503 storm", self.storm_503),
            ]
        if options.held_seconds > 0:
            faults.append(("provider replies held", self.hold_replies))
        faults += [("provider replies past the timeout", self.time_out_replies)] * options.timeouts
        self.rng.shuffle(faults)
        return faults

    async def inject(self, seconds: float) -> None:
        """Every planned fault, at random moments spread over about `seconds`."""
        faults = self.plan()
        spacing = seconds / max(1, len(faults))
        for kind, action in faults:
            await asyncio.sleep(self.rng.uniform(0, 2 * spacing))
            at = round(time.monotonic() - self.began, 1)
            detail = await action()
            self.injected.append({"at_s": at, "fault": kind, "detail": detail})
            self.say(f"{at:7.1f} s  {kind}: {detail}")

    async def kill_worker(self) -> str:
        worker = self.stack.worker
        assert worker is not None
        pid = worker.pid
        worker.kill()
        await self.stack.start_worker()
        return f"pid {pid} killed, new worker pid {self.stack.worker.pid if self.stack.worker else '?'}"

    async def restart_temporal(self) -> str:
        old = self.stack.server
        started = time.monotonic()
        old.terminate()
        try:
            await asyncio.to_thread(old.wait, 30)
        except psutil.TimeoutExpired:
            old.kill()
        port = int(self.stack.settings.temporal_address.rsplit(":", 1)[1])
        # The same SQLite file and port; the old context's exit finds its process gone.
        ports = Ports(temporal=port, temporal_ui=free_port(), api=0, emulator=0)
        await self.servers.enter_async_context(temporal_dev_server(self.stack.folder, ports))
        await connect_when_ready(self.stack.settings)
        self.stack.server = next(
            child
            for child in psutil.Process().children(recursive=True)
            if child.name() == "temporal" and child.pid != old.pid
        )
        return f"stopped (SIGTERM) and up again on port {port} after {time.monotonic() - started:.1f} s"

    async def cut_database(self) -> str:
        seconds = self.options.database_outage_seconds
        self.gate.cut()
        await asyncio.sleep(seconds)
        self.gate.restore()
        return f"PostgreSQL unreachable for {seconds:g} s (connections reset, new ones refused)"

    async def storm_429(self) -> str:
        for channel in ("email", "sms"):
            self.stack.emulator.fail_next(channel, 429, self.options.storm, retry_after=RETRY_AFTER_SECONDS)
        return f"next {self.options.storm} email and {self.options.storm} SMS requests answered 429"

    async def storm_500(self) -> str:
        self.stack.emulator.fail_next("email", 500, self.options.storm)
        return f"next {self.options.storm} email requests answered 500"

    async def storm_503(self) -> str:
        for channel in ("email", "sms"):
            self.stack.emulator.fail_next(channel, 503, self.options.storm)
        return f"next {self.options.storm} email and {self.options.storm} SMS requests answered 503"

    async def hold_replies(self) -> str:
        return await self._hold(self.options.held_seconds)

    async def time_out_replies(self) -> str:
        # Twice the timeout: whatever arrives in the first half waits past it.
        return await self._hold(self.stack.settings.provider_timeout_seconds * 2)

    async def _hold(self, seconds: float) -> str:
        before = len(self.stack.emulator.messages())
        for channel in ("email", "sms"):
            self.stack.emulator.hold(channel)
        await asyncio.sleep(seconds)
        self.stack.emulator.release()
        held = len(self.stack.emulator.messages()) - before
        return f"accepted, answered after {seconds:g} s ({held} messages; provider timeout {self.stack.settings.provider_timeout_seconds:g} s)"

    # --- load -----------------------------------------------------------------------------

    async def send(
        self, shop: ShopClient, customers: list[Customer], expected: dict[tuple[str, int], Expected]
    ) -> None:
        rounds = max(len(pattern.events) for pattern in PATTERNS)
        for index in range(rounds):
            due = [c for c in customers if len(c.pattern.events) > index and len(c.accepted) == index]
            if not due:
                continue
            started = time.monotonic()
            await asyncio.gather(*(self._deliver(shop, c, index, started + n / self.options.rate)
                                   for n, c in enumerate(due)))  # fmt: skip
            self.say(f"{time.monotonic() - self.began:7.1f} s  round {index + 1}: {len(due)} events sent")
            await self.settle(customers, expected)

    async def _deliver(self, shop: ShopClient, customer: Customer, index: int, at: float) -> None:
        """As a careful shop does: an event not answered 202 is sent again, until it is."""
        await asyncio.sleep(max(0.0, at - time.monotonic()))
        kind, properties = customer.pattern.events[index]
        event_id = f"{customer.id}-e{index}"
        event = {"customer_id": customer.id, "type": kind, "event_id": event_id, "properties": properties}
        deadline = time.monotonic() + self.options.settle_seconds
        delay = 0.5
        while time.monotonic() < deadline:
            try:
                response = await shop.http.post("/v1/events", json=event, timeout=60)
                self.load.answers[str(response.status_code)] += 1
                if response.status_code == 202 and response.json()["results"][0]["status"] in (
                    "accepted",
                    "duplicate",
                ):
                    customer.accepted.append(event_id)
                    return
            except httpx.HTTPError as problem:
                self.load.answers[type(problem).__name__] += 1
            await asyncio.sleep(delay)
            delay = min(delay * 2, 8.0)
        self.load.never_accepted += 1

    async def settle(self, customers: list[Customer], expected: dict[tuple[str, int], Expected]) -> None:
        """Until the ledger holds, settled, as many rows as the accepted events make due."""
        due = sum(expected[(c.pattern.name, len(c.accepted))].total() for c in customers if c.accepted)
        ids = [c.id for c in customers]
        deadline = time.monotonic() + self.options.settle_seconds
        while time.monotonic() < deadline:
            if await asyncio.to_thread(self._settled_rows, ids) >= due:
                return
            await asyncio.sleep(1.0)

    def _settled_rows(self, ids: list[str]) -> int:
        with session_for(self.direct_url) as session:
            return len(
                session.exec(
                    select(Message.id).where(
                        col(Message.customer_id).in_(ids), col(Message.status).in_(FINAL)
                    )
                ).all()
            )

    # --- settling what a send could not know --------------------------------------------

    async def reconcile(self) -> dict[str, int]:
        """What an operator does after an incident: let the delivery webhooks still being
        retried arrive, then `cyklo reconcile` for the sends of unknown outcome they left."""
        deadline = time.monotonic() + SENDGRID_WEBHOOK_RETRY_SECONDS + 10
        while self.stack.emulator.webhooks_pending() and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
        settings = self.stack.settings.model_copy(update={"database_url": self.direct_url})
        settlements = await asyncio.to_thread(reconcile, settings, timedelta(hours=1))
        settled = sum(1 for item in settlements if item.settled)
        self.say(
            f"{time.monotonic() - self.began:7.1f} s  reconciled: {settled} settled, "
            f"{len(settlements) - settled} still unknown"
        )
        return {"settled": settled, "still_unknown": len(settlements) - settled}

    # --- audit ----------------------------------------------------------------------------

    async def audit(self, customers: list[Customer], expected: dict[tuple[str, int], Expected]) -> Counts:
        counts = Counts()
        with session_for(self.direct_url) as session:
            rows = session.exec(
                select(Message).where(col(Message.customer_id).in_([c.id for c in customers]))
            ).all()
        by_customer: dict[str, list[Row]] = {}
        for message in rows:
            assert message.id is not None
            by_customer.setdefault(message.customer_id, []).append(
                Row(
                    message.id,
                    message.customer_id,
                    (message.journey_id, message.channel, message.template),
                    message.status,
                    message.reason,
                    message.provider_message_id,
                )  # fmt: skip
            )
        phones = {profile(c.id, c.number, "UTC").phone or "": c.id for c in customers}
        deliveries: dict[str, list[Any]] = {}
        for delivered in self.stack.emulator.messages():
            owner = customer_of(delivered, phones)
            deliveries.setdefault(owner or "?", []).append(delivered)
        for customer in customers:
            if not customer.accepted:
                continue
            compare(customer.id, expected[(customer.pattern.name, len(customer.accepted))],
                    by_customer.get(customer.id, []), deliveries.get(customer.id, []), counts)  # fmt: skip
        if strays := deliveries.get("?"):
            counts.duplicated += len(strays)
            counts.problems.append(f"{len(strays)} messages reached the emulator for no customer of the run")
        gate = asyncio.Semaphore(20)

        async def journey(customer: Customer) -> None:
            async with gate:
                await self._check_journey(customer, counts)

        await asyncio.gather(*(journey(c) for c in customers if c.accepted))
        return counts

    async def _check_journey(self, customer: Customer, counts: Counts) -> None:
        journey = JourneyHandle(self.stack.client, JOURNEY, customer.id, rpc_timeout=timedelta(seconds=10))
        why = "no answer"
        # A workflow task or activity may still be finishing what the last fault interrupted.
        for _ in range(15):
            try:
                described = await journey.workflow.describe(rpc_timeout=timedelta(seconds=10))
                raw = described.raw_description
                if described.status != WorkflowExecutionStatus.RUNNING:
                    why = f"status {described.status.name if described.status else '?'}"
                elif raw.pending_activities:
                    why = f"{len(raw.pending_activities)} activities pending (attempt {raw.pending_activities[0].attempt})"
                elif raw.HasField("pending_workflow_task"):
                    why = f"workflow task pending (attempt {raw.pending_workflow_task.attempt})"
                elif (view := await journey.state()) is None:
                    why = "no such journey"
                else:
                    recorded = {event.event_id for event in view.recent_events}
                    missing = [event_id for event_id in customer.accepted if event_id not in recorded]
                    if missing:
                        counts.events_lost += len(missing)
                        counts.problems.append(
                            f"{customer.id}: events answered 202 but not in the journey: {missing}"
                        )
                    return
            except RPCError as error:
                why = f"{error.status.name if error.status else 'error'}: {error.message[:100]}"
            await asyncio.sleep(2)
        counts.wedged += 1
        counts.problems.append(f"{customer.id}: journey wedged ({why})")


def make_customers(count: int) -> list[Customer]:
    return [Customer(id=f"fault-{n}", number=n, pattern=PATTERNS[n % len(PATTERNS)]) for n in range(count)]


async def run_faults(options: Options, say: Callable[[str], None]) -> dict[str, Any]:
    seed = options.seed if options.seed is not None else secrets.randbelow(2**32)
    say(f"seed {seed} (--seed {seed} repeats this run's fault schedule)")
    rng = random.Random(seed)
    began = time.monotonic()
    zone = daytime_zone(datetime.now(UTC))
    expected = await predict(options.journeys, zone, PREDICTION_WINDOW)
    say(f"{time.monotonic() - began:7.1f} s  predicted {len(expected)} pattern prefixes by simulation")
    customers = make_customers(options.customers)
    folder = Path(tempfile.mkdtemp(prefix="cyklo-faults-"))
    results: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": machine(),
        "seed": seed,
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(options).items()},
        "folder": str(folder),
    }
    with (
        fresh_database(options.postgres_url, options.keep, "cyklo_faults") as direct_url,
        DatabaseGate("127.0.0.1", _port(direct_url)) as gate,
    ):
        gated_url = direct_url.replace(f":{_port(direct_url)}/", f":{gate.port}/")
        async with contextlib.AsyncExitStack() as servers:
            async with running_stack(
                folder, options.journeys, 1000, 500, database_url=gated_url, webhooks=True
            ) as stack:
                with session_for(direct_url) as session:
                    for customer in customers:
                        profiles.upsert(session, profile(customer.id, customer.number, zone))
                run = FaultRun(options, stack, servers, gate, direct_url, rng, say, began)
                events = sum(len(c.pattern.events) for c in customers)
                async with ShopClient(stack.api_url, stack.api_key) as shop:
                    faults = asyncio.create_task(run.inject(events / options.rate))
                    await run.send(shop, customers, expected)
                    await faults
                    await run.settle(customers, expected)
                    await stack.quiet(still_for=3.0)
                results["reconciliation"] = await run.reconcile()
                counts = await run.audit(customers, expected)
        engine_for(normalise_url(gated_url)).dispose()
    if options.keep:
        results["database"] = direct_url
    else:
        shutil.rmtree(folder, ignore_errors=True)
        results["folder"] = None
    by_pattern = Counter(c.pattern.name for c in customers)
    results.update(
        {
            "patterns": [
                {
                    "pattern": pattern.name,
                    "events": [kind for kind, _ in pattern.events],
                    "customers": by_pattern[pattern.name],
                    "messages_due": sorted(
                        "/".join(key)
                        for key in expected[(pattern.name, len(pattern.events))].sent().elements()
                    ),
                }
                for pattern in PATTERNS
            ],
            "faults": run.injected,
            "fault_counts": dict(Counter(item["fault"] for item in run.injected)),
            "load": {
                "events": sum(len(c.pattern.events) for c in customers),
                "accepted": sum(len(c.accepted) for c in customers),
                "never_accepted": run.load.never_accepted,
                "answers": dict(run.load.answers),
            },
            "counts": counts.as_json(),
            "failures": counts.failures(options.strict) + run.load.never_accepted,
            "seconds": round(time.monotonic() - began, 1),
        }
    )
    return results


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/", 1)[0])
