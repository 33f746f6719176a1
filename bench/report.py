"""The figures as a table for a person (the JSON file keeps everything)."""

from __future__ import annotations

from typing import Any

from rich.table import Table


def table(results: dict[str, Any]) -> Table:
    rows = Table(title="cyklo benchmarks", title_justify="left")
    rows.add_column("benchmark")
    rows.add_column("figure", justify="right")
    rows.add_column("target")
    rows.add_column("met")
    for name, figure, target, met in _rows(results):
        rows.add_row(name, figure, target, "" if met is None else ("yes" if met else "NO"))
    machine = results["machine"]
    rows.caption = f"{machine['cores']} cores, {machine['memory_gib']} GiB, {machine['cpu']}; {results['seconds']} s in all"
    return rows


def markdown(results: dict[str, Any]) -> str:
    """The same table in Markdown, for docs/benchmarks.md."""
    lines = ["| benchmark | figure | target | met |", "| --- | --- | --- | --- |"]
    for name, figure, target, met in _rows(results):
        lines.append(
            f"| {name.strip()} | {figure} | {target} | {'' if met is None else ('yes' if met else 'no')} |"
        )
    return "\n".join(lines)


def _rows(results: dict[str, Any]) -> list[tuple[str, str, str, bool | None]]:
    rows: list[tuple[str, str, str, bool | None]] = []
    if simulation := results.get("simulation"):
        per_year = simulation["seconds_per_customer_year"]
        rows += [
            ("simulation: s per customer-year", f"{per_year:.2f}", "< 2 s", per_year < 2),
            (
                "  without the test server's start",
                f"{simulation['seconds_per_customer_year_without_server_start']:.2f}",
                "",
                None,
            ),
            ("  messages simulated per second", f"{simulation['messages_per_second']:.0f}", "", None),
        ]
    if throughput := results.get("throughput"):
        baseline, cyklo = throughput["baseline"], throughput["cyklo"]
        rows += [
            (
                f"throughput (a) baseline, {baseline['workflows']} workflows",
                f"{baseline['per_second']:.1f}/s",
                "",
                None,
            ),
            (
                f"throughput (b) cyklo, {cyklo['customers']} sign-ups",
                f"{cyklo['per_second']:.1f}/s",
                "",
                None,
            ),
            ("throughput ratio (b)/(a)", f"{throughput['ratio']:.2f}", ">= 0.8", throughput["ratio"] >= 0.8),
        ]
        for process, ms in cyklo["cpu_ms_per_customer"].items():
            base = baseline["cpu_ms_per_workflow"][process]
            rows.append((f"  CPU ms per customer: {process}", f"{ms:.1f} (baseline {base:.1f})", "", None))
    if latency := results.get("latency"):
        for label, run in (("cached customers", latency["warm"]), ("cold worker", latency["cold"])):
            spread = run["from_202_to_thank_you_ms"]
            rows.append(
                (
                    f"latency at {run['rate_per_second']:g}/s, {label}: 202 -> thank-you (ms)",
                    f"p50 {spread['p50']:.0f}  p95 {spread['p95']:.0f}  p99 {spread['p99']:.0f}  max {spread['max']:.0f}",
                    "p99 < 250",
                    spread["p99"] < 250,
                )
            )
        answer = latency["warm"]["api_response_ms"]
        rows.append(
            (
                "  the API's own answer (request -> 202, ms)",
                f"p50 {answer['p50']:.0f}  p95 {answer['p95']:.0f}  p99 {answer['p99']:.0f}  max {answer['max']:.0f}",
                "",
                None,
            )
        )
        for step in latency["ramp"]:
            rows.append(
                (
                    f"  at {step['rate_per_second']:g}/s: p99 ms",
                    f"{step['from_202_to_thank_you_ms']['p99']:.0f}",
                    "",
                    None,
                )
            )
        crossing = latency["p99_over_1s_at_rate"]
        rows.append(("  p99 over 1 s from", f"{crossing:g}/s" if crossing else "not reached", "", None))
    if memory := results.get("memory"):
        rss = memory["rss_mib"]
        sizes = [key for key in rss if key.isdigit()]
        rows += [(f"worker RSS, {size} customers asleep", f"{rss[size]:.0f} MiB", "", None) for size in sizes]
        rows.append(
            (
                "  growth",
                f"{memory['growth_percent']:+.1f} %",
                "within 10 %",
                abs(memory["growth_percent"]) <= 10,
            )
        )
    if history := results.get("history"):
        rows += [
            (
                f"history after {history['purchases']} purchases",
                f"{history['runs']} runs, largest {history['largest_run']['events']} events / {history['largest_run']['kib']:.0f} KiB",
                "bounded by continue-as-new",
                # Temporal suggests continuing as new at 4,096 events.
                history["largest_run"]["events"] < 4096,
            )
        ]
    if profile := results.get("profile"):
        if "error" in profile:
            rows.append(("worker profile", profile["error"], "", None))
        else:
            top = profile["self"][0] if profile["self"] else {"function": "-", "percent": 0}
            rows.append(
                ("worker profile: top function (self)", f"{top['function']} {top['percent']}%", "", None)
            )
    return rows
