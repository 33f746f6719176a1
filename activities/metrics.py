"""What the send activity tells Prometheus: messages by channel and status, the provider
call's time, and the provider's errors by kind (all on the worker's /metrics)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import Counter, Histogram

from activities.provider_errors import ProviderError

MESSAGES = Counter(
    "cyklo_messages",
    "Sends finished, by channel and the status they left the message in (sent, suppressed, capped, failed, ...)",
    ["channel", "status"],
)
SEND_SECONDS = Histogram(
    "cyklo_send_duration_seconds",
    "Time of one provider call (SendGrid, Twilio, a webhook), whatever its answer",
    ["channel"],
    # Up to the provider timeout (10 s by default) and past it.
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
PROVIDER_ERRORS = Counter(
    "cyklo_provider_errors",
    "Provider calls that failed: retryable (429, 5xx, no connection), rejected (a 4xx for good), "
    "ambiguous (no answer: not resent)",
    ["channel", "kind"],
)


@contextmanager
def provider_call(channel: str) -> Iterator[None]:
    """Time the provider call and count its failure by kind; the failure goes on to the caller."""
    started = time.perf_counter()
    try:
        yield
    except ProviderError as problem:
        PROVIDER_ERRORS.labels(channel, problem.kind).inc()
        raise
    finally:
        SEND_SECONDS.labels(channel).observe(time.perf_counter() - started)
