"""The benchmark suite runs end to end and its figures count what really happened.

Benchmarks are not tests: nothing here asserts a speed. What is checked is that every
figure is made of real deliveries, so a number in docs/benchmarks.md cannot come from a
run that lost customers, counted emails that never arrived or skipped continue-as-new.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench.cost import cost_line
from bench.measures import distribution, percentile, top_functions
from definition.schedule import daytime_zone

ROOT = Path(__file__).resolve().parent.parent


def test_small_run_of_every_benchmark_reports_what_was_delivered(tmp_path: Path) -> None:
    output = tmp_path / "results.json"
    finished = subprocess.run(
        [
            sys.executable, "-m", "bench",
            "--customers", "12", "--rounds", "2", "--concurrency", "20",
            "--rate", "5", "--seconds", "2", "--ramp", "15", "--ramp-seconds", "2",
            "--sleeping", "20,45", "--history-purchases", "130", "--events-per-run", "50",
            "--simulations", "1", "--profile-customers", "20", "--output", str(output),
        ],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert finished.returncode == 0, finished.stderr[-3000:]
    # The table as printed: rich wraps a row's name wherever its column's width falls, so only
    # words are looked for, not a phrase.
    printed = finished.stdout.split()
    assert "benchmarks" in printed and "throughput," in printed and "SQLite:" in printed
    results = json.loads(output.read_text())

    throughput = results["throughput"]
    assert [pair["round"] for pair in throughput["rounds"]] == [1, 2]
    for pair in throughput["rounds"]:
        assert_round_made_of_deliveries(pair, 12)
    ratios = sorted(pair["ratio"] for pair in throughput["rounds"])
    assert throughput["ratio"] == {"median": round(sum(ratios) / 2, 3), "min": ratios[0], "max": ratios[1]}

    latency = results["latency"]
    for kind in ("cached", "cold"):
        assert len(latency[kind]["rounds"]) == 2
        for pair in latency[kind]["rounds"]:
            # Every thank-you counted at the emulator, every baseline activity's own time read.
            assert pair["cyklo"]["from_202_to_thank_you_ms"]["samples"] == pair["cyklo"]["purchases"] == 10
            assert pair["baseline"]["signal_to_activity_ms"]["samples"] == 10
            assert pair["cyklo"]["explained"]["workflows_counted"] == 10
            # A purchase's thank-you and SMS each go through the ledger.
            assert pair["cyklo"]["explained"]["cyklo_db_per_customer"]["commits"] >= 2
    for kind in ("cached", "cold"):
        assert [step["purchases"] for step in latency["ramp"][kind]] == [30]
        assert all(step["from_202_to_thank_you_ms"]["samples"] == 30 for step in latency["ramp"][kind])

    history = results["history"]
    assert history["orders_counted"] == 130
    # 130 purchases at 50 events a run (a burst can land in one run): continue-as-new keeps runs short.
    assert history["runs"] >= 2
    assert all(run["events"] < 400 for run in history["per_run"])

    memory = results["memory"]
    assert set(memory["rss_mib"]) == {"fresh worker", "20", "45"}
    assert memory["growth_percent"] == round((memory["rss_mib"]["45"] / memory["rss_mib"]["20"] - 1) * 100, 1)

    simulation = results["simulation"]
    assert simulation["messages"] > 5
    assert simulation["customer_years"] > 0.9

    profile = results["profile"]
    assert profile["samples"] > 0
    assert any("send_message" in entry["function"] for entry in profile["total"])

    cost = cost_line(results)
    assert cost is not None and cost["cpu_seconds_per_1000_customer_months"] > 0


def assert_round_made_of_deliveries(
    pair: dict[str, Any], customers: int, workers: tuple[str, ...] = ("worker",), on_sqlite: bool = True
) -> None:
    """A throughput round counts what happened: every welcome at the emulator, every workflow
    in Temporal's database, the ledger's transactions in cyklo's (and on SQLite the time they
    held its write lock), CPU in every worker."""
    baseline, cyklo = pair["baseline"], pair["cyklo"]
    assert baseline["workflows"] == baseline["explained"]["workflows_counted"] == customers
    assert (
        cyklo["customers"]
        == cyklo["welcomes_at_emulator"]
        == cyklo["explained"]["workflows_counted"]
        == customers
    )
    assert pair["ratio"] == round(cyklo["per_second"] / baseline["per_second"], 3)
    for side in (baseline, cyklo):
        temporal = side["explained"]["temporal_per_customer"]
        assert temporal["history_events"] > temporal["state_writes"] > 0
        assert temporal["history_kib"] > 0
    # The sign-up's event row, then the welcome: claimed, rendered and `sending` (consent, cap)
    # in one commit, `sent` in another.
    assert cyklo["explained"]["cyklo_db_per_customer"]["commits"] >= 3
    assert baseline["explained"]["cyklo_db_per_customer"]["commits"] == 0
    # Those commits held SQLite's write lock for a while (PostgreSQL has none), the baseline's
    # none at all (it has no database).
    held = cyklo["explained"]["cyklo_db_per_customer"]["write_lock_held_ms"]
    assert held > 0 if on_sqlite else held == 0
    if on_sqlite:
        assert 0 < cyklo["explained"]["write_lock_busy"] <= 1.05, "one lock: its holders' times cannot overlap"
    assert baseline["explained"]["cyklo_db_per_customer"]["write_lock_held_ms"] == 0
    for worker in workers:
        spent = cyklo["explained"]["cpu_ms_per_customer"][worker]
        assert spent["user"] + spent["system"] > 0, worker


def test_scale_out_and_a_base_count_their_deliveries(tmp_path: Path, postgres_url: str) -> None:
    """2 workers and 2 APIs on PostgreSQL (a database of the run's own on the same server),
    and a base signed up and asleep, at toy sizes."""
    output = tmp_path / "results.json"
    finished = subprocess.run(
        [
            sys.executable, "-m", "bench", "--only", "throughput,base",
            "--customers", "12", "--rounds", "1", "--concurrency", "20",
            "--scale-out", "--postgres-url", postgres_url, "--base-customers", "30", "--base-step", "15",
            "--output", str(output),
        ],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert finished.returncode == 0, finished.stderr[-3000:]
    results = json.loads(output.read_text())
    scale_out = results["scale_out"]
    assert (scale_out["workers"], scale_out["apis"], scale_out["database"]) == (2, 2, "postgresql")
    assert_round_made_of_deliveries(scale_out["rounds"][0], 12, workers=("worker", "worker 2"), on_sqlite=False)
    assert {"api", "api 2"} <= set(scale_out["rounds"][0]["cyklo"]["explained"]["cpu_ms_per_customer"])

    base = results["base"]
    assert [step["customers"] for step in base["steps"]] == [15, 30]
    assert all(step["temporal_db_kib_per_customer"] > 0 and step["cyklo_db_kib_per_customer"] > 0
               for step in base["steps"])  # fmt: skip


def test_an_unknown_benchmark_is_named_without_a_traceback() -> None:
    finished = subprocess.run(
        [sys.executable, "-m", "bench", "--only", "throughput,speed"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert finished.returncode == 2
    assert "unknown benchmark speed" in finished.stderr
    assert "Traceback" not in finished.stderr


def test_sizes_that_measure_nothing_are_refused_naming_the_flag() -> None:
    for arguments, flag in (
        (["--sleeping", "0,100"], "--sleeping"),
        (["--rate", "0.5", "--seconds", "1"], "--rate"),
    ):
        finished = subprocess.run(
            [sys.executable, "-m", "bench", *arguments],
            cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert finished.returncode == 2, finished.stderr
        assert flag in finished.stderr and "Traceback" not in finished.stderr


def test_percentiles_are_nearest_rank() -> None:
    values = [float(n) for n in range(1, 101)]
    assert percentile(values, 0.99) == 99.0
    assert percentile(values, 0.5) == 50.0
    assert distribution([3.0, 1.0, 2.0]) == {"samples": 3, "p50": 2.0, "p95": 3.0, "p99": 3.0, "max": 3.0}


def test_customers_get_a_zone_where_it_is_daytime_so_marketing_is_not_held() -> None:
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo

    for hour in range(24):
        now = datetime(2026, 11, 30, hour, 30, tzinfo=UTC)
        local = now.astimezone(ZoneInfo(daytime_zone(now)))
        assert 10 <= local.hour < 18, (hour, daytime_zone(now))


def test_profile_lists_functions_by_own_and_total_samples(tmp_path: Path) -> None:
    raw = tmp_path / "stacks.txt"
    raw.write_text(
        "_bootstrap (threading.py);send_message (activities/send.py);send_email (activities/email.py) 3\n"
        "_bootstrap (threading.py);send_message (activities/send.py) 1\n"
    )
    top = top_functions(raw)
    assert top["samples"] == 4
    assert top["self"][0] == {"function": "send_email (activities/email.py)", "percent": 75.0}
    assert top["total"][0] == {"function": "send_message (activities/send.py)", "percent": 100.0}
    assert all("threading.py" not in entry["function"] for entry in top["total"])


def test_small_run_of_the_report_benchmark_counts_what_it_filled(postgres_url: str) -> None:
    """The at-scale journey report (bench/reports_at_scale.py) at a toy size: its figures are
    the ledger's and the conversions', counted here another way."""
    import psycopg

    from bench.reports_at_scale import measure

    results = measure(postgres_url, messages=3000, purchases=600, customers=300, runs=1)

    with psycopg.connect(postgres_url) as connection:
        sent = connection.execute(
            "SELECT count(*) FROM messages WHERE NOT test"
            " AND status IN ('sent', 'delivered', 'opened', 'clicked', 'bounced')"
        ).fetchone()
        credited, revenue = connection.execute(
            "SELECT count(*), sum(amount) FROM conversions"
        ).fetchone() or (0, 0)
    assert results["journey_report"]["year"]["sent"] == (sent or (0,))[0]
    assert results["journey_report"]["year"]["converted"] == credited == results["conversions"] > 0
    assert results["journey_report"]["year"]["revenue"] == round(revenue, 2)
    # The experiments report counts every customer of the split once, the global control
    # group's 5 % left out, and a customer converted when a purchase fell within the 7 days
    # after their assignment: counted here in SQL.
    with psycopg.connect(postgres_url) as connection:
        assigned = connection.execute(
            "SELECT customer_id, assigned_at FROM experiment_assignments"
        ).fetchall()
        purchases = connection.execute(
            "SELECT customer_id, occurred_at FROM events WHERE type = 'purchase'"
        ).fetchall()
    from definition.holdout import in_global_holdout

    treated = {customer: at for customer, at in assigned if not in_global_holdout(customer, 5.0)}
    converted = {
        customer
        for customer, at in purchases
        if customer in treated and treated[customer] <= at < treated[customer] + timedelta(days=7)
    }
    experiments = results["experiments_report"]["year"]
    assert experiments["customers"] == len(treated) < len(assigned) == 300
    assert experiments["converted"] == len(converted) > 0
    assert experiments["programme_customers"] == 300
