"""Metrics and traces as an operator scrapes and follows them: the API's and the worker's
/metrics (Prometheus text, behind a key with the `metrics` scope) and OpenTelemetry spans
from the shop's request to the send, on the real Temporal dev server."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from api.app import create_app
from connection import connect, data_converter
from definition.schedule import daytime_zone
from emulator.server import ProviderEmulator
from process.tracing import client_interceptors, use_tracer_provider
from settings import Settings, as_environment
from stack.local import free_port
from tests.conftest import JOURNEYS, REPO, emulator_settings, start_dev_server
from tests.test_event_rules import eventually
from worker import build_worker
from workflows.journey import JourneyWorkflow, workflow_runner

SHOP_KEY = "shop-platform-key-0001"
METRICS_KEY = "prometheus-scrape-key-01"
AS_SHOP = {"Authorization": f"Bearer {SHOP_KEY}"}
AS_PROMETHEUS = {"Authorization": f"Bearer {METRICS_KEY}"}
PROFILE = {
    "email": "ola@example.com",
    "first_name": "Ola",
    "locale": "pl",
    # The welcome goes out at once only outside quiet hours: a zone where it is daytime now.
    "timezone": daytime_zone(datetime.now(UTC)),
    "consents": {"email": True, "source": "signup form"},
}

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(found: Samples, name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


def registry_value(name: str, **labels: str) -> float:
    """The same number in this process's registry, read before the requests that move it."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
async def dev_server(
    emulator: ProviderEmulator, tmp_path: Path
) -> AsyncIterator[tuple[WorkflowEnvironment, Settings]]:
    settings = emulator_settings(
        emulator,
        database_url=f"sqlite:///{tmp_path}/cyklo.db",
        journeys_dir=JOURNEYS,
        task_queue="metrics",
        api_keys=f"{SHOP_KEY}=events;{METRICS_KEY}=metrics",
    )
    env = await start_dev_server(settings)
    try:
        address = env.client.service_client.config.target_host
        yield env, settings.model_copy(update={"temporal_address": address})
    finally:
        await env.shutdown()


@contextlib.asynccontextmanager
async def api(client: Client | None, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, client=client)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://cyklo.test") as http:
            yield http


