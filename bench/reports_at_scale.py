"""`cyklo bench-reports`: the journey and experiment reports on PostgreSQL at scale
(docs/benchmarks.md).

A fresh database is filled by COPY with a year of one journey's ledger (a million messages
over 100,000 customers by default, every status and reason the send writes, test sends
among them), 200,000 purchases, stage entries, unsubscribes, the customers' profiles and
every customer's arm of one split (holdout included); then `cyklo report --rebuild`'s
recomputation of the conversions is timed once, and the journey report and the experiments
report (with the programme against a 5 % global control group) for the whole year and for
one month several times. A benchmark, not a test: it asserts nothing
but prints the figures and writes them as JSON.
"""

from __future__ import annotations

import json
import random
import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import psycopg
import typer

ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"
JOURNEY = "lifecycle"
SPLIT = "welcome_subject"
ARMS = [("short", 45), ("personal", 45), (None, 10)]
"""The split's arms and weights; None is its holdout."""
GLOBAL_HOLDOUT_PERCENT = 5.0
START = datetime(2026, 1, 1, tzinfo=UTC)
YEAR = 365 * 86400

STEPS = [
    # stage, step, template, channel, transactional, conversion window (seconds)
    ("prospect", "prospect/0", "welcome", "email", False, 3 * 86400),
    ("prospect", "prospect/2", "first_order_nudge", "email", False, 7 * 86400),
    ("prospect", "prospect/4", "first_order_last_call", "sms", False, 7 * 86400),
    ("new", "new/0", "thank_you", "email", True, None),
    ("new", "new/1", "thank_you", "sms", False, None),
    ("new", "new/3", "cross_sell", "email", False, 7 * 86400),
    ("new", "new/5", "review_request", "email", False, None),
    ("active", "active/0/else/0", "loyalty_welcome", "email", False, None),
    ("active", "active/1/flow/1", "recommendations", "email", False, 7 * 86400),
    ("vip", "vip/1", "vip_welcome", "email", False, None),
    ("inactive", "inactive/0", "we_miss_you", "email", False, 7 * 86400),
    ("inactive", "inactive/2", "comeback_offer", "email", False, 14 * 86400),
]
STATUSES = [
    ("sent", None, 30),
    ("delivered", None, 35),
    ("opened", None, 15),
    ("clicked", None, 8),
    ("bounced", "550: mailbox unavailable", 2),
    ("suppressed", "no email consent", 5),
    ("capped", "frequency cap: 3 marketing messages in the 7 days before", 3),
    ("failed", "provider unavailable: 503", 1),
    ("failed", "outcome unknown: no answer; not resent, to avoid a duplicate", 1),
]
MESSAGE_COLUMNS = (
    "idempotency_key, customer_id, journey_id, journey_version, stage, step, channel, template, "
    "transactional, test, status, reason, attempts, scheduled_at, conversion_window_seconds, "
    "created_at, updated_at"
)


