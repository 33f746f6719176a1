"""Importing a customer base: rows read with their line numbers, validated field by field, and
the lifecycle journey's `imported` entries choosing a stage by the seeded metrics."""

from __future__ import annotations

import codecs
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from definition.events import EventType
from definition.metrics import Metrics
from definition.model import Journey
from ingestion.imports import (
    BadRow,
    ImportedCustomer,
    ImportedOrder,
    RawRow,
    csv_rows,
    json_rows,
    parse_customer,
    parse_order,
    read_rows,
)
from tests.unit.kit import LIFECYCLE, Drive, at
from workflows.interface import MetricsSeed

pytestmark = pytest.mark.unit

HEADER = "id,email,first_name,locale,consent_email,consent_sms,consent_source,consent_at,signed_up_at\n"


def test_csv_rows_carry_the_line_they_start_on_even_after_a_quoted_newline() -> None:
    text = (
        HEADER
        + 'c-1,ala@example.com,"Ala\nMaria",pl,true,false,checkout,2023-01-05T10:00:00+01:00,\n\nc-2,,Bob,en,,,,,\n'
    )

    rows = list(csv_rows(text.splitlines(keepends=True)))

    assert [(row.line, row.values["id"]) for row in rows if isinstance(row, RawRow)] == [
        (2, "c-1"),
        (5, "c-2"),
    ]
    assert "email" not in rows[1].values, "an empty cell is a value left out"  # type: ignore[union-attr]


def test_a_csv_row_with_too_many_columns_is_bad_at_its_line() -> None:
    rows = list(csv_rows([HEADER, "c-1,a@example.com,Ala,pl,true,false,x,,,extra\n"]))

    assert rows == [BadRow(2, "row", "10 columns where the header has 9")]


def test_a_line_that_is_not_utf8_is_a_bad_row_and_the_rest_is_read(tmp_path: Path) -> None:
    path = tmp_path / "base.csv"
    path.write_bytes(codecs.BOM_UTF8 + b"id,first_name\nc-1,Ala\nc-2,Gra\xbfyna\nc-3,Ewa\n")

    rows = list(read_rows(path))

    assert [(type(row).__name__, row.line) for row in rows] == [("RawRow", 2), ("BadRow", 3), ("RawRow", 4)]
    assert rows[1] == BadRow(3, "row", "not UTF-8 text: save the file as UTF-8")
    assert rows[0].values == {"id": "c-1", "first_name": "Ala"}  # type: ignore[union-attr]


def test_json_lines_that_are_not_objects_are_bad_rows_and_the_rest_are_read() -> None:
    rows = list(json_rows(['{"id": "c-1"}\n', "[1, 2]\n", "{oops\n", '{"id": "c-2"}\n']))

    assert [(type(row).__name__, row.line) for row in rows] == [
        ("RawRow", 1),
        ("BadRow", 2),
        ("BadRow", 3),
        ("RawRow", 4),
    ]


def test_a_customer_keeps_consents_with_their_source_and_time_and_the_sign_up_as_history() -> None:
    row = RawRow(
        2,
        {
            "id": "c-1",
            "email": "ala@example.com",
            "locale": "pl",
            "consent_email": "true",
            "consent_sms": "no",
            "consent_source": "checkout 2023",
            "consent_at": "2023-01-05T10:00:00+01:00",
            "signed_up_at": "2022-12-01T09:00:00+01:00",
        },
    )

    customer = parse_customer(row)

    assert isinstance(customer, ImportedCustomer)
    consents = customer.profile.consents
    assert (consents.email, consents.sms, consents.source) == (True, False, "checkout 2023")
    assert consents.at == at("2023-01-05T10:00:00+01:00")
    assert customer.signed_up is not None
    assert (customer.signed_up.event_id, customer.signed_up.type) == ("signed_up:c-1", "signed_up")


def test_nested_consents_from_json_lines_are_taken_as_they_are() -> None:
    customer = parse_customer(RawRow(1, {"id": "c-1", "consents": {"email": True, "source": "newsletter"}}))

    assert isinstance(customer, ImportedCustomer)
    assert (customer.profile.consents.email, customer.profile.consents.source) == (True, "newsletter")


def test_bad_customer_fields_are_each_named_with_the_file_and_line() -> None:
    problems = parse_customer(RawRow(7, {"id": "c-1", "email": "ala-at-example", "locale": "de"}))

    assert isinstance(problems, list)
    assert [problem.text("base.csv") for problem in problems] == [
        "base.csv:7: email: value is not a valid email address: An email address must have an @-sign.",
        "base.csv:7: locale: unsupported locale 'de': use one of pl, en",
    ]


def test_an_unknown_column_is_named_rather_than_dropped() -> None:
    problems = parse_customer(RawRow(3, {"id": "c-1", "emial": "a@example.com"}))

    assert isinstance(problems, list)
    assert [(problem.field, problem.message) for problem in problems] == [
        ("emial", "Extra inputs are not permitted")
    ]


