"""What every cyklo process shows Prometheus: the registry's exposition, Temporal's own SDK
metrics bridged into it, and the worker's small `/metrics` server.

Temporal's metrics come through a MetricBuffer rather than the SDK's own Prometheus exporter,
so a process has one endpoint, one port and one key check, and cyklo's metrics and Temporal's
are scraped together. The SDK hands over raw updates (a counter's delta, a gauge's value, each
histogram observation); this module keeps the sums Prometheus expects.
"""

from __future__ import annotations

import bisect
import contextlib
import hmac
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import REGISTRY, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST, ThreadingWSGIServer
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from temporalio.runtime import (
    BUFFERED_METRIC_KIND_COUNTER,
    BUFFERED_METRIC_KIND_HISTOGRAM,
    BufferedMetricUpdate,
    MetricBuffer,
    MetricBufferDurationFormat,
    Runtime,
    TelemetryConfig,
)

log = logging.getLogger(__name__)

BUFFER_SIZE = 100_000
"""Updates the SDK may hold between two drains; past it they are dropped (and it says so)."""
DRAIN_SECONDS = 1.0
"""A worker no one scrapes still drains its buffer this often, so nothing is dropped."""
DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
"""Temporal's histograms are durations (seconds here): from a cached workflow task to a long poll."""


@dataclass
class _Histogram:
    buckets: list[int] = field(default_factory=lambda: [0] * len(DURATION_BUCKETS))
    total: float = 0.0
    count: int = 0

    def observe(self, value: float) -> None:
        index = bisect.bisect_left(DURATION_BUCKETS, value)
        if index < len(DURATION_BUCKETS):  # past the last bound only +Inf, which is the count
            self.buckets[index] += 1
        self.total += value
        self.count += 1


@dataclass
class _Family:
    kind: int
    description: str
    values: dict[tuple[tuple[str, str], ...], float] = field(default_factory=dict)
    histograms: dict[tuple[tuple[str, str], ...], _Histogram] = field(default_factory=dict)


class TemporalMetrics(Collector):
    """The SDK's metrics of this process (workflow and activity task latencies, polls, slots,
    workflows completed, RPC requests…) as a prometheus_client collector."""

    def __init__(self, buffer_size: int = BUFFER_SIZE) -> None:
        self.buffer = MetricBuffer(buffer_size, duration_format=MetricBufferDurationFormat.SECONDS)
        self.runtime = Runtime(telemetry=TelemetryConfig(metrics=self.buffer))
        self._families: dict[str, _Family] = {}
        self._lock = threading.Lock()

    def drain(self) -> None:
        with self._lock:
            self._take(self.buffer.retrieve_updates())

    def _take(self, updates: Iterable[BufferedMetricUpdate]) -> None:
        for update in updates:
            metric = update.metric
            family = self._families.setdefault(
                metric.name, _Family(metric.kind, metric.description or metric.name)
            )
            labels = tuple(sorted((str(name), str(value)) for name, value in update.attributes.items()))
            if family.kind == BUFFERED_METRIC_KIND_COUNTER:
                family.values[labels] = family.values.get(labels, 0.0) + update.value
            elif family.kind == BUFFERED_METRIC_KIND_HISTOGRAM:
                family.histograms.setdefault(labels, _Histogram()).observe(float(update.value))
            else:
                family.values[labels] = float(update.value)

    def collect(self) -> Iterator[Metric]:
        self.drain()
        with self._lock:
            for name, family in sorted(self._families.items()):
                yield _exposed(name, family)