def fill(url: str, messages: int, purchases: int, customers: int, seed: int = 11) -> None:
    """COPY a year of the journey into the (migrated, empty) database at `url`."""
    chance = random.Random(seed)
    weights = [weight for _, _, weight in STATUSES]
    now = datetime.now(UTC)
    with psycopg.connect(url) as connection, connection.cursor() as cursor:
        with cursor.copy(f"COPY messages ({MESSAGE_COLUMNS}) FROM STDIN") as copy:
            for number in range(messages):
                stage, step, template, channel, transactional, window = chance.choice(STEPS)
                status, reason, _ = chance.choices(STATUSES, weights)[0]
                test = number % 200 == 0
                copy.write_row(
                    (
                        f"bench/{number}",
                        f"c-{number % customers}",
                        JOURNEY,
                        1,
                        stage,
                        step,
                        channel,
                        template,
                        transactional,
                        test,
                        status,
                        reason,
                        1,
                        START + timedelta(seconds=chance.randrange(YEAR)),
                        None if transactional or test else window,
                        now,
                        now,
                    )
                )
        with cursor.copy(
            "COPY events (event_id, customer_id, type, occurred_at, received_at, properties, amount) FROM STDIN"
        ) as copy:
            for number in range(purchases):
                properties = {"order_id": f"o-{number}", "amount": round(chance.uniform(20, 900), 2)}
                copy.write_row(
                    (
                        f"bench-purchase-{number}",
                        f"c-{chance.randrange(customers)}",
                        "purchase",
                        START + timedelta(seconds=chance.randrange(YEAR)),
                        now,
                        json.dumps(properties),
                        properties["amount"],
                    )
                )
        with cursor.copy(
            "COPY stage_entries (journey_id, customer_id, instance, entry, stage, previous_stage, "
            "journey_version, entered_at) FROM STDIN"
        ) as copy:
            for customer in range(customers):
                copy.write_row(
                    (
                        JOURNEY,
                        f"c-{customer}",
                        "i0",
                        1,
                        "prospect",
                        None,
                        1,
                        START + timedelta(seconds=chance.randrange(YEAR)),
                    )
                )
        with cursor.copy(
            "COPY consent_history (customer_id, channel, change, origin, source, at) FROM STDIN"
        ) as copy:
            for _ in range(customers // 50):
                copy.write_row(
                    (
                        f"c-{chance.randrange(customers)}",
                        "email",
                        "withdrawn",
                        "sendgrid",
                        "sendgrid unsubscribe",
                        START + timedelta(seconds=chance.randrange(YEAR)),
                    )
                )
        with cursor.copy(
            "COPY customers (id, locale, timezone, consent_email, consent_sms, email_suppressed, "
            "sms_suppressed, attributes, created_at, updated_at) FROM STDIN"
        ) as copy:
            for customer in range(customers):
                signed_up = START + timedelta(seconds=chance.randrange(YEAR))
                copy.write_row(
                    (f"c-{customer}", "pl", "Europe/Warsaw", True, True, False, False, "{}", signed_up, now)
                )
        arms = [arm for arm, _ in ARMS]
        arm_weights = [weight for _, weight in ARMS]
        with cursor.copy(
            "COPY experiment_assignments (journey_id, split, customer_id, instance, arm, by_winner, "
            "assigned_at) FROM STDIN"
        ) as copy:
            for customer in range(customers):
                arm = chance.choices(arms, arm_weights)[0]
                assigned = START + timedelta(seconds=chance.randrange(YEAR))
                copy.write_row((JOURNEY, SPLIT, f"c-{customer}", "i0", arm, False, assigned))
        connection.commit()
    with psycopg.connect(url, autocommit=True) as connection:
        # Fresh statistics and visibility map, as autovacuum would leave them: the planner's
        # choices, and index-only scans, are those of a database in use.
        connection.execute("VACUUM ANALYZE")


def timed(action: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = action()
    return time.perf_counter() - started, result


def measure(url: str, messages: int, purchases: int, customers: int, runs: int) -> dict[str, Any]:
    from reports.experiments import experiments_report
    from reports.funnel import Period, journey_funnel
    from storage import conversions
    from storage.database import migrate, session_for

    migrate(url)
    fill_seconds, _ = timed(lambda: fill(_libpq(url), messages, purchases, customers))
    with session_for(url) as session:
        rebuild_seconds, credited = timed(lambda: conversions.rebuild(session))
    with psycopg.connect(_libpq(url), autocommit=True) as connection:
        connection.execute("VACUUM ANALYZE conversions")
    periods = {
        "year": Period(),
        "month": Period.of(date(2026, 6, 1), date(2026, 6, 30)),
    }
    figures: dict[str, Any] = {}
    experiment_figures: dict[str, Any] = {}
    for name, period in periods.items():
        seconds, funnel = repeated(
            url, runs, partial(journey_funnel, journey_id=JOURNEY, period=period, currency="PLN")
        )
        figures[name] = {
            **seconds,
            "sent": funnel.sent,
            "converted": funnel.converted,
            "revenue": funnel.revenue,
        }
        seconds, report = repeated(
            url,
            runs,
            partial(
                experiments_report,
                since=period.since,
                until=period.until,
                holdout_percent=GLOBAL_HOLDOUT_PERCENT,
            ),
        )
        [split] = report.splits
        experiment_figures[name] = {
            **seconds,
            "customers": sum(arm.customers for arm in split.arms),
            "converted": sum(arm.converted for arm in split.arms),
            "programme_customers": report.programme.treated.customers + report.programme.control.customers
            if report.programme is not None
            else 0,
        }
    return {
        "messages": messages,
        "purchases": purchases,
        "customers": customers,
        "fill_s": round(fill_seconds, 1),
        "rebuild_s": round(rebuild_seconds, 1),
        "conversions": credited,
        "journey_report": figures,
        "experiments_report": experiment_figures,
    }


def repeated(url: str, runs: int, report: Callable[[Any], Any]) -> tuple[dict[str, float], Any]:
    """Best and median seconds of `runs` runs of the report, each in a fresh read-only
    session, and the last run's answer."""
    from storage.database import session_for

    seconds = []
    for _ in range(runs):
        with session_for(url, read_only=True) as session:
            started = time.perf_counter()
            answer = report(session)
            seconds.append(time.perf_counter() - started)
    return {"best_s": round(min(seconds), 3), "median_s": round(statistics.median(seconds), 3)}, answer


@contextmanager
def fresh_database(admin_url: str, keep: bool) -> Iterator[str]:
    name = f"cyklo_bench_reports_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = admin_url.rsplit("/", 1)[0] + f"/{name}"
    try:
        yield url
    finally:
        from storage.database import engine_for

        engine_for(url).dispose()
        if not keep:
            with psycopg.connect(admin_url, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def bench_reports(
    messages: Annotated[int, typer.Option(help="Ledger rows of the journey.", min=1)] = 1_000_000,
    purchases: Annotated[int, typer.Option(help="Purchase events.", min=0)] = 200_000,
    customers: Annotated[int, typer.Option(help="Customers they are spread over.", min=1)] = 100_000,
    runs: Annotated[int, typer.Option(help="Times each report runs (best and median).", min=1)] = 5,
    postgres_url: Annotated[
        str, typer.Option(help="A PostgreSQL server (its database is used to create a fresh one).")
    ] = ADMIN_URL,
    keep: Annotated[bool, typer.Option(help="Keep the filled database.")] = False,
    output: Annotated[Path, typer.Option(help="Where the JSON goes.")] = Path("bench-reports.json"),
) -> None:
    """Fill PostgreSQL with a journey's year (1,000,000 messages, 200,000 purchases) and time
    the conversions' rebuild, the journey report and the experiments report."""
    with fresh_database(postgres_url, keep) as url:
        results = measure(url, messages, purchases, customers, runs)
        if keep:
            typer.echo(f"database kept: {url}", err=True)
    output.write_text(json.dumps(results, indent=2) + "\n")
    typer.echo(
        f"{results['messages']:,} messages, {results['purchases']:,} purchases: filled in {results['fill_s']} s, "
        f"conversions rebuilt in {results['rebuild_s']} s ({results['conversions']:,} credited)"
    )
    for name, figure in results["journey_report"].items():
        typer.echo(
            f"journey report, {name}: best {figure['best_s']} s, median {figure['median_s']} s "
            f"({figure['sent']:,} sent, {figure['converted']:,} converted)"
        )
    for name, figure in results["experiments_report"].items():
        typer.echo(
            f"experiments report, {name}: best {figure['best_s']} s, median {figure['median_s']} s "
            f"({figure['customers']:,} customers in the split, {figure['converted']:,} converted; "
            f"programme over {figure['programme_customers']:,} customers)"
        )
    typer.echo(f"figures written to {output}")
