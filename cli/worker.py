"""`cyklo worker`: the same as `python worker.py`."""

from __future__ import annotations


def worker() -> None:
    """Run a worker against TEMPORAL_ADDRESS on the published journeys (`cyklo publish`; with
    CYKLO_PUBLISH_ON_START=true it publishes the journeys folder first). SIGTERM or Ctrl-C
    stops it: sends in flight finish first."""
    from process.shutdown import run_until_stopped
    from settings import get_settings
    from worker import run_worker

    run_until_stopped(lambda stop: run_worker(get_settings(), stop))
