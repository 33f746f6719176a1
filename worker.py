"""`python worker.py` (same as `cyklo worker`): runs a cyklo worker against Temporal."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import py_compile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from temporalio.client import Client
from temporalio.worker import Worker

from activities.experiments import ExperimentRecorder
from activities.prepare import JourneyPreparation
from activities.send import MessageSender
from api.auth import parse_keys
from connection import connect
from process.errors import exit_on_error
from process.metrics import bearer_allowed, metrics_server
from process.shutdown import SEND_GRACE_SECONDS, Stop, run_until_stopped
from publishing import newest_versions, publish_journeys
from settings import Settings, get_settings
from storage.database import migrate
from workflows import journey as journey_module
from workflows.journey import JourneyWorkflow, workflow_runner

ACTIVITY_THREADS = 16


def build_worker(client: Client, settings: Settings, executor: ThreadPoolExecutor) -> Worker:
    """The worker with every workflow and activity of cyklo, for production, simulation and tests."""
    compile_workflow_modules()
    return Worker(
        client,
        task_queue=settings.task_queue,
        workflows=[JourneyWorkflow],
        workflow_runner=workflow_runner(sandboxed=settings.workflow_sandbox),
        activities=[
            JourneyPreparation(settings).prepare_journey,
            ExperimentRecorder(settings).record_assignment,
            MessageSender(settings).send_message,
        ],
        # The provider clients block: they run on threads, never on the event loop.
        activity_executor=executor,
        max_concurrent_activities=ACTIVITY_THREADS,
        # Sends run as local activities on the same threads (SENDS_AS_LOCAL_ACTIVITIES). A
        # journey runs one local activity at a time and a workflow task holds its slot while it
        # runs, so no more tasks than local-activity slots: a task never waits for a slot. With
        # more tasks than slots, a burst left tasks waiting past their 10 s timeout, and the
        # worker stopped polling for workflow tasks (docs/benchmarks.md).
        max_concurrent_local_activities=ACTIVITY_THREADS,
        max_concurrent_workflow_tasks=ACTIVITY_THREADS,
        max_cached_workflows=settings.workflow_cache_size,
        # A deploy must not cut a send off between the provider call and the ledger update,
        # and the whole stop must still fit in its budget (process/shutdown.py).
        graceful_shutdown_timeout=timedelta(seconds=SEND_GRACE_SECONDS),
    )


def compile_workflow_modules() -> None:
    """Write the bytecode of the workflow modules, as `pip install` does for installed code.

    The sandbox imports a workflow's module afresh for every workflow it starts. Without a
    bytecode cache (PYTHONDONTWRITEBYTECODE, a source checkout) each import compiled the
    source again: a fifth of the worker's CPU when customers sign up (docs/benchmarks.md)."""
    for module in (journey_module,):
        source = module.__file__
        assert source is not None
        try:
            py_compile.compile(source, cfile=importlib.util.cache_from_source(source), doraise=True)
        except (OSError, py_compile.PyCompileError):
            pass  # a read-only tree: the workflow runs the same, only its start costs more


async def run_worker(settings: Settings, stop: Stop) -> None:
    migrate(settings.database_url)
    if settings.publish_on_start:
        publish_journeys(settings, [settings.journeys_dir])
    versions = newest_versions(settings)
    client = await connect(settings)
    running = (
        ", ".join(f"{j} v{v}" for j, v in versions.items()) or "none published yet (run `cyklo publish`)"
    )
    print(
        f"cyklo worker: {settings.temporal_address} namespace {settings.temporal_namespace} "
        f"task queue {settings.task_queue}; journeys {running}",
        flush=True,
    )
    with contextlib.ExitStack() as resources:
        if settings.worker_metrics_port is not None:
            url = resources.enter_context(worker_metrics(settings, settings.worker_metrics_port))
            print(f"cyklo worker: metrics at {url} (a key with the metrics scope)", flush=True)
        executor = resources.enter_context(ThreadPoolExecutor(max_workers=ACTIVITY_THREADS))
        await serve_until_stopped(build_worker(client, settings, executor), stop=stop)
    print("cyklo worker: stopped", flush=True)


def worker_metrics(settings: Settings, port: int) -> contextlib.AbstractContextManager[str]:
    """The worker's GET /metrics: the same keys as the API's, those with the `metrics` scope."""
    keys = [key for key, scopes in parse_keys(settings.api_keys).items() if "metrics" in scopes]
    if not keys:
        print("cyklo worker: no key in CYKLO_API_KEYS has the metrics scope: every scrape is refused", flush=True)
    return metrics_server(settings.worker_metrics_host, port, bearer_allowed(keys))


async def serve_until_stopped(
    *workers: Worker, stop: Stop, on_ready: Callable[[], None] = lambda: None
) -> None:
    """Run until a stop is asked (SIGTERM, SIGINT), then stop gracefully.

    A deploy sends SIGTERM: sends in flight finish (graceful_shutdown_timeout) instead of
    being cut between the provider call and the ledger, and the server hears of the stop,
    so this worker's cached customers move to another worker at once. Killed outright, the
    process left them on its sticky queue until the server's timeout, seconds per customer."""
    async with contextlib.AsyncExitStack() as running:
        for worker in workers:
            await running.enter_async_context(worker)
        on_ready()
        await stop.wait()
        # Side by side: one after the other, each worker's grace would add to the stop.
        await asyncio.gather(*(worker.shutdown() for worker in workers))


if __name__ == "__main__":
    with exit_on_error():
        run_until_stopped(lambda stop: run_worker(get_settings(), stop))
