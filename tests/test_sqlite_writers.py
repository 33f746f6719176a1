"""SQLite writers queue on a flock beside the database instead of polling for its lock.

Real SQLite files and real processes: the gate must be held exactly while a write transaction
is open — taken before BEGIN IMMEDIATE, let go once it commits or rolls back — and never by a
read-only session, or every reader would queue behind the writers as well.
"""

from __future__ import annotations

import fcntl
import multiprocessing
import os
from pathlib import Path

import pytest
from sqlalchemy import text

from storage.database import engine_for, migrate, session_for
from storage.models import Event


def _gate_taken(database: Path) -> bool:
    """Whether some other descriptor holds the writers' gate (tried from a fresh one)."""
    descriptor = os.open(database.with_name(database.name + ".writers"), os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(descriptor)
    return False


@pytest.fixture
def database(tmp_path: Path) -> Path:
    path = tmp_path / "cyklo.db"
    migrate(f"sqlite:///{path}")
    return path


def test_a_write_transaction_holds_the_gate_until_it_commits(database: Path) -> None:
    with session_for(f"sqlite:///{database}") as session:
        assert not _gate_taken(database)
        session.execute(text("SELECT count(*) FROM events"))
        assert _gate_taken(database), "BEGIN IMMEDIATE is taken behind the gate"
        session.commit()
        assert not _gate_taken(database)


def test_a_rolled_back_or_failed_transaction_lets_the_gate_go(database: Path) -> None:
    with session_for(f"sqlite:///{database}") as session:
        session.execute(text("SELECT 1 FROM events"))
        session.rollback()
        assert not _gate_taken(database)
    with pytest.raises(Exception, match="no such table"):
        with session_for(f"sqlite:///{database}") as session:
            session.execute(text("SELECT * FROM no_such_table"))
    assert not _gate_taken(database)


def test_a_read_only_session_never_takes_the_gate(database: Path) -> None:
    with session_for(f"sqlite:///{database}", read_only=True) as session:
        session.execute(text("SELECT count(*) FROM events"))
        assert not _gate_taken(database)


def _write_events(url: str, prefix: str, count: int) -> None:
    from datetime import UTC, datetime

    engine_for.cache_clear()  # a fresh process's own engine, as a worker or API has
    for number in range(count):
        with session_for(url) as session:
            session.add(
                Event(
                    event_id=f"{prefix}-{number}", customer_id="c-1", type="email_opened",
                    occurred_at=datetime.now(UTC), properties={},
                )
            )  # fmt: skip
            session.commit()


def test_writers_in_several_processes_all_get_through(database: Path) -> None:
    url = f"sqlite:///{database}"
    spawn = multiprocessing.get_context("spawn")
    writers = [spawn.Process(target=_write_events, args=(url, f"p{n}", 40)) for n in range(3)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(timeout=120)
    assert [writer.exitcode for writer in writers] == [0, 0, 0]
    with session_for(url, read_only=True) as session:
        assert session.execute(text("SELECT count(*) FROM events")).scalar_one() == 120
    assert not _gate_taken(database)
