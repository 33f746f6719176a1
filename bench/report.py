"""The figures as a table for a person (the JSON file keeps everything)."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from bench.cost import cost_line

Row = tuple[str, str, str, str, str, bool | None]
"""benchmark, figure, baseline, ratio, target, met"""


def table(results: dict[str, Any]) -> Table:
    rows = Table(title="cyklo benchmarks", title_justify="left")
    for column in ("benchmark", "figure", "baseline", "ratio", "target", "met"):
        rows.add_column(column, justify="right" if column in ("figure", "ratio") else "left")
    for name, figure, baseline, ratio, target, met in _rows(results):
        rows.add_row(name, figure, baseline, ratio, target, "" if met is None else ("yes" if met else "NO"))
    machine = results["machine"]
    rows.caption = (
        f"{machine['cores']} cores, {machine['memory_gib']} GiB, {machine['cpu']}, load {machine['load']}; "
        f"{results['seconds']} s in all; commit {results.get('commit', '?')}; "
        f"workflow sandbox {'on' if results.get('workflow_sandbox') else 'off'}"
    )
    return rows


def markdown(results: dict[str, Any]) -> str:
    """The same table in Markdown, for docs/benchmarks.md, with what produced each row."""
    made = (
        f"`{results.get('command', 'cyklo bench')}` | {results['when'][:10]} | {results.get('commit', '?')}"
    )
    lines = [
        "| benchmark | figure | baseline | ratio | target | met | command | date | commit |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, figure, baseline, ratio, target, met in _rows(results):
        shown = "" if met is None else ("yes" if met else "no")
        lines.append(f"| {name.strip()} | {figure} | {baseline} | {ratio} | {target} | {shown} | {made} |")
    return "\n".join(lines)


def _spread(figure: dict[str, float], digits: int = 2) -> str:
    return f"{figure['median']:.{digits}f} ({figure['min']:.{digits}f}–{figure['max']:.{digits}f})"


def _cpu(explained: dict[str, Any]) -> str:
    return "  ".join(
        f"{name} {ms['user']:.1f}+{ms['system']:.1f}" for name, ms in explained["cpu_ms_per_customer"].items()
    )


TEMPORAL_COUNTS = ("history_events", "history_kib", "state_writes", "history_appends", "kib_written")


def _explained(label: str, cyklo: dict[str, Any], baseline: dict[str, Any]) -> list[Row]:
    """What a customer cost, cyklo beside raw Temporal, from one round."""
    temporal, base_temporal = cyklo["temporal_per_customer"], baseline["temporal_per_customer"]
    database = cyklo["cyklo_db_per_customer"]
    return [
        (f"  {label}: CPU ms per customer, user+system", _cpu(cyklo), _cpu(baseline), "", "", None),
        (
            f"  {label}: CPU ms per customer, all processes",
            f"{cyklo['cpu_ms_per_customer_total']:.1f} ({cyklo['cores_busy']:.2f} cores busy)",
            f"{baseline['cpu_ms_per_customer_total']:.1f} ({baseline['cores_busy']:.2f} cores busy)",
            f"{cyklo['cpu_ms_per_customer_total'] / max(baseline['cpu_ms_per_customer_total'], 0.1):.2f}",
            "",
            None,
        ),
        (
            f"  {label}: Temporal per customer (history events / history KiB / state writes / history appends"
            " / KiB written)",
            " / ".join(
                f"{temporal[k]:g}"
                for k in TEMPORAL_COUNTS
            ),
            " / ".join(
                f"{base_temporal[k]:g}"
                for k in TEMPORAL_COUNTS
            ),
            "",
            "",
            None,
        ),
        (
            f"  {label}: cyklo database per customer (commits / rollbacks / write lock held ms / waited ms;"
            " the lock busy)",
            f"{database['commits']:g} / {database['rollbacks']:g} / {database['write_lock_held_ms']:g}"
            f" / {database['write_lock_wait_ms']:g}; {cyklo['write_lock_busy']:.0%}",
            "",
            "",
            "",
            None,
        ),
    ]


def _rows(results: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    if simulation := results.get("simulation"):
        per_year = simulation["seconds_per_customer_year"]
        rows += [
            ("simulation: s per customer-year", f"{per_year:.2f}", "", "", "< 2 s", per_year < 2),
            (
                "  without the test server's start",
                f"{simulation['seconds_per_customer_year_without_server_start']:.2f}",
                "", "", "", None,
            ),
            ("  messages simulated per second", f"{simulation['messages_per_second']:.0f}", "", "", "", None),
        ]  # fmt: skip
    for key, label in (
        ("throughput", "throughput, 1 worker, SQLite"),
        ("scale_out", "throughput, 2 workers + 2 APIs, PostgreSQL"),
    ):
        if measured := results.get(key):
            rows += _throughput(label, measured)
    if latency := results.get("latency"):
        for kind, label in (("cached", "cached customers"), ("cold", "cold worker")):
            run = latency[kind]
            rows.append(
                (
                    f"latency at {latency['rate_per_second']:g}/s, {label}: p99 ms, median of {len(run['rounds'])} rounds (min–max)",
                    _spread(run["cyklo_p99_ms"], 0),
                    _spread(run["baseline_p99_ms"], 0),
                    _spread(run["p99_ratio"]),
                    "p99 < 250" if kind == "cached" else "p99 < 300",
                    run["cyklo_p99_ms"]["median"] < (250 if kind == "cached" else 300),
                )
            )
            for pair in run["rounds"]:
                own, base = (
                    pair["cyklo"]["from_202_to_thank_you_ms"],
                    pair["baseline"]["signal_to_activity_ms"],
                )
                rows.append(
                    (
                        f"  round {pair['round']}: p50 / p99 ms",
                        f"{own['p50']:.0f} / {own['p99']:.0f}",
                        f"{base['p50']:.0f} / {base['p99']:.0f}",
                        f"{pair['p50_ratio']:.2f} / {pair['p99_ratio']:.2f}",
                        "", None,
                    )
                )  # fmt: skip
            first = run["rounds"][0]
            rows += _explained(
                f"{label}, per purchase", first["cyklo"]["explained"], first["baseline"]["explained"]
            )
        for kind, steps in latency["ramp"].items():
            for step in steps:
                rows.append(
                    (
                        f"  at {step['rate_per_second']:g}/s, {kind}: p99 ms",
                        f"{step['from_202_to_thank_you_ms']['p99']:.0f}",
                        "", "", "", None,
                    )
                )  # fmt: skip
            crossing = latency["p99_over_1s_at_rate"][kind]
            per_core = f" ({crossing / latency['cores']:g}/s per core)" if crossing else ""
            rows.append(
                (
                    f"  p99 over 1 s from, {kind}",
                    f"{crossing:g}/s{per_core}" if crossing else "not reached",
                    "", "", "", None,
                )
            )  # fmt: skip
    if memory := results.get("memory"):
        rss = memory["rss_mib"]
        sizes = [key for key in rss if key.isdigit()]
        rows += [
            (f"worker RSS, {size} customers asleep", f"{rss[size]:.0f} MiB", "", "", "", None)
            for size in sizes
        ]
        rows.append(
            (
                "  growth",
                f"{memory['growth_percent']:+.1f} %",
                "",
                "",
                "within 10 %",
                abs(memory["growth_percent"]) <= 10,
            )
        )
    if base := results.get("base"):
        rows.append(
            (
                f"base: {base['customers']} customers signed up and asleep",
                f"{base['sign_up_seconds']:.0f} s ({base['sign_ups_per_second']:.1f}/s)",
                "", "", "", None,
            )
        )  # fmt: skip
        for step in base["steps"]:
            rows.append(
                (
                    f"  at {step['customers']}: worker RSS / Temporal DB / cyklo DB",
                    f"{step['worker_rss_mib']:.0f} MiB / {step['temporal_db_kib_per_customer']:.1f} KiB / "
                    f"{step['cyklo_db_kib_per_customer']:.1f} KiB per customer",
                    "", "", "", None,
                )
            )  # fmt: skip
        rows.append(
            ("  worker RSS growth, first step to last", f"{base['rss_growth_percent']:+.1f} %", "", "", "within 10 %",
             abs(base["rss_growth_percent"]) <= 10)
        )  # fmt: skip
    if history := results.get("history"):
        rows += [
            (
                f"history after {history['purchases']} purchases",
                f"{history['runs']} runs, largest {history['largest_run']['events']} events / {history['largest_run']['kib']:.0f} KiB",
                "", "",
                "bounded by continue-as-new",
                # Temporal suggests continuing as new at 4,096 events.
                history["largest_run"]["events"] < 4096,
            )
        ]  # fmt: skip
    if profile := results.get("profile"):
        if "error" in profile:
            rows.append(("worker profile", profile["error"], "", "", "", None))
        else:
            top = profile["self"][0] if profile["self"] else {"function": "-", "percent": 0}
            rows.append(
                (
                    "worker profile: top function (self)",
                    f"{top['function']} {top['percent']}%",
                    "",
                    "",
                    "",
                    None,
                )
            )
    if cost := cost_line(results):
        rows += [
            ("cost: CPU-s per 1,000 customer-months, lifecycle journey", f"{cost['cpu_seconds_per_1000_customer_months']:.1f}", "", "", "", None),
            (f"  customers per 2-core box at {cost['headroom_percent']} % headroom (CPU only)", f"{cost['customers_per_box']:,}", "", "", "", None),
        ]  # fmt: skip
    return rows


def _throughput(label: str, measured: dict[str, Any]) -> list[Row]:
    rows: list[Row] = [
        (
            f"{label}: customers/s, median of {len(measured['rounds'])} rounds of {measured['customers_per_round']} (min–max)",
            _spread(measured["cyklo_per_second"], 1),
            _spread(measured["baseline_per_second"], 1),
            _spread(measured["ratio"]),
            ">= 0.85",
            measured["ratio"]["median"] >= 0.85,
        )
    ]
    for pair in measured["rounds"]:
        rows.append(
            (f"  round {pair['round']}", f"{pair['cyklo']['per_second']:.1f}/s", f"{pair['baseline']['per_second']:.1f}/s",
             f"{pair['ratio']:.2f}", "", None)
        )  # fmt: skip
    first = measured["rounds"][0]
    return rows + _explained("round 1", first["cyklo"]["explained"], first["baseline"]["explained"])
