"""The fault run's figures as a table for a person, and as Markdown for docs/reliability.md."""

from __future__ import annotations

from typing import Any

from rich.table import Table

COUNTS = (
    ("lost", "messages due, never delivered"),
    ("duplicated", "messages delivered more than once or not due"),
    ("wrongly_recorded", "ledger rows contradicting the provider"),
    ("outcome_unknown", "sends of unknown outcome, delivered, still recorded failed after reconcile"),
    ("wedged", "journeys wedged"),
    ("events_lost", "events answered 202, not in the journey"),
)


def rows(results: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(what, figure, must be) in the order a reader checks them."""
    counts, load = results["counts"], results["load"]
    found = [
        ("customers", f"{counts['customers']} in {len(results['patterns'])} event patterns", ""),
        ("events answered 202", f"{load['accepted']} of {load['events']}", "all"),
        (
            "shop's answers (retried until 202)",
            ", ".join(f"{k}: {v}" for k, v in sorted(load["answers"].items())),
            "",
        ),
    ]
    found += [(f"fault: {kind}", f"{n}x", "") for kind, n in sorted(results["fault_counts"].items())]
    found.append(("messages due / delivered", f"{counts['messages_due']} / {counts['delivered']}", ""))
    found += [(label, str(counts[name]), "0") for name, label in COUNTS]
    found.append(("events never answered 202", str(load["never_accepted"]), "0"))
    allowed = "0 (--strict)" if results["options"].get("strict") else "allowed (at most once)"
    found += [
        (
            "sends of unknown outcome (recorded failed), not delivered",
            str(counts["unknown_not_delivered"]),
            allowed,
        ),
        ("sends of unknown outcome, repaired by a delivery webhook", str(counts["repaired_by_webhook"]), ""),
        ("sends of unknown outcome, repaired by `cyklo reconcile`", str(counts["repaired_by_reconcile"]), ""),
    ]
    return found


def table(results: dict[str, Any]) -> Table:
    shown = Table(title="cyklo fault suite", title_justify="left")
    shown.add_column("what")
    shown.add_column("figure", justify="right")
    shown.add_column("must be")
    for what, figure, must in rows(results):
        shown.add_row(what, figure, must)
    machine = results["machine"]
    shown.caption = (
        f"seed {results['seed']}; {machine['cores']} cores, {machine['cpu']}; {results['seconds']} s in all; "
        + ("PASSED" if results["failures"] == 0 else f"FAILED: {results['failures']}")
    )
    return shown


def markdown(results: dict[str, Any]) -> str:
    lines = ["| what | figure | must be |", "| --- | --- | --- |"]
    lines += [f"| {what.strip()} | {figure} | {must} |" for what, figure, must in rows(results)]
    return "\n".join(lines)
