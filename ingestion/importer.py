"""Runs an import: rows parsed (ingestion.imports), written a chunk at a time, counted; and
the `imported` start of the journeys for the customers loaded."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

from sqlmodel import col, select

from definition.model import Journey
from ingestion.imports import (
    CHUNK_ROWS,
    BadRow,
    ImportedCustomer,
    ImportedOrder,
    ImportKind,
    RawRow,
    imported_event,
    parse_customer,
    parse_order,
    read_rows,
)
from routing.events import EventRouter
from storage import imports
from storage.database import session_for
from storage.models import Customer

START_CONCURRENCY = 50


@dataclass
class Counts:
    loaded: int = 0
    unchanged: int = 0
    bad: int = 0

    def add(self, other: Counts) -> None:
        self.loaded += other.loaded
        self.unchanged += other.unchanged
        self.bad += other.bad


@dataclass(frozen=True)
class ChunkResult:
    counts: Counts
    problems: list[BadRow]


def load_chunk(
    database_url: str, kind: ImportKind, rows: Sequence[RawRow | BadRow], currency: str
) -> ChunkResult:
    """Parse and write one chunk: the good rows are written whatever the bad ones say."""
    problems: list[BadRow] = []
    customers: list[ImportedCustomer] = []
    orders: list[ImportedOrder] = []
    for row in rows:
        if isinstance(row, BadRow):
            problems.append(row)
            continue
        parsed = parse_customer(row) if kind is ImportKind.CUSTOMERS else parse_order(row, currency)
        match parsed:
            case list():
                problems += parsed
            case ImportedCustomer():
                customers.append(parsed)
            case ImportedOrder():
                orders.append(parsed)
    with session_for(database_url) as session:
        if kind is ImportKind.CUSTOMERS:
            good = len(customers)
            loaded = imports.save_customers(session, [row.profile for row in customers])
            imports.record_events(session, [row.signed_up for row in customers if row.signed_up is not None])
        else:
            good = len(orders)
            loaded = imports.record_events(session, [order.event for order in orders])
    bad_rows = len({problem.line for problem in problems})
    return ChunkResult(Counts(loaded=loaded, unchanged=good - loaded, bad=bad_rows), problems)


def count_rows(path: Path) -> int:
    """Lines in the file (a CSV's header included): the progress bar's length, read in a
    pass that keeps no more than a block in memory."""
    with path.open("rb") as data:
        return sum(1 for _ in data)


def import_file(
    database_url: str,
    kind: ImportKind,
    path: Path,
    currency: str,
    *,
    on_problem: Callable[[BadRow], None],
    on_progress: Callable[[int], None],
) -> Counts:
    """Stream the file into the database a chunk at a time; `on_progress` gets the line
    the import has reached."""
    total = Counts()
    for chunk in _chunks(read_rows(path), CHUNK_ROWS):
        result = load_chunk(database_url, kind, chunk, currency)
        total.add(result.counts)
        for problem in result.problems:
            on_problem(problem)
        on_progress(chunk[-1].line)
    with session_for(database_url) as session:
        imports.refresh_statistics(session)
    return total


def _chunks(rows: Iterable[RawRow | BadRow], size: int) -> Iterator[list[RawRow | BadRow]]:
    iterator = iter(rows)
    while chunk := list(islice(iterator, size)):
        yield chunk


class NoImportedEntry(LookupError):
    """No published journey has an `imported: true` entry: starting would do nothing."""


def importing_journeys(journeys: Iterable[Journey]) -> list[Journey]:
    return [journey for journey in journeys if any(entry.imported for entry in journey.entry)]


@dataclass
class Started:
    started: int = 0
    already: int = 0
    """Customers whose `imported` start was sent by an earlier run: not sent again."""
    failed: int = 0
    """Temporal did not answer in time: run the start again, it sends only these."""


async def start_customers(router: EventRouter, customer_ids: Sequence[str]) -> Started:
    """Send each customer's `imported` start to the journeys with `imported: true` entries,
    once per customer ever (the event's id dedups it)."""
    if not importing_journeys(router.journeys):
        raise NoImportedEntry(
            "no published journey has an `imported: true` entry: add one (README: Importing your customers) "
            "and run `cyklo publish`"
        )
    gate = asyncio.Semaphore(START_CONCURRENCY)
    outcome = Started()

    async def one(customer_id: str) -> None:
        async with gate:
            try:
                routed = await router.route(imported_event(customer_id))
            except Exception:  # not delivered: forgotten by the router, sent by the next run
                outcome.failed += 1
                return
        if routed == "accepted":
            outcome.started += 1
        else:
            outcome.already += 1

    await asyncio.gather(*(one(customer_id) for customer_id in customer_ids))
    return outcome


def customer_ids(database_url: str, after: str | None, limit: int) -> list[str]:
    """Customers with a profile, by id, after `after`: the start walks them a page at a time."""
    with session_for(database_url, read_only=True) as session:
        query = select(Customer.id).order_by(col(Customer.id)).limit(limit)
        if after is not None:
            query = query.where(col(Customer.id) > after)
        return list(session.exec(query))
