"""Counts a benchmark reads from inside cyklo's processes: the database transactions they end.

A SQLAlchemy listener on every engine counts commits and rollbacks (a read-only session ends
in a rollback); a thread writes the totals to a file the benchmark reads between rounds. No
cyklo code changes: the benchmark's own entry points (bench/worker.py, bench/api.py) call
`count_transactions` before cyklo starts.
"""

from __future__ import annotations

import atexit
import json
import os
import threading
from collections import Counter
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine

COUNTS_FOLDER = "CYKLO_BENCH_COUNTS"
"""The folder where each counted process writes counts-<pid>.json (unset: nothing counted)."""


def count_transactions() -> None:
    folder = os.environ.get(COUNTS_FOLDER)
    if not folder:
        return
    counts: Counter[str] = Counter()
    path = Path(folder) / f"counts-{os.getpid()}.json"

    def on_commit(_: Any) -> None:
        counts["commits"] += 1

    def on_rollback(_: Any) -> None:
        counts["rollbacks"] += 1

    event.listen(Engine, "commit", on_commit)
    event.listen(Engine, "rollback", on_rollback)

    def write() -> None:
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(dict(counts)))
        temporary.replace(path)

    def keep_writing() -> None:
        written: Counter[str] | None = None
        while True:
            if counts != written:  # an idle process writes nothing, a busy one 5 times a second
                written = counts.copy()
                write()
            threading.Event().wait(0.2)

    atexit.register(write)
    threading.Thread(target=keep_writing, name="bench-counts", daemon=True).start()


def transactions(folder: Path) -> dict[str, int]:
    """Totals over every counted process that ever ran (a restarted worker's file stays)."""
    total: Counter[str] = Counter()
    for path in folder.glob("counts-*.json"):
        try:
            total.update(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue  # being replaced just now: the next read has it
    return {"commits": total["commits"], "rollbacks": total["rollbacks"]}
