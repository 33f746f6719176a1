"""Interleaved rounds: raw Temporal (A) and cyklo (B) in turn on one stack, A B A B …

Whatever else the machine does then lands on both sides alike, and each round's ratio is
taken between neighbours. Every round also says what it cost, per customer: each process's
user and system CPU, the history events and Temporal database writes, and the cyklo database
transactions — what two machines' figures are compared by.
"""

from __future__ import annotations

import asyncio
import sqlite3
import statistics
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
from temporalio.client import WorkflowHandle

from bench import measures
from bench.baseline import SignalBaselineWorkflow
from bench.counting import TRANSACTION_COUNTS, transactions
from bench.load import ShopClient, emails_arrived
from bench.stack import Stack
from workflows.interface import JourneyEvent, workflow_id


@dataclass
class Reading:
    """The machine at one moment, as cumulative counters."""

    cpu: dict[str, tuple[float, float]]
    server_bytes_written: int
    history_appends: int
    transactions: dict[str, float]


def read(stack: Stack) -> Reading:
    return Reading(
        cpu=stack.cpu_times(),
        server_bytes_written=_bytes_written(stack.server),
        history_appends=_one(stack, "SELECT count(*) FROM history_node"),
        transactions=transactions(stack.counts),
    )


def _bytes_written(process: psutil.Process) -> int:
    # write_bytes is what reached the block layer (the page cache's writeback included),
    # not socket writes: the server's SQLite pages, WAL and checkpoints.
    return int(process.io_counters().write_bytes)


def temporal_database(stack: Stack) -> Path:
    return stack.folder / "temporal.db"


def _one(stack: Stack, sql: str, *parameters: str) -> int:
    """One number from the dev server's SQLite file, read beside it (WAL: readers never block
    its writer). The schema is Temporal's SQL persistence (executions, history_node)."""
    with sqlite3.connect(f"file:{temporal_database(stack)}?mode=ro", uri=True, timeout=30) as db:
        row = db.execute(sql, parameters).fetchone()
    return int(row[0] or 0)


def workflows_written(stack: Stack, prefix: str) -> dict[str, int]:
    """For the workflows whose id starts with `prefix` (every run of each): history events
    (next_event_id - 1), their stored bytes, and mutable-state writes (db_record_version:
    Temporal increments it in every transaction that updates a workflow's row, its optimistic
    lock)."""
    like = prefix.replace("%", "") + "%"
    return {
        "workflows": _one(
            stack, "SELECT count(DISTINCT workflow_id) FROM executions WHERE workflow_id LIKE ?", like
        ),
        "history_events": _one(
            stack, "SELECT sum(next_event_id - 1) FROM executions WHERE workflow_id LIKE ?", like
        ),
        "state_writes": _one(
            stack, "SELECT sum(db_record_version) FROM executions WHERE workflow_id LIKE ?", like
        ),
        # What a cold worker fetches and replays: the histories' stored batches (tree_id is
        # the run's id in Temporal's SQL schema).
        "history_bytes": _one(
            stack,
            "SELECT sum(length(h.data)) FROM history_node h JOIN executions e ON h.tree_id = e.run_id"
            " WHERE e.workflow_id LIKE ?",
            like,
        ),
    }


def explain(
    stack: Stack, before: Reading, after: Reading, customers: int, prefix: str, seconds: float
) -> dict[str, Any]:
    """What a round cost per customer, from two readings and the round's workflows; and the
    cores it kept busy over its `seconds` (near 2 here: the round was bound by CPU)."""
    per = 1 / customers
    written = workflows_written(stack, prefix)
    cpu = {
        name: {
            "user": round((after.cpu[name][0] - user) * 1000 * per, 2),
            "system": round((after.cpu[name][1] - system) * 1000 * per, 2),
        }
        for name, (user, system) in before.cpu.items()
        if name in after.cpu
    }
    return {
        "cpu_ms_per_customer": cpu,
        "cpu_ms_per_customer_total": round(sum(p["user"] + p["system"] for p in cpu.values()), 1),
        "cores_busy": round(
            sum(p["user"] + p["system"] for p in cpu.values()) * customers / 1000 / seconds, 2
        ),
        "temporal_per_customer": {
            "history_events": round(written["history_events"] * per, 2),
            "history_kib": round(written["history_bytes"] / 1024 * per, 2),
            "state_writes": round(written["state_writes"] * per, 2),
            "history_appends": round((after.history_appends - before.history_appends) * per, 2),
            "kib_written": round((after.server_bytes_written - before.server_bytes_written) / 1024 * per, 2),
        },
        "cyklo_db_per_customer": {
            kind: round((after.transactions[kind] - before.transactions[kind]) * per, 2)
            for kind in TRANSACTION_COUNTS
        },
        # SQLite's one write lock, every process's share added: near 1, the writers queued.
        "write_lock_busy": round(
            (after.transactions["write_lock_held_ms"] - before.transactions["write_lock_held_ms"]) / 1000 / seconds,
            2,
        ),
        "workflows_counted": written["workflows"],
    }


