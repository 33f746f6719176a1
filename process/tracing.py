"""Traces through OpenTelemetry, off unless an exporter is configured the standard way
(OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or OTEL_TRACES_EXPORTER).

When on, a shop's request is one trace: the API's span (FastAPI instrumentation), the
client's signal-with-start, the journey workflow and its activities (Temporal's
TracingInterceptor on every client, which the workers built on it inherit). The provider is
this module's, not OpenTelemetry's global one, so a library that sets its own is left alone.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from temporalio.contrib.opentelemetry import TracingInterceptor

from definition.problems import SaidToPeople

SERVICE = "cyklo"
EXPORTERS = ("otlp", "console")
UNTRACED_ROUTES = "health,ready,metrics"
"""Probes and scrapes, every few seconds each: spans of them would bury the shop's requests."""


class TracingSetupError(SaidToPeople, ValueError):
    pass


_provider: TracerProvider | None = None
_configured = False


def tracer_provider() -> TracerProvider | None:
    """The process's provider, set up from the environment at first use; None when tracing is off."""
    global _provider, _configured
    if not _configured:
        _provider = provider_from_environment(os.environ)
        _configured = True
    return _provider


def use_tracer_provider(provider: TracerProvider | None) -> None:
    """Trace through `provider` (a program embedding cyklo, a test), or not at all with None."""
    global _provider, _configured
    _provider, _configured = provider, True


def provider_from_environment(environ: Mapping[str, str]) -> TracerProvider | None:
    """A provider exporting as the OTEL_* variables say, or None when they configure no exporter."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    endpoint = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    named = [name.strip() for name in environ.get("OTEL_TRACES_EXPORTER", "").split(",") if name.strip()]
    exporters = [name for name in (named or (["otlp"] if endpoint else [])) if name != "none"]
    if not exporters:
        return None
    service = environ.get("OTEL_SERVICE_NAME") or SERVICE
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: service}))
    for name in exporters:
        provider.add_span_processor(BatchSpanProcessor(_exporter(name, environ)))
    return provider


def _exporter(name: str, environ: Mapping[str, str]) -> SpanExporter:
    if name == "console":
        return ConsoleSpanExporter()
    if name != "otlp":
        raise TracingSetupError(
            f"OTEL_TRACES_EXPORTER: {name!r} is not one cyklo ships; use {' or '.join(EXPORTERS)} "
            "(or none), and an OpenTelemetry Collector for any other backend"
        )
    protocol = (
        environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    )
    if protocol != "http/protobuf":
        raise TracingSetupError(
            f"OTEL_EXPORTER_OTLP_PROTOCOL: {protocol!r} is not supported; cyklo exports OTLP over "
            "HTTP: use http/protobuf and the collector's HTTP port (4318)"
        )
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    # The exporter reads the endpoint, headers and timeout from the same OTEL_* variables.
    return OTLPSpanExporter()


def client_interceptors() -> list[TracingInterceptor]:
    """What every Temporal client of the process is connected with: a client traces its calls,
    and the workers built on it their workflows and activities."""
    provider = tracer_provider()
    if provider is None:
        return []
    return [TracingInterceptor(provider.get_tracer("cyklo.temporal"))]


def instrument_api(app: Any) -> None:
    """A span for every request but the probes and scrapes, when tracing is on."""
    provider = tracer_provider()
    if provider is None:
        return
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    excluded = os.environ.get("OTEL_PYTHON_FASTAPI_EXCLUDED_URLS", UNTRACED_ROUTES)
    FastAPIInstrumentor.instrument_app(app, tracer_provider=provider, excluded_urls=excluded)
