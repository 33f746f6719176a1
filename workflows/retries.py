"""How the send activity is retried: the workflow's policy and the activity's own last-attempt
check read the same numbers."""

from __future__ import annotations

from datetime import timedelta

from temporalio.common import RetryPolicy

SEND_MAX_ATTEMPTS = 25
"""Provider 429/5xx and database errors are retried this many times (backoff up to 10 minutes);
at the last attempt a provider still busy is recorded failed."""
SEND_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=10),
    maximum_attempts=SEND_MAX_ATTEMPTS,
)
