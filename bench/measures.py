"""Each benchmark: what it does to the stack, and the figures it returns (plain dicts for JSON)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDConflictPolicy
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from bench.baseline import BASELINE_QUEUE, BASELINE_WORKFLOW, BaselineWorkflow
from bench.load import ShopClient, purchases_at_rate, wait_for_emails
from bench.stack import Stack
from connection import installed_binary
from simulation.runner import runtime, simulate
from simulation.scenario import load_scenario
from workflows.handle import JourneyHandle
from workflows.interface import JourneyEvent, workflow_id
from workflows.journey import CUSTOMER_ID, JOURNEY_ID

Advance = Callable[[int], None]
Phase = Callable[[str, int], Advance]
"""Opens a progress bar (description, total) and returns what moves it on."""

JOURNEY = "lifecycle"


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile: p99 of 600 samples is the 594th smallest."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * share // 1))
    return ordered[int(rank) - 1]


def distribution(values: list[float]) -> dict[str, float]:
    return {
        "samples": len(values),
        "p50": percentile(values, 0.50),
        "p95": percentile(values, 0.95),
        "p99": percentile(values, 0.99),
        "max": max(values),
    }


def cpu_delta(before: dict[str, float], after: dict[str, float], customers: int) -> dict[str, float]:
    """CPU milliseconds per customer, per process."""
    return {name: round((after[name] - before[name]) * 1000 / customers, 2) for name in before}


# --- journey throughput vs the limit ----------------------------------------------------


async def start_baseline(stack: Stack, run: Callable[[Any, str], Awaitable[Any]], customer: str) -> None:
    """A raw-Temporal workflow started exactly as cyklo's router starts a journey: signal-with-start
    of the sign-up, `USE_EXISTING`, the same search attributes and data converter."""
    await stack.client.start_workflow(
        run,
        customer,
        id=workflow_id("baseline", customer),
        task_queue=BASELINE_QUEUE,
        start_signal="event",
        start_signal_args=[
            JourneyEvent(event_id=f"signup-{customer}", type="signed_up", occurred_at=datetime.now(UTC))
        ],
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        search_attributes=TypedSearchAttributes(
            [SearchAttributePair(CUSTOMER_ID, customer), SearchAttributePair(JOURNEY_ID, "baseline")]
        ),
    )


async def baseline_throughput(
    stack: Stack, count: int, concurrency: int, phase: Phase, prefix: str = ""
) -> dict[str, Any]:
    """(a) N workflows of one no-op activity each, started as the router starts journeys;
    their customers are `prefix`0, 1, … (fresh ones by default)."""
    prefix = prefix or f"base-{time.strftime('%H%M%S')}-"
    advance = phase("baseline: workflows started and done", count)
    gate = asyncio.Semaphore(concurrency)

    async def start(index: int) -> None:
        customer = f"{prefix}{index}"
        async with gate:
            await start_baseline(stack, BaselineWorkflow.run, customer)

    query = f'WorkflowType = "{BASELINE_WORKFLOW}" AND ExecutionStatus = "Completed" AND CustomerId STARTS_WITH "{prefix}"'
    before, began = stack.cpu_seconds(), time.monotonic()
    starting = asyncio.gather(*(start(index) for index in range(count)))
    done = 0
    while done < count:
        await asyncio.sleep(0.25)
        if starting.done():
            starting.result()  # a start that failed ends the benchmark, with its reason
        now_done = (await stack.client.count_workflows(query)).count
        advance(now_done - done)
        done = now_done
    elapsed = time.monotonic() - began
    await starting
    return {
        "workflows": count,
        "seconds": round(elapsed, 2),
        "per_second": round(count / elapsed, 2),
        "cpu_ms_per_workflow": cpu_delta(before, stack.cpu_seconds(), count),
    }


async def enrol(
    stack: Stack, shop: ShopClient, customers: list[str], concurrency: int, phase: Phase, what: str
) -> None:
    """Customers signed up and welcomed, ready for what is measured next (not itself measured)."""
    if not customers:
        return
    stack.add_customers(customers)
    await welcome(
        stack, shop, customers, concurrency, phase(what, len(customers)) if what else (lambda _: None)
    )


async def welcome(
    stack: Stack, shop: ShopClient, customers: list[str], concurrency: int, advance: Advance
) -> None:
    """Sign the customers up; return once every welcome email has reached the emulator."""
    signing_up = asyncio.create_task(shop.sign_up(customers, concurrency))
    await wait_for_emails(
        stack.emulator,
        "welcome",
        set(customers),
        timeout=600 + len(customers),
        advance=advance,
        feeding=signing_up,
    )
    await signing_up


# --- event latency ------------------------------------------------------------------------


async def purchase_latency(
    stack: Stack, shop: ShopClient, customers: list[str], rate: float, phase: Phase, what: str = ""
) -> dict[str, Any]:
    """Purchases at `rate` per second, one per customer in the prospect stage; latency is from
    the API's 202 to the thank-you email reaching the emulator."""
    await stack.quiet()
    advance = phase(
        f"purchases at {rate:g}/s{', ' + what if what else ''}: thank-yous arrived", len(customers)
    )
    purchases = await purchases_at_rate(shop, customers, rate)
    arrived = await wait_for_emails(
        stack.emulator, "thank_you", set(customers), timeout=600 + len(customers), advance=advance
    )
    latencies = [arrived[p.customer_id].timestamp() - p.accepted_at for p in purchases]
    api = [p.accepted_at - p.sent_at for p in purchases]
    return {
        "rate_per_second": rate,
        "purchases": len(purchases),
        "from_202_to_thank_you_ms": {k: ms(v) for k, v in distribution(latencies).items()},
        "api_response_ms": {k: ms(v) for k, v in distribution(api).items()},
    }


