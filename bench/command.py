"""`cyklo bench`: the benchmark suite (bench/) against a dev server it starts itself."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated

import typer


def _numbers(text: str, kind: type) -> list:  # type: ignore[type-arg]
    try:
        return [kind(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise typer.BadParameter(f"{text!r}: expected numbers separated by commas") from None


def bench(
    customers: Annotated[
        int, typer.Option(help="Throughput: workflows (a) and sign-ups (b) in each round.", min=1)
    ] = 500,
    rounds: Annotated[
        int, typer.Option(help="Throughput and latency: rounds of baseline then cyklo, in turn.", min=1)
    ] = 3,
    concurrency: Annotated[int, typer.Option(help="Starts or events in flight at once.", min=1)] = 100,
    rate: Annotated[float, typer.Option(help="Latency: purchases per second.", min=0.1)] = 20.0,
    seconds: Annotated[
        float, typer.Option(help="Latency: how long purchases come at that rate, each half-round.", min=1)
    ] = 15.0,
    ramp: Annotated[
        str, typer.Option(help="Latency: higher rates tried in turn until p99 passes 1 s.")
    ] = "30,40,60,80,120",
    ramp_seconds: Annotated[float, typer.Option(help="Latency: seconds at each higher rate.", min=1)] = 10.0,
    sleeping: Annotated[
        str, typer.Option(help="Memory: worker RSS at these numbers of sleeping customers.")
    ] = "1000,5000",
    history_purchases: Annotated[int, typer.Option(help="History: purchases of one customer.", min=1)] = 1000,
    simulations: Annotated[int, typer.Option(help="Simulation: runs (the fastest counts).", min=1)] = 3,
    scenario: Annotated[Path, typer.Option(help="Simulation: the customer-year simulated.")] = Path(
        "scenarios/sample.yaml"
    ),
    profile_customers: Annotated[
        int, typer.Option(help="Profile: sign-ups sampled by py-spy (0: none).", min=0)
    ] = 500,
    workflow_cache_size: Annotated[int, typer.Option(help="The worker's sticky cache.", min=0)] = 1000,
    events_per_run: Annotated[
        int, typer.Option(help="Events a journey run takes before it continues as new.", min=1)
    ] = 500,
    journeys: Annotated[Path, typer.Option(help="Journey folder.")] = Path("journeys"),
    only: Annotated[str, typer.Option(help="Benchmarks to run, comma-separated.")] = ",".join(
        ("simulation", "throughput", "latency", "history", "profile", "memory")
    ),
    output: Annotated[Path, typer.Option(help="Where the JSON goes.")] = Path("bench-results.json"),
    keep: Annotated[
        bool, typer.Option(help="Keep the temporary folder (logs, databases, raw profile).")
    ] = False,
    as_markdown: Annotated[bool, typer.Option("--markdown", help="Print the table as Markdown.")] = False,
    scale_out: Annotated[
        bool, typer.Option("--scale-out", help="Throughput rounds again: 2 workers, 2 APIs, PostgreSQL.")
    ] = False,
    base_customers: Annotated[
        int, typer.Option(help="Base (--only base): customers signed up and left asleep.", min=1)
    ] = 100_000,
    base_step: Annotated[int, typer.Option(help="Base: RSS and sizes read every this many.", min=1)] = 10000,
    postgres_url: Annotated[
        str, typer.Option(help="Scale-out: the PostgreSQL server (a fresh database is made on it per run).")
    ] = "postgresql://postgres@127.0.0.1:5432/test",
) -> None:
    """Run the benchmarks: throughput and latency in rounds against a raw-Temporal baseline,
    simulation speed, worker memory, history size, a worker profile; a base on request."""
    from rich.console import Console

    try:
        from bench.report import markdown, table
        from bench.run import BENCHMARKS, Options, run_suite
    except ModuleNotFoundError as missing:
        raise typer.BadParameter(
            f"{missing.name} is not installed: the benchmarks need pip install -e '.[bench]' (or scripts/bench)"
        ) from None

    selected = [name.strip() for name in only.split(",") if name.strip()]
    unknown = sorted(set(selected) - set(BENCHMARKS))
    if unknown:
        raise typer.BadParameter(
            f"unknown benchmark {', '.join(unknown)}: use {', '.join(BENCHMARKS)}", param_hint="--only"
        )
    if not scenario.exists() and "simulation" in selected:
        raise typer.BadParameter(f"{scenario} does not exist", param_hint="--scenario")
    sizes = _numbers(sleeping, int) or [1000]
    if min(sizes) < 1:
        raise typer.BadParameter("sizes must be 1 or more", param_hint="--sleeping")
    rates = _numbers(ramp, float)
    for name, rate_given, lasting in [("--rate", rate, seconds)] + [
        ("--ramp", r, ramp_seconds) for r in rates
    ]:
        if rate_given * lasting < 1:
            raise typer.BadParameter(f"{rate_given:g}/s for {lasting:g} s makes no purchase", param_hint=name)
    options = Options(
        customers=customers,
        concurrency=concurrency,
        rounds=rounds,
        rate=rate,
        seconds=seconds,
        ramp=rates,
        ramp_seconds=ramp_seconds,
        sleeping=sizes,
        history_purchases=history_purchases,
        simulations=simulations,
        scenario=scenario,
        profile_customers=profile_customers,
        workflow_cache_size=workflow_cache_size,
        events_per_run=events_per_run,
        journeys=journeys,
        only=selected,
        output=output,
        keep=keep,
        scale_out=scale_out,
        base_customers=base_customers,
        base_step=base_step,
        postgres_url=postgres_url,
    )
    console = Console(stderr=True)
    results = asyncio.run(run_suite(options, console))
    output.write_text(json.dumps(results, indent=2) + "\n")
    if as_markdown:
        typer.echo(markdown(results))
    else:
        Console(width=150).print(table(results))
    typer.echo(f"figures written to {output}")
