"""`cyklo worker`: the same as `python worker.py`."""

from __future__ import annotations

import asyncio


def worker() -> None:
    """Run a worker against TEMPORAL_ADDRESS (publishes the journeys folder first)."""
    from settings import get_settings
    from worker import run_worker

    asyncio.run(run_worker(get_settings()))
