"""Engines and schema: SQLite file by default, PostgreSQL by URL, schema by Alembic."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, event
from sqlmodel import Session, create_engine

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
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
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
    connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def migrate(url: str) -> None:
    """Bring the schema to the newest migration; safe to call on every start."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine_for(url)
    command.upgrade(config, "head")


@contextmanager
def session_for(url: str, *, read_only: bool = False) -> Iterator[Session]:
    engine = engine_for(url)
    bind = engine.execution_options(cyklo_read_only=True) if read_only else engine
    with Session(bind, expire_on_commit=False) as session:
        yield session