def _exposed(name: str, family: _Family) -> Metric:
    if family.kind == BUFFERED_METRIC_KIND_COUNTER:
        metric = Metric(name.removesuffix("_total"), family.description, "counter")
        for labels, value in family.values.items():
            metric.add_sample(f"{metric.name}_total", dict(labels), value)
        return metric
    if family.kind == BUFFERED_METRIC_KIND_HISTOGRAM:
        metric = Metric(name, family.description, "histogram")
        for labels, histogram in family.histograms.items():
            running = 0
            for bound, count in zip(DURATION_BUCKETS, histogram.buckets, strict=True):
                running += count
                metric.add_sample(f"{name}_bucket", {**dict(labels), "le": str(bound)}, running)
            metric.add_sample(f"{name}_bucket", {**dict(labels), "le": "+Inf"}, histogram.count)
            metric.add_sample(f"{name}_sum", dict(labels), histogram.total)
            metric.add_sample(f"{name}_count", dict(labels), histogram.count)
        return metric
    metric = Metric(name, family.description, "gauge")
    for labels, value in family.values.items():
        metric.add_sample(name, dict(labels), value)
    return metric


@lru_cache(maxsize=1)
def temporal_metrics() -> TemporalMetrics:
    """This process's Temporal runtime and its metrics, registered once; every client of the
    process connects with `temporal_metrics().runtime`."""
    bridge = TemporalMetrics()
    REGISTRY.register(bridge)
    drainer = threading.Thread(target=_drain_forever, args=(bridge,), name="temporal-metrics", daemon=True)
    drainer.start()
    return bridge


def _drain_forever(bridge: TemporalMetrics) -> None:
    stopped = threading.Event()
    while not stopped.wait(DRAIN_SECONDS):
        try:
            bridge.drain()
        except Exception as error:  # a lost drain costs numbers, never the process
            log.warning("Temporal metrics not drained: %s", type(error).__name__)


class Joined(Collector):
    """Several collectors as one, for one exposition: the process's registry and a caller's own."""

    def __init__(self, *collectors: Collector) -> None:
        self.collectors = collectors

    def collect(self) -> Iterator[Metric]:
        for collector in self.collectors:
            yield from collector.collect()


def exposition(*own: Collector) -> bytes:
    """The Prometheus text of the process's registry, with the caller's own collectors."""
    return generate_latest(Joined(REGISTRY, *own))


def bearer_allowed(keys: Iterable[str]) -> Callable[[str | None], bool]:
    """A check of a presented key against the keys that may scrape, in constant time."""
    allowed = [key.encode() for key in keys]

    def check(presented: str | None) -> bool:
        given = (presented or "").encode()
        return any(hmac.compare_digest(key, given) for key in allowed)

    return check


class MetricsPortUnavailable(OSError):
    pass


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass  # every scrape would be a line: the worker's log is for journeys


@contextlib.contextmanager
def metrics_server(host: str, port: int, allowed: Callable[[str | None], bool]) -> Iterator[str]:
    """`GET /metrics` on host:port in a thread, for a process without an HTTP server of its own
    (the worker); it needs `Authorization: Bearer KEY` as the API's does. Yields its URL."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        if environ.get("PATH_INFO") != "/metrics":
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"only /metrics here\n"]
        header = environ.get("HTTP_AUTHORIZATION", "")
        presented = header[7:].strip() if header.startswith("Bearer ") else None
        if not allowed(presented):
            start_response(
                "401 Unauthorized", [("Content-Type", "text/plain"), ("WWW-Authenticate", "Bearer")]
            )
            return [b"a key with the metrics scope is required: send `Authorization: Bearer KEY`\n"]
        start_response("200 OK", [("Content-Type", CONTENT_TYPE_LATEST)])
        return [exposition()]

    try:
        server = make_server(host, port, app, ThreadingWSGIServer, handler_class=_Quiet)
    except OSError as error:
        raise MetricsPortUnavailable(
            f"cannot serve /metrics on {host}:{port}: {error.strerror or error}; "
            "choose another CYKLO_WORKER_METRICS_PORT (or CYKLO_WORKER_METRICS_HOST)"
        ) from None
    thread = threading.Thread(target=server.serve_forever, name="metrics-server", daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_port}/metrics"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
