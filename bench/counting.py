"""Counts a benchmark reads from inside cyklo's processes: the database transactions they end,
and how long their write transactions held SQLite's one write lock and waited for it.

A SQLAlchemy listener on every engine counts commits and rollbacks (a read-only session ends
in a rollback); the SQLite connections' writer gate (storage/database.py) is wrapped to time
each write transaction from the moment it has the lock to the moment it lets go, and its wait
before. A thread writes the totals to a file the benchmark reads between rounds. No cyklo code
changes: the benchmark's own entry points (bench/worker.py, bench/api.py) call
`count_transactions` before cyklo starts.
"""

from __future__ import annotations

import atexit
import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import event
from sqlalchemy.engine import Engine

from storage.database import WriterGatedConnection

COUNTS_FOLDER = "CYKLO_BENCH_COUNTS"
"""The folder where each counted process writes counts-<pid>.json (unset: nothing counted)."""
TRANSACTION_COUNTS = ("commits", "rollbacks", "write_lock_held_ms", "write_lock_wait_ms")


def count_transactions() -> None:
    folder = os.environ.get(COUNTS_FOLDER)
    if not folder:
        return
    counts: dict[str, float] = dict.fromkeys(TRANSACTION_COUNTS, 0.0)
    adding = threading.Lock()
    path = Path(folder) / f"counts-{os.getpid()}.json"

    def add(kind: str, amount: float) -> None:
        with adding:  # the activity threads end transactions at once
            counts[kind] += amount

    event.listen(Engine, "commit", lambda _: add("commits", 1))
    event.listen(Engine, "rollback", lambda _: add("rollbacks", 1))
    _time_the_write_lock(add)

    def write() -> None:
        temporary = path.with_suffix(".tmp")
        with adding:
            totals = dict(counts)
        temporary.write_text(json.dumps(totals))
        temporary.replace(path)

    def keep_writing() -> None:
        written: dict[str, float] | None = None
        while True:
            if counts != written:  # an idle process writes nothing, a busy one 5 times a second
                written = counts.copy()
                write()
            threading.Event().wait(0.2)

    atexit.register(write)
    threading.Thread(target=keep_writing, name="bench-counts", daemon=True).start()


def _time_the_write_lock(add: Callable[[str, float], None]) -> None:
    enter, leave = WriterGatedConnection.enter_writers, WriterGatedConnection.leave_writers
    held_since: dict[int, float] = {}

    def timed_enter(connection: WriterGatedConnection) -> None:
        asked = time.perf_counter()
        enter(connection)
        if id(connection) not in held_since:
            held_since[id(connection)] = got = time.perf_counter()
            add("write_lock_wait_ms", (got - asked) * 1000)

    def timed_leave(connection: WriterGatedConnection) -> None:
        leave(connection)
        since = held_since.pop(id(connection), None)
        if since is not None:
            add("write_lock_held_ms", (time.perf_counter() - since) * 1000)

    WriterGatedConnection.enter_writers = timed_enter  # type: ignore[method-assign,assignment]
    WriterGatedConnection.leave_writers = timed_leave  # type: ignore[method-assign,assignment]


def transactions(folder: Path) -> dict[str, float]:
    """Totals over every counted process that ever ran (a restarted worker's file stays)."""
    total = dict.fromkeys(TRANSACTION_COUNTS, 0.0)
    for path in folder.glob("counts-*.json"):
        try:
            counted = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # being replaced just now: the next read has it
        for kind in TRANSACTION_COUNTS:
            total[kind] += counted.get(kind, 0)
    return total
