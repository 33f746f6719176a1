"""The funnel of a journey, step by step, for a period: from the ledger, the conversions,
stage entries and consent history — queries over real tables, never workflow state.

A message belongs to the period by its `scheduled_at` (journey time of the send), and its
conversions and unsubscribes go with it, whenever they happened. Test sends are never
counted. A step in a repeat loop is one step: its iterations are added up.

Words as the report uses them:
- `sent`: the provider took it — sent, delivered, opened, clicked, or bounced later;
  `delivered` counts opened and clicked too (an open proves the delivery), `opened` clicked.
- `converted`: purchases credited to the step's messages (storage.conversions: last touch);
  `conversion_rate` = converted / sent; `revenue_per_sent` = revenue / sent.
- `unsubscribed`: a List-Unsubscribe or spam report (SendGrid) or an SMS STOP, credited to
  the message by the same last-touch rule and window as a purchase.
- not sent: `no_consent` (no marketing consent for the channel), `suppressed` (no address,
  no profile, or suppressed after a bounce, spam report or STOP), `capped` (frequency cap),
  `held_out` (the customer is in the global control group, CYKLO_GLOBAL_HOLDOUT_PERCENT),
  `failed` by kind (the reason's text before its first colon), `outcome_unknown`, `in_flight`.
- `quiet_hours_held`: messages quiet hours held and that went on at their end (the ledger's
  `held_since`); counted by what became of them too, since a message is recorded once, when
  it goes out (its `scheduled_at` is then the end of the quiet hours). Messages of journeys
  from before 0008 carry no `held_since` and are not counted here.
- `entered`: customers who entered the journey in the period (their first stage entry,
  stage_entries.entry = 1); per stage, entries into it.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, NamedTuple

from pydantic import BaseModel, computed_field
from sqlalchemy import func
from sqlalchemy import select as grouped
from sqlmodel import Session, col, select

from definition.channels import Channel
from definition.statuses import NO_CONSENT, MessageStatus
from storage.consents import Change, Origin
from storage.conversions import CREDITABLE, Touch, last_touch
from storage.ledger import OUTCOME_UNKNOWN
from storage.models import ConsentRecord, Conversion, Message, StageEntry

WENT_OUT = (
    MessageStatus.SENT,
    MessageStatus.DELIVERED,
    MessageStatus.OPENED,
    MessageStatus.CLICKED,
    MessageStatus.BOUNCED,
)
DELIVERED = (MessageStatus.DELIVERED, MessageStatus.OPENED, MessageStatus.CLICKED)
OPENED = (MessageStatus.OPENED, MessageStatus.CLICKED)

UNSUBSCRIBES = {
    (Origin.SENDGRID, Change.WITHDRAWN): Channel.EMAIL,
    (Origin.SMS_REPLY, Change.SUPPRESSED): Channel.SMS,
}
"""The consent changes that are a customer's own unsubscribe, and the channel they stop (a
hard bounce suppresses email too, but is the address's fault, not the customer's wish)."""


class Period(BaseModel):
    since: datetime | None = None
    until: datetime | None = None
    """Exclusive."""

    @classmethod
    def of(cls, since: date | datetime | None, until: date | datetime | None) -> Period:
        """From what a person writes: a day is midnight UTC, and an `until` day is included
        whole (`--until 2026-03-31` ends at the end of March); a time without a zone is UTC."""
        return cls(since=_moment(since, 0), until=_moment(until, 1))

    def holds(self, moment: datetime) -> bool:
        return (self.since is None or moment >= self.since) and (self.until is None or moment < self.until)


def _moment(value: date | datetime | None, days_after: int) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    if days_after and value == date.max:
        return None  # until the last day there is: no end
    return datetime.combine(value + timedelta(days=days_after), time(0), UTC)


class StepFunnel(BaseModel):
    stage: str
    step: str
    """The step's path in the journey (`prospect/0`), iterations of a repeat added up."""
    template: str
    channel: str
    messages: int = 0
    """Every ledger row of the step in the period, whatever became of it."""
    sent: int = 0
    delivered: int = 0
    opened: int = 0
    clicked: int = 0
    bounced: int = 0
    converted: int = 0
    revenue: float = 0.0
    unsubscribed: int = 0
    quiet_hours_held: int = 0
    """Held by quiet hours and then sent on at their end (also counted by their outcome)."""
    no_consent: int = 0
    suppressed: int = 0
    capped: int = 0
    held_out: int = 0
    failed: dict[str, int] = {}
    """By kind: `template error`, `provider unavailable`, a provider's code, …"""
    outcome_unknown: int = 0
    in_flight: int = 0

    @computed_field  # type: ignore[prop-decorator]
    @property
    def conversion_rate(self) -> float | None:
        return _ratio(self.converted, self.sent)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def revenue_per_sent(self) -> float | None:
        return _ratio(self.revenue, self.sent)


