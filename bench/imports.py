"""`cyklo bench-import`: how long `cyklo import` takes for a shop's whole base (docs/benchmarks.md).

Generates a customers CSV and an orders CSV (fixed seed, one bad row in a thousand of each),
imports both into a fresh database the way `cyklo import customers|orders` does, then
imports them again (which must write nothing), and prints and writes the times. A
benchmark, not a test: it asserts nothing but reports what it counted.
"""

from __future__ import annotations

import csv
import json
import random
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer

from ingestion.importer import Counts, import_file
from ingestion.imports import ImportKind
from storage.database import migrate

BAD_EVERY = 1000
CURRENCY = "PLN"


def write_files(folder: Path, customers: int, orders: int, seed: int = 12) -> tuple[Path, Path]:
    chance = random.Random(seed)
    now = datetime.now(UTC)
    customers_path, orders_path = folder / "customers.csv", folder / "orders.csv"
    with customers_path.open("w", newline="") as out:
        rows = csv.writer(out)
        rows.writerow(
            ["id", "email", "phone", "first_name", "locale", "timezone", "signed_up_at", "consent_email", "consent_sms",
             "consent_source", "consent_at"]
        )  # fmt: skip
        for number in range(customers):
            signed_up = (now - timedelta(days=chance.randint(1, 1500))).isoformat()
            email = f"customer{number}@example.com" if number % BAD_EVERY != 7 else "not-an-email"
            rows.writerow(
                [f"c-{number}", email, f"+48601{number % 1_000_000:06d}", "Ala", chance.choice(["pl", "en"]),
                 "Europe/Warsaw", signed_up, "true", chance.choice(["true", "false"]), "signup form", signed_up]
            )  # fmt: skip
    with orders_path.open("w", newline="") as out:
        rows = csv.writer(out)
        rows.writerow(["order_id", "customer_id", "amount", "currency", "occurred_at", "category"])
        for number in range(orders):
            amount = f"{chance.uniform(20, 800):.2f}" if number % BAD_EVERY != 3 else "lots"
            occurred = (now - timedelta(days=chance.uniform(0, 1400))).isoformat()
            rows.writerow(
                [f"o-{number}", f"c-{chance.randrange(customers)}", amount, CURRENCY, occurred,
                 chance.choice(["shoes", "bags", "coats", "hats"])]
            )  # fmt: skip
    return customers_path, orders_path


def _timed(database_url: str, kind: ImportKind, path: Path) -> tuple[float, Counts]:
    started = time.perf_counter()
    counts = import_file(
        database_url, kind, path, CURRENCY, on_problem=lambda problem: None, on_progress=lambda line: None
    )
    return time.perf_counter() - started, counts


def run(customers: int, orders: int, folder: Path, database_url: str | None = None) -> dict[str, Any]:
    url = database_url or f"sqlite:///{folder}/cyklo.db"
    migrate(url)
    started = time.perf_counter()
    customers_path, orders_path = write_files(folder, customers, orders)
    figures: dict[str, Any] = {
        "customers": customers,
        "orders": orders,
        "database": url.split(":", 1)[0],
        "generate_seconds": round(time.perf_counter() - started, 1),
    }
    for label, kind, path in (
        ("customers", ImportKind.CUSTOMERS, customers_path),
        ("orders", ImportKind.ORDERS, orders_path),
        ("customers_again", ImportKind.CUSTOMERS, customers_path),
        ("orders_again", ImportKind.ORDERS, orders_path),
    ):
        seconds, counts = _timed(url, kind, path)
        figures[label] = {
            "seconds": round(seconds, 1),
            "loaded": counts.loaded,
            "unchanged": counts.unchanged,
            "bad": counts.bad,
        }
    return figures


def bench_import(
    customers: Annotated[int, typer.Option(help="Customers in the generated file.", min=1)] = 100_000,
    orders: Annotated[int, typer.Option(help="Orders in the generated file.", min=1)] = 500_000,
    database_url: Annotated[
        str | None, typer.Option(help="Import into this database (default: a fresh SQLite file).")
    ] = None,
    output: Annotated[Path, typer.Option(help="Where the JSON goes.")] = Path("bench-import.json"),
) -> None:
    """Time `cyklo import customers|orders` for generated files of a whole base, then the
    same import again (which writes nothing)."""
    with tempfile.TemporaryDirectory() as folder:
        figures = run(customers, orders, Path(folder), database_url)
    output.write_text(json.dumps(figures, indent=1) + "\n")
    for label in ("customers", "orders", "customers_again", "orders_again"):
        step = figures[label]
        typer.echo(
            f"{label:16} {step['seconds']:8.1f} s  {step['loaded']} loaded, {step['unchanged']} unchanged, "
            f"{step['bad']} bad"
        )
    typer.echo(f"figures in {output}")
