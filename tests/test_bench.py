"""The benchmark suite runs end to end and its figures count what really happened.

Benchmarks are not tests: nothing here asserts a speed. What is checked is that every
figure is made of real deliveries, so a number in docs/benchmarks.md cannot come from a
run that lost customers, counted emails that never arrived or skipped continue-as-new.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bench.measures import distribution, percentile, top_functions
from definition.schedule import daytime_zone

ROOT = Path(__file__).resolve().parent.parent


def test_small_run_of_every_benchmark_reports_what_was_delivered(tmp_path: Path) -> None:
    output = tmp_path / "results.json"
    finished = subprocess.run(
        [
            sys.executable, "-m", "bench",
            "--customers", "30", "--concurrency", "20", "--in-journey", "40",
            "--rate", "10", "--seconds", "2", "--ramp", "15", "--ramp-seconds", "2",
            "--sleeping", "20,45", "--history-purchases", "130", "--events-per-run", "50",
            "--simulations", "1", "--profile-customers", "20", "--output", str(output),
        ],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert "throughput ratio (b)/(a)" in finished.stdout
    results = json.loads(output.read_text())

    throughput = results["throughput"]
    assert throughput["baseline"]["workflows"] == 30
    assert throughput["cyklo"]["customers"] == 30
    assert throughput["ratio"] == round(
        throughput["cyklo"]["per_second"] / throughput["baseline"]["per_second"], 3
    )
    assert set(throughput["cyklo"]["cpu_ms_per_customer"]) == {
        "temporal server", "worker", "api", "load generator + emulator",
    }  # fmt: skip
    assert throughput["cyklo"]["cpu_ms_per_customer"]["worker"] > 0

    latency = results["latency"]
    assert latency["customers_in_journey"] == 40
    assert latency["warm"]["purchases"] == 20
    assert latency["warm"]["from_202_to_thank_you_ms"]["samples"] == 20
    assert [step["purchases"] for step in latency["ramp"]] == [30]
    # After a worker restart: customers from the throughput run, each replayed on purchase.
    assert latency["cold"]["from_202_to_thank_you_ms"]["samples"] == 20

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
