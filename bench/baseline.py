"""The baseline: the least a journey can cost on Temporal, one workflow running one no-op activity.

It is started exactly as cyklo starts a journey (signal-with-start, the same options and
data converter), so the ratio between the two measures what cyklo adds, not the client.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity, workflow

with workflow.unsafe.imports_passed_through():
    from workflows.interface import JourneyEvent

BASELINE_QUEUE = "bench-baseline"
BASELINE_WORKFLOW = "BenchBaseline"


@activity.defn(name="bench_noop")
def noop(customer_id: str) -> str:
    return customer_id


@workflow.defn(name=BASELINE_WORKFLOW)
class BaselineWorkflow:
    @workflow.init
    def __init__(self, customer_id: str) -> None:
        self.events: list[JourneyEvent] = []

    @workflow.signal(name="event")
    def event(self, event: JourneyEvent) -> None:
        self.events.append(event)

    @workflow.run
    async def run(self, customer_id: str) -> str:
        return await workflow.execute_activity(
            noop, customer_id, start_to_close_timeout=timedelta(seconds=30)
        )