def spread(values: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), 3),
        "min": round(min(values), 3),
        "max": round(max(values), 3),
    }


# --- throughput ---------------------------------------------------------------------------


async def throughput(
    stack: Stack, shop: ShopClient, rounds: int, per_round: int, concurrency: int, phase: measures.Phase,
    label: str = "tp",
) -> dict[str, Any]:  # fmt: skip
    """`rounds` pairs of a baseline round and a cyklo round, fresh customers in each."""
    pairs = []
    for number in range(rounds):
        prefix = f"{label}-base-r{number}-"
        await stack.quiet()
        before = read(stack)
        baseline = await measures.baseline_throughput(stack, per_round, concurrency, phase, prefix)
        await asyncio.sleep(1)  # the last completions' visibility and counts written
        baseline["explained"] = explain(
            stack, before, read(stack), per_round, workflow_id("baseline", prefix), baseline["seconds"]
        )

        customers = [f"{label}-r{number}-{index}" for index in range(per_round)]
        stack.add_customers(customers)
        await stack.quiet()
        before = read(stack)
        began = time.monotonic()
        await measures.welcome(
            stack, shop, customers, concurrency, phase("cyklo: customers welcomed", per_round)
        )
        elapsed = time.monotonic() - began
        await asyncio.sleep(1)
        cyklo = {
            "customers": per_round,
            "seconds": round(elapsed, 2),
            "per_second": round(per_round / elapsed, 2),
            "welcomes_at_emulator": len(emails_arrived(stack.emulator, "welcome", set(customers))),
            "explained": explain(
                stack,
                before,
                read(stack),
                per_round,
                workflow_id(measures.JOURNEY, f"{label}-r{number}-"),
                elapsed,
            ),
        }
        pairs.append(
            {"round": number + 1, "baseline": baseline, "cyklo": cyklo,
             "ratio": round(cyklo["per_second"] / baseline["per_second"], 3)}
        )  # fmt: skip
    return {
        "rounds": pairs,
        "customers_per_round": per_round,
        "ratio": spread([pair["ratio"] for pair in pairs]),
        "baseline_per_second": spread([pair["baseline"]["per_second"] for pair in pairs]),
        "cyklo_per_second": spread([pair["cyklo"]["per_second"] for pair in pairs]),
    }


# --- latency ------------------------------------------------------------------------------


async def start_signal_baselines(stack: Stack, prefix: str, count: int, concurrency: int = 100) -> list[str]:
    """Raw-Temporal customers asleep, each waiting for its next signal (setup, not measured)."""
    customers = [f"{prefix}{index}" for index in range(count)]
    gate = asyncio.Semaphore(concurrency)

    async def start(customer: str) -> None:
        async with gate:
            await measures.start_baseline(stack, SignalBaselineWorkflow.run, customer)

    await asyncio.gather(*(start(customer) for customer in customers))
    await settled(stack, workflow_id("baseline", prefix))
    return customers


async def settled(stack: Stack, prefix: str, still_for: float = 1.5, at_most: float = 300) -> None:
    """Until the workflows' histories stop growing: every one asleep at its wait."""
    deadline = time.monotonic() + at_most
    like = prefix + "%"
    seen = -1
    while time.monotonic() < deadline:
        now = _one(stack, "SELECT sum(next_event_id) FROM executions WHERE workflow_id LIKE ?", like)
        if now == seen:
            return
        seen = now
        await asyncio.sleep(still_for)
    raise RuntimeError(f"workflows {prefix}… still moving after {at_most:.0f} s")