def order(**fields: object) -> dict[str, object]:
    return {
        "order_id": "o-1",
        "customer_id": "c-1",
        "amount": "250.00",
        "currency": "PLN",
        "occurred_at": "2025-06-01T10:00:00+02:00",
        **fields,
    }


def test_an_order_is_a_purchase_under_its_order_id_with_the_amount_as_a_number() -> None:
    parsed = parse_order(RawRow(2, order(category="shoes")), "PLN")

    assert isinstance(parsed, ImportedOrder)
    event = parsed.event
    assert (event.event_id, event.customer_id, event.type) == ("o-1", "c-1", EventType.PURCHASE)
    assert event.properties == {"order_id": "o-1", "amount": 250.0, "category": "shoes"}
    assert event.occurred_at == datetime(2025, 6, 1, 8, tzinfo=UTC)


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"currency": "EUR"}, ("currency", "EUR is not the shop currency PLN")),
        ({"amount": "lots"}, ("amount", "expected a finite number from 0 to 1,000,000,000")),
        ({"amount": None}, ("amount", "required for purchase events")),
        ({"occurred_at": "2025-06-01T10:00:00"}, ("occurred_at", "Input should have timezone info")),
        ({"order_id": "o 1"}, ("order_id", "1 to 200 visible ASCII characters")),
    ],
)
def test_a_bad_order_names_its_field(fields: dict[str, object], problem: tuple[str, str]) -> None:
    parsed = parse_order(RawRow(4, order(**fields)), "PLN")

    assert isinstance(parsed, list)
    assert [(bad.line, bad.field) for bad in parsed] == [(4, problem[0])]
    assert problem[1] in parsed[0].message


NOW = "2026-03-02T10:00:00+01:00"


def imported(*orders: tuple[str, float]) -> Drive:
    """The lifecycle journey, seeded with these (days ago, amount) orders, told it was imported."""
    drive = Drive(LIFECYCLE, start=NOW)
    metrics = Metrics()
    for days_ago, amount in ((int(days[:-1]), amount) for days, amount in orders):
        metrics.record_purchase(at(NOW) - timedelta(days=days_ago), amount, None)
    drive.machine.seed(MetricsSeed(metrics=metrics))
    drive.event(EventType.IMPORTED, id="imported:c-1")
    return drive


def test_an_imported_customer_with_recent_orders_is_active_without_a_welcome() -> None:
    drive = imported(("40d", 100.0), ("10d", 80.0))

    assert drive.stages() == ["active"]
    assert drive.templates() == ["loyalty_welcome"]
    assert drive.machine.view(drive.now).metrics["orders"] == 2


def test_an_imported_customer_with_five_orders_this_year_is_vip_with_no_old_order_confirmed() -> None:
    drive = imported(*[(f"{day}d", 2500.0 if day == 5 else 50.0) for day in (5, 20, 60, 100, 200)])

    assert drive.stages() == ["vip"]
    assert drive.templates() == ["vip_welcome"]


def test_an_imported_customer_whose_last_order_is_old_is_inactive() -> None:
    drive = imported(("400d", 100.0), ("120d", 60.0))

    assert drive.stages() == ["inactive"]
    assert drive.templates() == ["we_miss_you"]


def test_an_imported_customer_without_orders_stays_out_of_the_journey() -> None:
    drive = imported()

    assert drive.stages() == []
    assert drive.sent == []
    assert drive.state.exited == "imported: no entry matched the customer's history"


def test_a_first_live_purchase_of_a_customer_with_history_makes_them_active_not_new() -> None:
    drive = Drive(LIFECYCLE, start=NOW)
    metrics = Metrics()
    metrics.record_purchase(at(NOW) - timedelta(days=30), 100.0, None)
    drive.machine.seed(MetricsSeed(metrics=metrics))

    drive.event("purchase", amount=50.0, order_id="o-2")

    assert drive.stages() == ["active"]
    assert "thank_you" not in drive.templates()


def test_an_event_the_seed_counted_moves_the_customer_but_is_not_counted_again() -> None:
    drive = Drive(LIFECYCLE, start=NOW)
    metrics = Metrics()
    metrics.record_purchase(at(NOW), 100.0, None)
    drive.machine.seed(MetricsSeed(metrics=metrics, recent_event_ids=["o-1"]))

    drive.event("purchase", id="o-1", amount=100.0, order_id="o-1")

    assert drive.machine.view(drive.now).metrics["orders"] == 1
    assert drive.stages() == ["new"]


def test_an_entry_is_either_on_an_event_or_imported() -> None:
    base = {"journey": "j", "name": "J", "stages": {"a": {}}}
    for entry in ({"to": "a"}, {"on": "signed_up", "imported": True, "to": "a"}):
        with pytest.raises(ValueError, match="either `on: EVENT` or `imported: true`"):
            Journey.model_validate({**base, "entry": [entry]})
    journey = Journey.model_validate({**base, "entry": [{"imported": True, "to": "a"}]})
    assert journey.entry_event_types() == {"imported"}