class JourneyFunnel(BaseModel):
    journey_id: str
    period: Period
    currency: str
    entered: int
    """Customers whose first stage entry in the journey fell in the period."""
    stage_entries: dict[str, int]
    steps: list[StepFunnel]

    @computed_field  # type: ignore[prop-decorator]
    @property
    def sent(self) -> int:
        return sum(step.sent for step in self.steps)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def converted(self) -> int:
        return sum(step.converted for step in self.steps)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def revenue(self) -> float:
        return round(sum(step.revenue for step in self.steps), 2)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def conversion_rate(self) -> float | None:
        return _ratio(self.converted, self.sent)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def revenue_per_sent(self) -> float | None:
        return _ratio(self.revenue, self.sent)


def _ratio(part: float, whole: int) -> float | None:
    return part / whole if whole else None


def step_of(path: str) -> str:
    """A ledger step without its repeat iterations (`active/1/flow/1#3` → `active/1/flow/1`)."""
    return path.split("#", 1)[0]


def journey_funnel(session: Session, journey_id: str, period: Period, currency: str) -> JourneyFunnel:
    steps: dict[tuple[str, str, str], StepFunnel] = {}
    first_sent: dict[tuple[str, str, str], datetime] = {}

    def step(stage: str, path: str, template: str, channel: str = "") -> StepFunnel:
        key = (stage, step_of(path), template)
        if key not in steps:
            steps[key] = StepFunnel(stage=stage, step=key[1], template=template, channel=channel)
        return steps[key]

    # SQLAlchemy's own select: SQLModel's is typed for at most four columns.
    rows = session.execute(
        _in_period(
            grouped(
                col(Message.stage),
                col(Message.step),
                col(Message.template),
                col(Message.channel),
                col(Message.status),
                func.count(),
                func.min(Message.scheduled_at),
                func.count(col(Message.held_since)),
            ),
            Message.scheduled_at,
            journey_id,
            period,
        )
        .where(col(Message.test).is_(False))
        .group_by(Message.stage, Message.step, Message.template, Message.channel, Message.status)
    ).all()
    for stage, path, template, channel, status, count, earliest, held in rows:
        funnel = step(stage, path, template, channel)
        key = (stage, funnel.step, template)
        first_sent[key] = min(earliest, first_sent.get(key, earliest))
        count_status(funnel, MessageStatus(status), count)
        funnel.quiet_hours_held += held
    for stage, path, template, status, reason in session.execute(
        _in_period(
            grouped(
                col(Message.stage),
                col(Message.step),
                col(Message.template),
                col(Message.status),
                col(Message.reason),
            ),
            Message.scheduled_at,
            journey_id,
            period,
        ).where(
            col(Message.test).is_(False),
            col(Message.status).in_([MessageStatus.FAILED, MessageStatus.SUPPRESSED]),
        )
    ).all():
        count_reason(step(stage, path, template), MessageStatus(status), reason)
    for stage, path, template, count, revenue in session.execute(
        _in_period(
            grouped(
                col(Conversion.stage),
                col(Conversion.step),
                col(Conversion.template),
                func.count(),
                func.sum(Conversion.amount),
            ),
            Conversion.sent_at,
            journey_id,
            period,
        ).group_by(Conversion.stage, Conversion.step, Conversion.template)
    ).all():
        funnel = step(stage, path, template)
        funnel.converted += count
        funnel.revenue = round(funnel.revenue + float(revenue or 0), 2)
    for message in unsubscribed_messages(session):
        if message.journey_id == journey_id and period.holds(message.scheduled_at):
            step(message.stage, message.step, message.template).unsubscribed += 1
    ordered = sorted(
        steps.values(), key=lambda s: (first_sent.get((s.stage, s.step, s.template), _END), s.step)
    )
    entries = _in_period(
        select(StageEntry.stage, StageEntry.entry, func.count()), StageEntry.entered_at, journey_id, period
    ).group_by(StageEntry.stage, StageEntry.entry)
    stage_entries: dict[str, int] = defaultdict(int)
    entered = 0
    for stage, entry, count in session.exec(entries).all():
        stage_entries[stage] += count
        entered += count if entry == 1 else 0
    return JourneyFunnel(
        journey_id=journey_id,
        period=period,
        currency=currency,
        entered=entered,
        stage_entries=dict(stage_entries),
        steps=ordered,
    )


class JourneysReport(BaseModel):
    """What `cyklo report` prints: the funnel of each journey asked for."""

    period: Period
    journeys: list[JourneyFunnel]

    def as_text(self) -> str:
        if not self.journeys:
            return "no messages in this period"
        return "\n\n".join(as_text(funnel) for funnel in self.journeys)

    def as_csv(self) -> str:
        return as_csv(self.journeys)


