"""The fault suite: a small run on the real stack finds nothing lost, duplicated, wrongly
recorded or wedged; its audit counts what it should; its database gate really cuts off.

The small run is `cyklo faults` itself (separate processes: Temporal dev server, worker,
API; PostgreSQL behind the gate; the emulator), so what passes here is what the figures in
docs/reliability.md are made of. Nothing asserts a time.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from bench.faults.audit import Counts, Row, compare, customer_of
from bench.faults.gate import DatabaseGate
from bench.faults.prediction import Expected, MessageKey
from definition.channels import Channel
from emulator.server import RecordedMessage

ROOT = Path(__file__).resolve().parent.parent
POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
WELCOME: MessageKey = ("lifecycle", "email", "welcome")
THANK_YOU_SMS: MessageKey = ("lifecycle", "sms", "thank_you")
PHONE = "+48601000007"


def postgres_or_skip() -> None:
    try:
        psycopg.connect(POSTGRES, connect_timeout=5).close()
    except psycopg.OperationalError as error:
        pytest.skip(f"PostgreSQL is not reachable at {POSTGRES}: {error}")


def test_small_fault_run_loses_duplicates_and_wedges_nothing(tmp_path: Path) -> None:
    postgres_or_skip()
    output = tmp_path / "faults.json"
    finished = subprocess.run(
        [
            sys.executable, "-m", "bench.faults",
            "--customers", "30", "--kills", "3", "--temporal-restarts", "1", "--database-outage", "3",
            "--storm", "15", "--held", "2", "--timeouts", "0", "--rate", "6", "--settle", "240",
            "--seed", "8", "--output", str(output),
        ],
        cwd=ROOT, capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    results = json.loads(output.read_text())
    counts, load = results["counts"], results["load"]

    assert results["seed"] == 8
    assert results["fault_counts"]["worker kill -9"] == 3
    assert results["fault_counts"]["Temporal dev server restart"] == 1
    assert results["fault_counts"]["database outage"] == 1
    assert {"provider 500 storm", "provider 503 storm"} <= set(results["fault_counts"])
    # 30 customers over 5 patterns of 1, 2, 3, 3 and 1 events.
    assert load["events"] == 60
    assert load["accepted"] == 60
    assert counts["customers"] == 30
    # Welcome for 24, thank-you email and SMS for 18, loyalty or VIP welcome for 12,
    # thank-you and VIP welcome for the 6 first orders of 2,400 PLN.
    assert counts["messages_due"] == 24 + 18 * 2 + 12 + 6 * 2
    # A kill between claiming a send and the provider taking it leaves "outcome unknown",
    # not resent (at most once): every other message due was delivered.
    assert counts["delivered"] + counts["unknown_not_delivered"] == counts["messages_due"]
    assert counts["delivered"] > counts["messages_due"] // 2
    for name in ("lost", "duplicated", "wrongly_recorded", "outcome_unknown", "wedged", "events_lost"):
        assert counts[name] == 0, counts["problems"]
    # Every send of unknown outcome the provider took was settled by its evidence.
    assert results["reconciliation"]["still_unknown"] == counts["unknown_not_delivered"]
    assert "messages delivered more than once or not due" in finished.stdout


def test_gate_refuses_the_database_while_cut_and_lets_it_through_again() -> None:
    postgres_or_skip()
    with DatabaseGate("127.0.0.1", 5432) as gate:
        url = f"postgresql://postgres@127.0.0.1:{gate.port}/test"
        with psycopg.connect(url, connect_timeout=5) as before:
            assert before.execute("select 1").fetchone() == (1,)
            gate.cut()
            with pytest.raises(psycopg.OperationalError):
                before.execute("select 1")
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(url, connect_timeout=5)
        gate.restore()
        with psycopg.connect(url, connect_timeout=5) as after:
            assert after.execute("select 1").fetchone() == (1,)


# --- the audit, on its own --------------------------------------------------------------


def email(row_id: int, customer: str = "c-1") -> RecordedMessage:
    return RecordedMessage(
        channel=Channel.EMAIL,
        provider_id=f"sg-{row_id}",
        to=f"{customer}@example.com",
        sender="shop@example.com",
        custom_args={"cyklo_message_id": str(row_id), "customer_id": customer},
        received_at=datetime.now(UTC),
    )


def sms(sid: str) -> RecordedMessage:
    return RecordedMessage(channel=Channel.SMS, provider_id=sid, to=PHONE, sender="+48500000000", body="Dzięki!")


def row(row_id: int, key: MessageKey, status: str, reason: str | None = None, sid: str | None = None) -> Row:
    return Row(row_id, "c-1", key, status, reason, sid)


def expect(*items: tuple[MessageKey, str]) -> Expected:
    return Expected(Counter(items))


def audited(expected: Expected, rows: list[Row], deliveries: list[RecordedMessage]) -> Counts:
    counts = Counts()
    compare("c-1", expected, rows, deliveries, counts)
    return counts


def test_audit_finds_nothing_when_ledger_provider_and_prediction_agree() -> None:
    counts = audited(
        expect((WELCOME, "sent"), (THANK_YOU_SMS, "sent")),
        [row(1, WELCOME, "delivered"), row(2, THANK_YOU_SMS, "sent", sid="SM1")],
        [email(1), sms("SM1")],
    )
    assert (counts.failures(), counts.messages_due, counts.delivered) == (0, 2, 2)


def test_audit_counts_a_message_due_that_never_arrived_as_lost() -> None:
    counts = audited(expect((WELCOME, "sent")), [row(1, WELCOME, "failed", "provider unavailable: 503")], [])
    assert (counts.lost, counts.wrongly_recorded) == (1, 0)
    assert counts.problems == [
        "c-1: lifecycle/email/welcome due, not delivered; ledger: failed (provider unavailable: 503)"
    ]


def test_audit_counts_a_second_delivery_of_one_row_as_a_duplicate() -> None:
    counts = audited(expect((WELCOME, "sent")), [row(1, WELCOME, "sent")], [email(1), email(1)])
    assert (counts.duplicated, counts.lost) == (1, 0)


def test_audit_counts_sent_without_a_delivery_as_wrongly_recorded() -> None:
    counts = audited(expect((WELCOME, "sent")), [row(1, WELCOME, "sent")], [])
    assert (counts.wrongly_recorded, counts.lost) == (1, 1)


def test_audit_counts_a_row_left_sending_as_wrongly_recorded() -> None:
    counts = audited(expect((WELCOME, "sent")), [row(1, WELCOME, "sending")], [email(1)])
    assert (counts.wrongly_recorded, counts.lost) == (1, 0)


def test_audit_fails_an_unknown_outcome_the_provider_delivered_and_reconcile_left_failed() -> None:
    unknown = "outcome unknown: SendGrid did not answer: TimeoutError; not resent, to avoid a duplicate"
    counts = audited(expect((WELCOME, "sent")), [row(1, WELCOME, "failed", unknown)], [email(1)])
    assert (counts.outcome_unknown, counts.lost, counts.failures()) == (1, 0, 1)
    assert "still recorded failed" in counts.problems[0]


def test_audit_counts_an_unknown_outcome_settled_by_reconcile_apart_from_webhooks() -> None:
    repaired = "repaired by reconcile: twilio delivered (SM9) (outcome unknown before)"
    counts = audited(
        expect((THANK_YOU_SMS, "sent")),
        [row(2, THANK_YOU_SMS, "delivered", repaired, sid="SM9")],
        [sms("SM9")],
    )
    assert (counts.repaired_by_reconcile, counts.repaired_by_webhook, counts.failures()) == (1, 0, 0)


def test_audit_counts_an_unknown_outcome_settled_by_delivery_evidence_as_repaired() -> None:
    repaired = "repaired by webhook: sendgrid delivered: 250 OK (outcome unknown before)"
    counts = audited(expect((WELCOME, "sent")), [row(1, WELCOME, "delivered", repaired)], [email(1)])
    assert (counts.repaired_by_webhook, counts.outcome_unknown, counts.failures()) == (1, 0, 0)


def test_audit_counts_an_unknown_outcome_never_delivered_apart_from_the_lost() -> None:
    unknown = "outcome unknown: an earlier attempt stopped during the provider call; not resent"
    counts = audited(expect((WELCOME, "sent")), [row(1, WELCOME, "failed", unknown)], [])
    assert (counts.unknown_not_delivered, counts.lost, counts.failures()) == (1, 0, 0)
    assert counts.failures(strict=True) == 1


def test_audit_puts_an_sms_whose_answer_was_lost_against_the_row_without_a_sid() -> None:
    unknown = "outcome unknown: an earlier attempt stopped during the provider call; not resent"
    counts = audited(
        expect((THANK_YOU_SMS, "sent")), [row(2, THANK_YOU_SMS, "failed", unknown)], [sms("SM9")]
    )
    assert (counts.outcome_unknown, counts.duplicated, counts.lost) == (1, 0, 0)
    assert customer_of(sms("SM9"), {PHONE: "c-1"}) == "c-1"


def test_audit_counts_a_refusal_other_than_predicted_as_wrongly_recorded() -> None:
    counts = audited(expect((WELCOME, "capped")), [row(1, WELCOME, "suppressed", "no marketing consent")], [])
    assert counts.wrongly_recorded == 1