def ms(value: float) -> float:
    return round(value * 1000, 1) if isinstance(value, float) else value


# --- memory and history -------------------------------------------------------------------


async def worker_memory(
    stack: Stack, shop: ShopClient, sizes: list[int], concurrency: int, phase: Phase, prefix: str
) -> dict[str, Any]:
    """Worker RSS with N sleeping customers, on a worker started fresh for this measure; read
    at every multiple of the smallest size too, so a leak shows as a slope."""
    await stack.start_worker()
    assert stack.worker is not None
    step = min(sizes)
    marks = sorted(set(sizes) | set(range(step, max(sizes) + 1, step)))
    rss: dict[str, float] = {"fresh worker": _mib(stack.worker.memory_info().rss)}
    enrolled = 0
    advance = phase(f"memory: up to {max(sizes)} customers asleep", max(sizes))
    for mark in marks:
        await enrol(
            stack, shop, [f"{prefix}-{index}" for index in range(enrolled, mark)], concurrency, phase, ""
        )
        advance(mark - enrolled)
        enrolled = mark
        await asyncio.sleep(3)  # let in-flight tasks finish: measure the worker at rest
        rss[str(mark)] = _mib(stack.worker.memory_info().rss)
    smallest, largest = str(min(sizes)), str(max(sizes))
    return {
        "rss_mib": {key: value for key, value in rss.items() if not key.isdigit() or int(key) in sizes},
        "rss_mib_every_step": rss,
        "growth_percent": round((rss[largest] / rss[smallest] - 1) * 100, 1),
        "workflow_cache_size": stack.settings.workflow_cache_size,
    }


def _mib(value: int) -> float:
    return round(value / 2**20, 1)


