"""Engines and schema: SQLite file by default, PostgreSQL by URL, schema by Alembic."""

from __future__ import annotations

import fcntl
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, SQLModel, create_engine

MIGRATIONS = Path(__file__).parent / "migrations"


def normalise_url(url: str) -> str:
    """`postgresql://` means psycopg 3 here, the driver we ship."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


POOL = {"pool_size": 20, "max_overflow": 20}
"""As many kept connections as a worker has activity threads (16) and then some: a smaller
pool closes and reopens connections (SQLite: and reruns the pragmas) every busy second."""


@lru_cache(maxsize=16)
def engine_for(url: str) -> Engine:
    url = normalise_url(url)
    if url.startswith("sqlite"):
        database = url.split("///", 1)[-1]
        in_memory = not database or database == ":memory:" or url == "sqlite://"
        if not in_memory:
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        gate = {} if in_memory else {"factory": writer_gated(Path(database))}
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30, **gate},
            # An in-memory database has one connection per thread (no pool to size).
            **({} if in_memory else POOL),
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin_immediate)
        return engine
    return create_engine(url, pool_pre_ping=True, **POOL)


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    # pysqlite's own BEGIN handling is switched off so that every transaction takes the
    # write lock up front (BEGIN IMMEDIATE): the frequency cap reads then writes, and two
    # journeys sending to one customer at once must not both pass the check.
    connection.isolation_level = None
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _sqlite_begin_immediate(connection: Any) -> None:
    # A read-only session needs no write lock: under WAL it reads beside the writers
    # instead of queueing behind them.
    read_only = connection.get_execution_options().get("cyklo_read_only", False)
    if read_only:
        connection.exec_driver_sql("BEGIN")
        return
    raw = connection.connection.dbapi_connection
    if isinstance(raw, WriterGatedConnection):
        raw.enter_writers()
    try:
        connection.exec_driver_sql("BEGIN IMMEDIATE")
    except BaseException:
        if isinstance(raw, WriterGatedConnection):
            raw.leave_writers()
        raise


class WriterGatedConnection(sqlite3.Connection):
    """A SQLite connection whose write transactions first take an exclusive flock on a file
    beside the database, held until the transaction ends.

    SQLite makes a writer that finds the write lock taken sleep and try again, up to 100 ms
    at a time, so under a steady stream of short writers from the worker's send threads one
    that waits can keep losing: the API's record of a purchase waited up to 3 s behind them
    (docs/benchmarks.md). A blocked flock is woken by the kernel the moment the lock is
    released, in every process that opens the database, and a process that dies lets go of
    it with its descriptors. The SQLite lock stays what keeps writers apart; the flock only
    makes them queue instead of poll."""

    gate_path: Path

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._gate: int | None = None
        self._writing = False

    def enter_writers(self) -> None:
        if self._gate is None:
            self._gate = os.open(self.gate_path, os.O_RDWR | os.O_CREAT, 0o600)
        if not self._writing:
            fcntl.flock(self._gate, fcntl.LOCK_EX)
            self._writing = True

    def leave_writers(self) -> None:
        if self._writing and self._gate is not None:
            self._writing = False
            fcntl.flock(self._gate, fcntl.LOCK_UN)

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            self.leave_writers()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self.leave_writers()

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.leave_writers()
            if self._gate is not None:
                os.close(self._gate)
                self._gate = None


def writer_gated(database: Path) -> type[WriterGatedConnection]:
    """The connection class for one database file: its gate is the file beside it."""
    return type(
        "WriterGatedConnection", (WriterGatedConnection,), {"gate_path": database.with_name(database.name + ".writers")}
    )


MIGRATION_LOCK = 0x6379_6B6C_6F00
"""The PostgreSQL advisory lock key (`cyklo` in ASCII) every migrating process takes first."""


def migrate(url: str) -> None:
    """Bring the schema to the newest migration; safe to call on every start, from any
    number of processes at once: on PostgreSQL one migrates while the others wait for its
    lock and then find the schema current (without it, all but one failed to start)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    engine = engine_for(url)
    config.attributes["engine"] = engine
    if engine.dialect.name != "postgresql":
        # SQLite's BEGIN IMMEDIATE already lets one writer in at a time.
        command.upgrade(config, "head")
        return
    with engine.connect() as holder:
        holder.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK})
        try:
            command.upgrade(config, "head")
        finally:
            holder.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK})


@contextmanager
def session_for(url: str, *, read_only: bool = False) -> Iterator[Session]:
    engine = engine_for(url)
    bind = engine.execution_options(cyklo_read_only=True) if read_only else engine
    with Session(bind, expire_on_commit=False) as session:
        yield session


def insert_new(session: Session, table: type[SQLModel], rows: list[dict[str, Any]]) -> None:
    """Insert `rows` into `table` in the session's transaction, leaving out any whose unique
    key is taken already (ON CONFLICT DO NOTHING, on SQLite as on PostgreSQL)."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    session.execute(insert(table).on_conflict_do_nothing(), rows)  # type: ignore[attr-defined]
