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


class _Inbox:
    """What both baselines share with a journey: started by a signal, keeping the events."""

    @workflow.init
    def __init__(self, customer_id: str) -> None:
        self.events: list[JourneyEvent] = []

    @workflow.signal(name="event")
    def event(self, event: JourneyEvent) -> None:
        self.events.append(event)


@workflow.defn(name=BASELINE_WORKFLOW)
class BaselineWorkflow(_Inbox):
    @workflow.run
    async def run(self, customer_id: str) -> str:
        return await workflow.execute_activity(
            noop, customer_id, start_to_close_timeout=timedelta(seconds=30)
        )


LATENCY_WORKFLOW = "BenchSignalBaseline"


@activity.defn(name="bench_arrived")
def arrived(customer_id: str) -> float:
    """When the activity ran: the end of raw Temporal's signal -> activity path."""
    import time

    return time.time()


@workflow.defn(name=LATENCY_WORKFLOW)
class SignalBaselineWorkflow(_Inbox):
    """The latency baseline: started as a journey is (its sign-up signal), one activity like
    the welcome, then asleep until the next signal, which runs one activity: the least a
    purchase -> thank-you can cost on Temporal."""

    @workflow.run
    async def run(self, customer_id: str) -> float:
        await workflow.execute_activity(noop, customer_id, start_to_close_timeout=timedelta(seconds=30))
        await workflow.wait_condition(lambda: len(self.events) > 1)
        return await workflow.execute_activity(
            arrived, customer_id, start_to_close_timeout=timedelta(seconds=30)
        )