def _event(event_id: str, kind: str) -> JourneyEvent:
    return JourneyEvent(event_id=event_id, type=kind, occurred_at=datetime.now(UTC))


async def baseline_latency(
    stack: Stack, customers: list[str], rate: float, phase: measures.Phase, what: str
) -> dict[str, Any]:
    """Signals at `rate` per second (open loop), one per asleep customer; latency from the
    signal's acknowledgement to its activity running, as cyklo's is from the API's 202 (the
    signal already taken) to the thank-you reaching the provider."""
    advance = phase(f"raw Temporal signals at {rate:g}/s, {what}: activities run", len(customers))
    handles: list[WorkflowHandle[Any, float]] = [
        stack.client.get_workflow_handle(workflow_id("baseline", c), result_type=float) for c in customers
    ]
    acknowledged = [0.0] * len(customers)
    start = time.time()

    async def one(index: int) -> float:
        await asyncio.sleep(max(0.0, start + index / rate - time.time()))
        await handles[index].signal("event", _event(f"purchase-{customers[index]}", "purchase"))
        acknowledged[index] = time.time()
        ran = await handles[index].result()
        advance(1)
        return ran - acknowledged[index]

    latencies = await asyncio.gather(*(one(index) for index in range(len(customers))))
    return {
        "rate_per_second": rate,
        "purchases": len(customers),
        "signal_to_activity_ms": {
            k: measures.ms(v) for k, v in measures.distribution(list(latencies)).items()
        },
    }


async def latency(
    stack: Stack, shop: ShopClient, rounds: int, rate: float, seconds: float, concurrency: int,
    phase: measures.Phase,
) -> dict[str, Any]:  # fmt: skip
    """Warm rounds (customers the worker holds), then cold rounds (a worker just restarted),
    each a baseline and a cyklo half at the same rate; the ratio is of cyklo's p99 (and p50) to
    raw Temporal's."""
    count = int(rate * seconds)
    result: dict[str, Any] = {"rate_per_second": rate, "purchases_per_round": count}
    for kind in ("cached", "cold"):
        pairs = []
        for number in range(rounds):
            tag = f"lat-{kind}-r{number}"
            base_customers = await start_signal_baselines(stack, f"{tag}-base-", count, concurrency)
            customers = [f"{tag}-{index}" for index in range(count)]
            await measures.enrol(
                stack, shop, customers, concurrency, phase, f"{kind} round {number + 1}: customers asleep"
            )
            halves = {}
            for side in ("baseline", "cyklo"):
                if kind == "cold":
                    await stack.quiet()
                    await stack.start_worker()
                else:
                    await stack.quiet()
                before, began = read(stack), time.monotonic()
                if side == "baseline":
                    half = await baseline_latency(stack, base_customers, rate, phase, kind)
                    prefix = workflow_id("baseline", f"{tag}-base-")
                else:
                    half = await measures.purchase_latency(stack, shop, customers, rate, phase, kind)
                    prefix = workflow_id(measures.JOURNEY, f"{tag}-")
                elapsed = time.monotonic() - began
                await stack.quiet()
                half["explained"] = explain(stack, before, read(stack), count, prefix, elapsed)
                halves[side] = half
            base = halves["baseline"]["signal_to_activity_ms"]
            own = halves["cyklo"]["from_202_to_thank_you_ms"]
            pairs.append(
                {"round": number + 1, **halves,
                 "p99_ratio": round(own["p99"] / max(base["p99"], 0.1), 2),
                 "p50_ratio": round(own["p50"] / max(base["p50"], 0.1), 2)}
            )  # fmt: skip
        result[kind] = {
            "rounds": pairs,
            "p99_ratio": spread([pair["p99_ratio"] for pair in pairs]),
            "p50_ratio": spread([pair["p50_ratio"] for pair in pairs]),
            "cyklo_p99_ms": spread([pair["cyklo"]["from_202_to_thank_you_ms"]["p99"] for pair in pairs]),
            "baseline_p99_ms": spread([pair["baseline"]["signal_to_activity_ms"]["p99"] for pair in pairs]),
        }
    return result