async def history_after_purchases(
    stack: Stack, shop: ShopClient, customer: str, purchases: int, phase: Phase
) -> dict[str, Any]:
    """One customer, many purchases: the history each run keeps, bounded by continue-as-new."""
    stack.add_customers([customer])
    advance = phase(f"history: {purchases} purchases of one customer", purchases)
    for start in range(0, purchases, 100):
        batch = range(start, min(purchases, start + 100))
        await shop.post_events(
            [
                {
                    "customer_id": customer,
                    "type": "purchase",
                    "event_id": f"order-{customer}-{index}",
                    "properties": {"order_id": f"o-{index}", "amount": 25.0, "category": "socks"},
                }
                for index in batch
            ]
        )
        advance(len(batch))
    journey = JourneyHandle(stack.client, JOURNEY, customer)
    orders = await _wait_for_orders(journey, purchases)
    runs = await _run_histories(journey)
    return {
        "purchases": purchases,
        "orders_counted": orders,
        "runs": len(runs),
        "events_per_run_setting": stack.settings.events_per_run,
        "per_run": runs,
        "largest_run": max(runs, key=lambda run: run["events"]),
    }


async def _wait_for_orders(journey: JourneyHandle, purchases: int) -> int:
    deadline = time.monotonic() + 300
    while True:
        with contextlib.suppress(RPCError):  # the run may be continuing as new just now
            view = await journey.state()
            if view is not None and view.metrics["orders"] >= purchases:
                return int(view.metrics["orders"])
        if time.monotonic() > deadline:
            raise RuntimeError(f"the journey had not counted {purchases} purchases after 300 s")
        await asyncio.sleep(0.5)


async def _run_histories(journey: JourneyHandle) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = []
    for run_id in await journey.run_ids():
        history = await journey.history(run_id)
        runs.append(
            {
                "events": len(history.events),
                "kib": round(sum(event.ByteSize() for event in history.events) / 1024, 1),
            }
        )
    return runs


# --- simulation -----------------------------------------------------------------------------


async def simulation_speed(journeys: Path, scenario_path: Path, repeats: int, phase: Phase) -> dict[str, Any]:
    """Seconds per simulated customer-year on the time-skipping server; the server's own
    start is timed apart, since a batch of simulations pays it once."""
    scenario = load_scenario(scenario_path)
    years = (scenario.end - scenario.start).total_seconds() / (365 * 86400)
    advance = phase("simulation: customer-years", repeats)
    walls, messages = [], 0
    for _ in range(repeats):
        began = time.monotonic()
        result = await simulate([journeys], scenario)
        walls.append(time.monotonic() - began)
        messages = sum(entry.kind == "message" for entry in result.timeline)
        advance(1)
    began = time.monotonic()
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=installed_binary("temporal-test-server"), runtime=runtime()
    )
    await env.shutdown()
    server = time.monotonic() - began
    best = min(walls)
    return {
        "scenario": str(scenario_path),
        "customer_years": round(years, 3),
        "messages": messages,
        "seconds_per_customer_year": round(best / years, 2),
        "seconds_per_customer_year_without_server_start": round((best - server) / years, 2),
        "server_start_and_stop_seconds": round(server, 2),
        "messages_per_second": round(messages / max(best - server, 1e-3), 1),
        "runs_seconds": [round(wall, 2) for wall in walls],
    }


# --- where the time goes ----------------------------------------------------------------