@contextlib.contextmanager
def worker_process(settings: Settings, metrics_port: int, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`python worker.py` as a deploy runs it: its own process, so its own registry."""
    environment = {
        **os.environ,
        **as_environment(settings),
        "CYKLO_WORKER_METRICS_PORT": str(metrics_port),
        "PYTHONPATH": str(REPO),
    }
    with log.open("wb") as output:
        process = subprocess.Popen(  # noqa: S603
            [sys.executable, str(REPO / "worker.py")], env=environment, stdout=output, stderr=output, cwd=REPO
        )
        try:
            yield process
        finally:
            process.terminate()
            process.wait(timeout=30)


async def test_the_api_counts_events_by_outcome_and_reason_and_caches_customers_by_stage_behind_the_metrics_key(
    dev_server: tuple[WorkflowEnvironment, Settings], emulator: ProviderEmulator
) -> None:
    env, settings = dev_server
    before = {
        outcome: registry_value("cyklo_events_total", outcome=outcome)
        for outcome in ("accepted", "duplicate", "rejected")
    }
    rejected_before = {
        reason: registry_value("cyklo_events_rejected_total", reason=reason)
        for reason in ("type", "personal_data", "unknown_field")
    }
    # Connected as the processes connect (connection.connect): Temporal's metrics come along.
    client = await connect(settings)
    with ThreadPoolExecutor(max_workers=16) as executor:
        async with build_worker(client, settings, executor), api(None, settings) as http:
            assert (await http.put("/v1/customers/c-ola", json=PROFILE, headers=AS_SHOP)).status_code == 200
            signed_up = {"event_id": "e-1", "customer_id": "c-ola", "type": "signed_up"}
            batch = [
                signed_up,
                signed_up,
                {"event_id": "e-2", "customer_id": "c-ola", "type": "Signed Up"},
                {
                    "event_id": "e-3",
                    "customer_id": "c-ola",
                    "type": "purchase",
                    "properties": {"order_id": "o-1", "amount": 10.0, "category": "ola@example.com"},
                },
                {"event_id": "e-4", "customer_id": "c-ola", "type": "signed_up", "colour": "red"},
            ]
            answer = await http.post("/v1/events", json=batch, headers=AS_SHOP)
            assert [r["status"] for r in answer.json()["results"]] == [
                "accepted",
                "duplicate",
                "rejected",
                "rejected",
                "rejected",
            ]
            # Visibility first shows the customer in the stage; the first scrape then asks it.
            await eventually(
                lambda: _counts(env.client, "JourneyId = 'lifecycle' AND JourneyStage = 'prospect'", 1)
            )

            refused = await http.get("/metrics")
            wrong_scope = await http.get("/metrics", headers=AS_SHOP)
            scraped = await http.get("/metrics", headers=AS_PROMETHEUS)
            # A second customer arrives; a scrape within 30 s still shows the census it had.
            assert (await http.put("/v1/customers/c-ben", json=PROFILE, headers=AS_SHOP)).status_code == 200
            ben = {"event_id": "e-5", "customer_id": "c-ben", "type": "signed_up"}
            assert (await http.post("/v1/events", json=ben, headers=AS_SHOP)).status_code == 202
            await eventually(
                lambda: _counts(env.client, "JourneyId = 'lifecycle' AND JourneyStage = 'prospect'", 2)
            )
            cached = samples((await http.get("/metrics", headers=AS_PROMETHEUS)).text)

    assert refused.status_code == 401 and wrong_scope.status_code == 403
    assert scraped.status_code == 200 and scraped.headers["content-type"].startswith("text/plain")
    found = samples(scraped.text)
    moved = {
        outcome: value(found, "cyklo_events_total", outcome=outcome) - before[outcome] for outcome in before
    }
    assert moved == {"accepted": 1, "duplicate": 1, "rejected": 3}
    reasons = {
        reason: value(found, "cyklo_events_rejected_total", reason=reason) - rejected_before[reason]
        for reason in rejected_before
    }
    assert reasons == {"type": 1, "personal_data": 1, "unknown_field": 1}
    stages = {
        dict(labels)["stage"]: count
        for (name, labels), count in found.items()
        if name == "cyklo_journey_customers" and dict(labels)["journey"] == "lifecycle"
    }
    assert stages == {"prospect": 1, "new": 0, "active": 0, "vip": 0, "inactive": 0}
    assert value(cached, "cyklo_journey_customers", journey="lifecycle", stage="prospect") == 1
    assert value(cached, "cyklo_events_total", outcome="accepted") - before["accepted"] == 2, (
        "counters are live"
    )
    assert any(name.startswith("temporal_") for name, _ in found), "the API's client metrics from the SDK"


async def _counts(client: Client, query: str, expected: int) -> bool:
    return (await client.count_workflows(query)).count == expected


async def test_the_worker_serves_its_sends_provider_errors_and_temporals_own_metrics(
    dev_server: tuple[WorkflowEnvironment, Settings], emulator: ProviderEmulator, tmp_path: Path
) -> None:
    env, settings = dev_server
    port = free_port()
    worker_url = f"http://127.0.0.1:{port}/metrics"
    # The first send meets a busy SendGrid (429, retry after 1 s); the retry goes out.
    emulator.fail_next("email", 429, retry_after=1)
    with worker_process(settings, port, tmp_path / "worker.log") as worker:
        async with api(env.client, settings) as http, httpx.AsyncClient(timeout=5) as scraper:

            async def serving() -> bool:
                assert worker.poll() is None, (tmp_path / "worker.log").read_text()
                try:
                    return (await scraper.get(worker_url)).status_code == 401
                except httpx.TransportError:
                    return False

            await eventually(serving)
            assert (await http.put("/v1/customers/c-ola", json=PROFILE, headers=AS_SHOP)).status_code == 200
            event = {"event_id": "e-1", "customer_id": "c-ola", "type": "signed_up"}
            assert (await http.post("/v1/events", json=event, headers=AS_SHOP)).status_code == 202
            await eventually(lambda: asyncio.sleep(0, len(emulator.messages("email")) == 1))

            async def counted() -> bool:
                found = samples((await scraper.get(worker_url, headers=AS_PROMETHEUS)).text)
                return value(found, "cyklo_messages_total", channel="email", status="sent") == 1

            await eventually(counted)
            wrong_key = await scraper.get(worker_url, headers=AS_SHOP)
            found = samples((await scraper.get(worker_url, headers=AS_PROMETHEUS)).text)

    assert wrong_key.status_code == 401
    assert value(found, "cyklo_messages_total", channel="email", status="sent") == 1
    assert value(found, "cyklo_provider_errors_total", channel="email", kind="retryable") == 1
    assert value(found, "cyklo_send_duration_seconds_count", channel="email") == 2, "both provider calls"
    names = {name for name, _ in found}
    assert {
        "temporal_workflow_task_execution_latency_count",
        "temporal_local_activity_execution_latency_count",  # the sends and prepare_journey
        "temporal_worker_task_slots_available",
    } <= names, sorted(name for name in names if name.startswith("temporal_"))


async def test_a_signup_is_one_trace_from_the_api_request_to_the_send_and_still_replays(
    dev_server: tuple[WorkflowEnvironment, Settings], emulator: ProviderEmulator
) -> None:
    env, settings = dev_server
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    use_tracer_provider(provider)
    try:
        # As the processes connect: through connection.connect, which adds the interceptor.
        client = await connect(settings)
        with ThreadPoolExecutor(max_workers=16) as executor:
            async with build_worker(client, settings, executor), api(None, settings) as http:
                assert (
                    await http.put("/v1/customers/c-ola", json=PROFILE, headers=AS_SHOP)
                ).status_code == 200
                event = {"event_id": "e-1", "customer_id": "c-ola", "type": "signed_up"}
                assert (await http.post("/v1/events", json=event, headers=AS_SHOP)).status_code == 202
                try:
                    await eventually(lambda: asyncio.sleep(0, len(emulator.messages("email")) == 1))
                except AssertionError:
                    # Failed once in CI on a slow box, not since: say where the journey stood.
                    events = (await client.get_workflow_handle("journey:lifecycle:c-ola").fetch_history()).events
                    raise AssertionError(
                        f"no welcome at the emulator ({len(emulator.messages('email'))} emails);"
                        f" the journey's history: {[event.event_type for event in events]}"
                    ) from None

                async def send_traced() -> bool:
                    return any(span.name == "RunActivity:send_message" for span in spans.get_finished_spans())

                await eventually(send_traced)
        history = await client.get_workflow_handle("journey:lifecycle:c-ola").fetch_history()
        replayed = await Replayer(
            workflows=[JourneyWorkflow],
            workflow_runner=workflow_runner(),
            data_converter=data_converter(settings),
            interceptors=client_interceptors(),
        ).replay_workflow(history, raise_on_replay_failure=False)
    finally:
        use_tracer_provider(None)

    finished = spans.get_finished_spans()
    request = next(span for span in finished if span.name == "POST /v1/events")
    assert request.context is not None
    trace = [
        span.name
        for span in finished
        if span.context is not None and span.context.trace_id == request.context.trace_id
    ]
    assert {
        "POST /v1/events",
        "SignalWithStartWorkflow:Journey",
        "RunWorkflow:Journey",
        "StartActivity:send_message",
        "RunActivity:send_message",
    } <= set(trace), trace
    assert not any(span.name.startswith(("GET /metrics", "GET /health")) for span in finished)
    assert replayed.replay_failure is None, replayed.replay_failure
