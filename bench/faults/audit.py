"""After the load: every customer's ledger against what the emulator received and what the
simulation predicted, and every journey against what it was sent.

The emulator is the truth about deliveries (it is the provider). A ledger row is matched
to what it sent by the message id SendGrid carries back in `custom_args`, or by the SMS's
sid; an SMS without a matching row (its answer was lost) is put against the customer's
SMS rows that never learnt their sid, since each customer has their own phone number.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from bench.faults.prediction import Expected, MessageKey
from definition.statuses import FINAL, REACHED_PROVIDER, MessageStatus
from emulator.server import RecordedMessage
from storage.ledger import OUTCOME_UNKNOWN, REPAIRED


@dataclass(frozen=True)
class Row:
    """A ledger row as the audit needs it."""

    id: int
    customer_id: str
    key: MessageKey
    status: str
    reason: str | None
    provider_message_id: str | None


@dataclass
class Counts:
    customers: int = 0
    messages_due: int = 0
    """Predicted to reach the provider."""
    delivered: int = 0
    """Reached the emulator."""
    lost: int = 0
    """Due but never reached the provider."""
    duplicated: int = 0
    """Reached the provider more often than predicted (a step sent twice, or a message not due)."""
    wrongly_recorded: int = 0
    """The ledger contradicts the provider (says sent, never arrived; failed for a known reason
    but arrived; never settled), or a refusal other than predicted (capped, suppressed)."""
    outcome_unknown: int = 0
    """Recorded failed with 'outcome unknown' and in fact delivered, after the delivery
    webhooks and `cyklo reconcile` had their say: evidence the provider gave and cyklo did
    not take, so a failure."""
    unknown_not_delivered: int = 0
    """Recorded failed with 'outcome unknown' and in fact never delivered: the price of never
    sending twice when a worker dies between claiming a send and the provider's answer. Not
    in `lost` (the ledger tells the truth: it did not know), but the customer did not get it."""
    repaired_by_webhook: int = 0
    """Were 'outcome unknown', and a delivery webhook has since set the status the provider reported."""
    repaired_by_reconcile: int = 0
    """Were 'outcome unknown', and `cyklo reconcile` found them in the provider's message list."""
    wedged: int = 0
    """Journeys that cannot go on: a failing workflow task, an activity still retrying, no answer to a query."""
    events_lost: int = 0
    """Answered 202, yet not in the journey's record of events."""
    problems: list[str] = field(default_factory=list)
    """One line per non-zero finding, naming the customer, for the person reading the JSON."""

    FAILING = ("lost", "duplicated", "wrongly_recorded", "outcome_unknown", "wedged", "events_lost")
    UNKNOWN = ("unknown_not_delivered",)

    def failures(self, strict: bool = False) -> int:
        return sum(getattr(self, name) for name in self.FAILING + (self.UNKNOWN if strict else ()))

    def as_json(self) -> dict[str, Any]:
        return {name: value for name, value in vars(self).items()}


def customer_of(message: RecordedMessage, customer_by_phone: dict[str, str]) -> str | None:
    if message.channel == "email":
        return message.custom_args.get("customer_id")
    return customer_by_phone.get(message.to)


def compare(
    customer_id: str,
    expected: Expected,
    rows: list[Row],
    deliveries: list[RecordedMessage],
    counts: Counts,
) -> None:
    """One customer: add what differs to `counts`."""
    by_id = {row.id: row for row in rows}
    by_sid = {row.provider_message_id: row for row in rows if row.provider_message_id}
    arrived: Counter[int] = Counter()
    unmatched_sms = 0
    for message in deliveries:
        row_id = message.custom_args.get("cyklo_message_id") if message.channel == "email" else None
        if row_id is not None and row_id.isdigit() and int(row_id) in by_id:
            arrived[int(row_id)] += 1
        elif message.provider_id in by_sid:
            arrived[by_sid[message.provider_id].id] += 1
        elif message.channel == "sms":
            unmatched_sms += 1
        else:
            counts.duplicated += 1
            counts.problems.append(f"{customer_id}: an email arrived that no ledger row sent")
    for row in rows:
        if unmatched_sms and row.key[1] == "sms" and not row.provider_message_id and not arrived[row.id]:
            arrived[row.id] += 1
            unmatched_sms -= 1
    if unmatched_sms:
        counts.duplicated += unmatched_sms
        counts.problems.append(f"{customer_id}: {unmatched_sms} SMS arrived that no ledger row sent")

    delivered: Counter[MessageKey] = Counter()
    refused: Counter[tuple[MessageKey, str]] = Counter()
    unknown_missing: Counter[MessageKey] = Counter()
    for row in rows:
        times = arrived[row.id]
        delivered[row.key] += times
        if not times and row.status == MessageStatus.FAILED and (row.reason or "").startswith(OUTCOME_UNKNOWN):
            unknown_missing[row.key] += 1
        _check_record(customer_id, row, times, counts)
        if not times and row.status not in (*REACHED_PROVIDER, MessageStatus.FAILED):
            refused[(row.key, row.status)] += 1

    due = expected.sent()
    counts.customers += 1
    counts.messages_due += sum(due.values())
    counts.delivered += sum(delivered.values())
    for key in due.keys() | delivered.keys():
        if delivered[key] < due[key]:
            unknown = min(unknown_missing[key], due[key] - delivered[key])
            counts.unknown_not_delivered += unknown
            if delivered[key] + unknown == due[key]:
                continue
            counts.lost += due[key] - delivered[key] - unknown
            recorded = "; ".join(f"{row.status} ({row.reason})" for row in rows if row.key == key) or "no row"
            counts.problems.append(f"{customer_id}: {'/'.join(key)} due, not delivered; ledger: {recorded}")
        elif delivered[key] > due[key]:
            counts.duplicated += delivered[key] - due[key]
            counts.problems.append(
                f"{customer_id}: {'/'.join(key)} delivered {delivered[key]} times, due {due[key]}"
            )
    predicted_refusals = Counter({item: n for item, n in expected.rows.items() if item[1] != "sent"})
    for (key, status), n in (refused - predicted_refusals).items():
        counts.wrongly_recorded += n
        counts.problems.append(f"{customer_id}: {'/'.join(key)} recorded {status}, not predicted")


def _check_record(customer_id: str, row: Row, times: int, counts: Counts) -> None:
    label = f"{customer_id}: {'/'.join(row.key)} (ledger row {row.id})"
    unknown = (row.reason or "").startswith(OUTCOME_UNKNOWN)
    if row.status not in FINAL:
        counts.wrongly_recorded += 1
        counts.problems.append(f"{label} still {row.status} after the load")
    elif row.status in REACHED_PROVIDER and not times:
        counts.wrongly_recorded += 1
        counts.problems.append(f"{label} recorded {row.status}, never reached the provider")
    elif row.status == MessageStatus.FAILED and times:
        if unknown:
            counts.outcome_unknown += 1
            counts.problems.append(f"{label} delivered, still recorded failed ({row.reason})")
        else:
            counts.wrongly_recorded += 1
            counts.problems.append(f"{label} recorded failed ({row.reason}), yet delivered")
    elif row.status in REACHED_PROVIDER and (row.reason or "").startswith(REPAIRED):
        # Delivery evidence settled a send of unknown outcome; the note names which.
        if (row.reason or "").startswith(f"{REPAIRED} reconcile"):
            counts.repaired_by_reconcile += 1
        else:
            counts.repaired_by_webhook += 1