@contextlib.contextmanager
def profiled(pid: int, output: Path) -> Iterator[None]:
    """py-spy samples the worker from outside (every thread, no code change), 100 times a second."""
    spy = subprocess.Popen(  # noqa: S603 - py-spy from the venv, our worker's pid
        [
            installed_binary("py-spy"),
            "record",
            "--pid",
            str(pid),
            "--rate",
            "100",
            "--nonblocking",
            "--nolineno",
            "--format",
            "raw",
            "--output",
            str(output),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)
        _, complaint = spy.communicate(timeout=60)
        if not output.exists():
            # Attaching needs ptrace rights (kernel.yama.ptrace_scope, SYS_PTRACE in a container).
            raise ProfileFailed(f"py-spy could not sample the worker: {complaint.strip()[-300:]}")


PLUMBING = ("threading.py", "concurrent/futures/thread.py", "asyncio/", "<frozen runpy>", "<module>")
"""Frames under every sample of a thread or the event loop: they say nothing of where time goes."""


class ProfileFailed(RuntimeError):
    pass


def top_functions(raw: Path, count: int = 15) -> dict[str, Any]:
    """From py-spy's raw stacks: functions by samples on CPU themselves (self) and below them
    (total, without the thread and event-loop plumbing every sample passes through)."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for line in raw.read_text().splitlines():
        stack, _, weight = line.rpartition(" ")
        if not stack or not weight.isdigit():
            continue
        frames = stack.split(";")
        samples += int(weight)
        own[frames[-1]] += int(weight)
        for frame in set(frames):
            if not any(marker in frame for marker in PLUMBING):
                total[frame] += int(weight)

    def share(counter: Counter[str]) -> list[dict[str, Any]]:
        return [
            {"function": name, "percent": round(100 * hits / samples, 1)}
            for name, hits in counter.most_common(count)
        ]

    return {"samples": samples, "self": share(own), "total": share(total)}


async def signup_profile(
    stack: Stack, shop: ShopClient, customers: list[str], concurrency: int, phase: Phase, output: Path
) -> dict[str, Any]:
    assert stack.worker is not None
    try:
        with profiled(stack.worker.pid, output):
            await enrol(stack, shop, customers, concurrency, phase, "profile: customers welcomed")
    except ProfileFailed as failure:
        return {"customers": len(customers), "error": str(failure)}
    return {"customers": len(customers), "raw_stacks": str(output), **top_functions(output)}


# --- a real base ----------------------------------------------------------------------------


async def real_base(
    stack: Stack, shop: ShopClient, customers: int, step: int, concurrency: int, phase: Phase
) -> dict[str, Any]:
    """`customers` signed up and welcomed, then asleep in the journey (a 3-day wait), `step` at a
    time; at every step the time so far, the worker's RSS at rest and both databases' sizes."""
    advance = phase(f"base: {customers} customers signed up and asleep", customers)
    marks = sorted({*range(step, customers, step), customers})
    steps: list[dict[str, Any]] = []
    enrolled, began = 0, time.monotonic()
    for mark in marks:
        await enrol(stack, shop, [f"base-{index}" for index in range(enrolled, mark)], concurrency, phase, "")
        advance(mark - enrolled)
        enrolled = mark
        elapsed = time.monotonic() - began
        await asyncio.sleep(3)  # the worker at rest
        assert stack.worker is not None
        temporal_bytes = sum(
            path.stat().st_size for path in stack.folder.glob("temporal.db*") if path.is_file()
        )
        cyklo_bytes = database_bytes(stack.settings.database_url)
        steps.append(
            {
                "customers": mark,
                "seconds": round(elapsed, 1),
                "worker_rss_mib": _mib(stack.worker.memory_info().rss),
                "temporal_db_mib": _mib(temporal_bytes),
                "cyklo_db_mib": _mib(cyklo_bytes),
                "temporal_db_kib_per_customer": round(temporal_bytes / 1024 / mark, 2),
                "cyklo_db_kib_per_customer": round(cyklo_bytes / 1024 / mark, 2),
            }
        )
    first, last = steps[0], steps[-1]
    return {
        "customers": customers,
        "sign_up_seconds": last["seconds"],
        "sign_ups_per_second": round(customers / last["seconds"], 1),
        "steps": steps,
        "rss_growth_percent": round((last["worker_rss_mib"] / first["worker_rss_mib"] - 1) * 100, 1),
        "workflow_cache_size": stack.settings.workflow_cache_size,
    }


def database_bytes(url: str) -> int:
    """The cyklo database's size: the SQLite file (and its WAL), or PostgreSQL's own count."""
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        return sum(p.stat().st_size for p in path.parent.glob(path.name + "*") if p.is_file())
    import psycopg

    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as db:
        row = db.execute("SELECT pg_database_size(current_database())").fetchone()
    return int(row[0]) if row else 0