def journeys_report(
    session: Session, journey_id: str | None, period: Period, currency: str
) -> JourneysReport:
    """The funnel of `journey_id`, or of every journey with messages in the period."""
    names = [journey_id] if journey_id is not None else journeys_in(session, period)
    return JourneysReport(
        period=period, journeys=[journey_funnel(session, name, period, currency) for name in names]
    )


def journeys_in(session: Session, period: Period) -> list[str]:
    """The journeys with messages in the period, by name."""
    query = select(Message.journey_id).distinct().where(col(Message.test).is_(False))
    if period.since is not None:
        query = query.where(Message.scheduled_at >= period.since)
    if period.until is not None:
        query = query.where(Message.scheduled_at < period.until)
    return sorted(session.exec(query).all())


class Unsubscribed(NamedTuple):
    """The message an unsubscribe is credited to: what the funnel groups it by."""

    journey_id: str
    stage: str
    step: str
    template: str
    scheduled_at: datetime


def unsubscribed_messages(session: Session) -> list[Unsubscribed]:
    """The message each unsubscribe is credited to (last touch on its channel, within the
    message's conversion window); unsubscribes no message's window covers are left out.
    Plain columns, not rows as objects: every unsubscribing customer's messages are read."""
    unsubscribes = [
        (record.customer_id, channel, record.at)
        for record in session.exec(
            select(ConsentRecord).where(
                col(ConsentRecord.change).in_([change for _, change in UNSUBSCRIBES]),
                col(ConsentRecord.origin).in_([origin for origin, _ in UNSUBSCRIBES]),
            )
        ).all()
        if (channel := UNSUBSCRIBES.get((Origin(record.origin), Change(record.change)))) is not None
    ]
    customers = sorted({customer for customer, _, _ in unsubscribes})
    candidates: dict[tuple[str, str], list[tuple[Touch, Unsubscribed]]] = defaultdict(list)
    columns = (
        col(Message.id),
        col(Message.customer_id),
        col(Message.channel),
        col(Message.conversion_window_seconds),
        col(Message.journey_id),
        col(Message.stage),
        col(Message.step),
        col(Message.template),
        col(Message.scheduled_at),
    )
    for chunk in _chunks(customers, 500):
        query = grouped(*columns).where(*CREDITABLE, col(Message.customer_id).in_(chunk))
        for message_id, customer, channel, window, *where in session.execute(query):
            touch = Touch(message_id, where[-1], timedelta(seconds=window))
            candidates[(customer, channel)].append((touch, Unsubscribed(*where)))
    return credit_unsubscribes(unsubscribes, candidates)


def credit_unsubscribes(
    unsubscribes: Iterable[tuple[str, Channel, datetime]],
    candidates: Mapping[tuple[str, str], Sequence[tuple[Touch, Unsubscribed]]],
) -> list[Unsubscribed]:
    """Each unsubscribe (customer, channel, when) credited to the last message of that channel
    to the customer whose window covers it (`candidates` by customer and channel); those no
    window covers are left out."""
    credited = []
    for customer, channel, at in unsubscribes:
        messages = dict(candidates.get((customer, channel), ()))
        credited_to = last_touch(messages, at)
        if credited_to is not None:
            credited.append(messages[credited_to])
    return credited


def count_reason(funnel: StepFunnel, status: MessageStatus, reason: str | None) -> None:
    """Sort one message not sent by its reason, after count_status counted it by status: a
    suppression for want of consent is `no_consent`; a failure is `outcome_unknown` or failed
    by its kind, the reason's text before its first colon (`400: SendGrid rejected …` → 400)."""
    if status is MessageStatus.SUPPRESSED:
        if (reason or "").startswith(NO_CONSENT):
            funnel.suppressed -= 1
            funnel.no_consent += 1
        return
    if status is not MessageStatus.FAILED:
        return
    kind = (reason or "unknown").split(":", 1)[0]
    if kind == OUTCOME_UNKNOWN:
        funnel.outcome_unknown += 1
    else:
        funnel.failed = {**funnel.failed, kind: funnel.failed.get(kind, 0) + 1}


def count_status(funnel: StepFunnel, status: MessageStatus, count: int) -> None:
    """Add `count` messages left in `status` to the step's funnel."""
    funnel.messages += count
    if status in WENT_OUT:
        funnel.sent += count
    if status in DELIVERED:
        funnel.delivered += count
    if status in OPENED:
        funnel.opened += count
    if status is MessageStatus.CLICKED:
        funnel.clicked += count
    if status is MessageStatus.BOUNCED:
        funnel.bounced += count
    if status is MessageStatus.SUPPRESSED:
        funnel.suppressed += count
    if status is MessageStatus.CAPPED:
        funnel.capped += count
    if status is MessageStatus.HELD_OUT:
        funnel.held_out += count
    if status.in_flight:
        funnel.in_flight += count


