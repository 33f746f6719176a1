"""The worker process of a benchmark: cyklo's own worker, and beside it the baseline's.

Both share one process, sandbox and thread pool, so the server, worker and API can be
measured as separate processes while the baseline runs with what cyklo runs with.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from temporalio.worker import Worker

from bench.baseline import BASELINE_QUEUE, BaselineWorkflow, SignalBaselineWorkflow, arrived, noop
from bench.counting import count_transactions
from connection import connect
from process.shutdown import Stop, run_until_stopped
from settings import get_settings
from worker import ACTIVITY_THREADS, build_worker, serve_until_stopped
from workflows.journey import workflow_runner

READY = "bench worker ready"


async def main(stop: Stop) -> None:
    settings = get_settings()
    client = await connect(settings)
    with ThreadPoolExecutor(max_workers=ACTIVITY_THREADS) as executor:
        cyklo = build_worker(client, settings, executor)
        baseline = Worker(
            client,
            task_queue=BASELINE_QUEUE,
            workflows=[BaselineWorkflow, SignalBaselineWorkflow],
            activities=[noop, arrived],
            workflow_runner=workflow_runner(sandboxed=settings.workflow_sandbox),
            activity_executor=executor,
            max_concurrent_activities=ACTIVITY_THREADS,
            max_cached_workflows=settings.workflow_cache_size,
        )
        # Stopped by SIGTERM, gracefully, as a deploy stops cyklo's worker.
        await serve_until_stopped(cyklo, baseline, stop=stop, on_ready=lambda: print(READY, flush=True))


if __name__ == "__main__":
    count_transactions()
    run_until_stopped(main)