_END = datetime.max.replace(tzinfo=UTC)


def _in_period(query: Any, column: Any, journey_id: str, period: Period) -> Any:
    table = column.class_
    query = query.where(table.journey_id == journey_id)
    if period.since is not None:
        query = query.where(column >= period.since)
    if period.until is not None:
        query = query.where(column < period.until)
    return query


def _chunks(items: Sequence[str], size: int) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _money(value: float | None) -> str:
    return "-" if value is None else f"{value:,.2f}"


COLUMNS = (
    "stage",
    "step",
    "template",
    "channel",
    "messages",
    "sent",
    "delivered",
    "opened",
    "clicked",
    "bounced",
    "converted",
    "conversion_rate",
    "revenue",
    "revenue_per_sent",
    "unsubscribed",
    "quiet_hours_held",
    "no_consent",
    "suppressed",
    "capped",
    "held_out",
    "failed",
    "outcome_unknown",
    "in_flight",
)


def as_text(funnel: JourneyFunnel) -> str:
    period = _period_text(funnel.period)
    lines = [
        f"journey {funnel.journey_id} ({period}, messages by their send time)",
        f"entered: {funnel.entered} customers; stage entries: "
        + (", ".join(f"{stage} {count}" for stage, count in funnel.stage_entries.items()) or "none"),
        "",
    ]
    header = [
        "step",
        "sent",
        "deliv",
        "open",
        "click",
        "bounce",
        "conv",
        "rate",
        f"revenue {funnel.currency}",
        "per sent",
        "unsub",
        "quiet",
        "not sent",
    ]
    table = [header]
    for step in funnel.steps:
        table.append(
            [
                f"{step.stage} {step.channel} {step.template}".strip(),
                str(step.sent),
                str(step.delivered),
                str(step.opened),
                str(step.clicked),
                str(step.bounced),
                str(step.converted),
                _rate(step.conversion_rate),
                _money(step.revenue),
                _money(step.revenue_per_sent),
                str(step.unsubscribed),
                str(step.quiet_hours_held),
                not_sent_text(step),
            ]
        )
    table.append(
        [
            "total",
            str(funnel.sent),
            "",
            "",
            "",
            "",
            str(funnel.converted),
            _rate(funnel.conversion_rate),
            _money(funnel.revenue),
            _money(funnel.revenue_per_sent),
            "",
            "",
            "",
        ]
    )
    widths = [max(len(row[index]) for row in table) for index in range(len(header))]
    for row in table:
        cells = [row[0].ljust(widths[0])] + [
            cell.rjust(width) for cell, width in zip(row[1:-1], widths[1:-1], strict=True)
        ]
        lines.append(("  ".join(cells) + "  " + row[-1]).rstrip())
    return "\n".join(lines)


def not_sent_text(step: StepFunnel) -> str:
    """What was not sent and why, in words (`1 no consent, 2 failed: 400`); empty when all went."""
    parts = [(step.no_consent, "no consent"), (step.suppressed, "suppressed")]
    parts += [(step.capped, "capped"), (step.held_out, "held out")]
    parts += [(count, f"failed: {kind}") for kind, count in sorted(step.failed.items())]
    parts += [(step.outcome_unknown, OUTCOME_UNKNOWN), (step.in_flight, "in flight")]
    return ", ".join(f"{count} {what}" for count, what in parts if count)


def _period_text(period: Period) -> str:
    if period.since is None and period.until is None:
        return "all time"
    since = period.since.strftime("%Y-%m-%d %H:%M UTC") if period.since else "the start"
    until = period.until.strftime("%Y-%m-%d %H:%M UTC") if period.until else "now"
    return f"from {since} to {until}"


CSV_COLUMNS = ("journey", *COLUMNS)


def as_csv(funnels: Iterable[JourneyFunnel]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(csv_rows(funnels))
    return out.getvalue()


def csv_rows(funnels: Iterable[JourneyFunnel]) -> Iterable[dict[str, Any]]:
    """One row per journey step, by CSV_COLUMNS (`cyklo report --csv` puts them beside the
    other sections' rows)."""
    for funnel in funnels:
        for step in funnel.steps:
            values: dict[str, Any] = step.model_dump()
            values["conversion_rate"] = "" if step.conversion_rate is None else round(step.conversion_rate, 6)
            values["revenue_per_sent"] = (
                "" if step.revenue_per_sent is None else round(step.revenue_per_sent, 2)
            )
            values["failed"] = ";".join(f"{kind}={count}" for kind, count in sorted(step.failed.items()))
            yield {"journey": funnel.journey_id, **{column: values[column] for column in COLUMNS}}
