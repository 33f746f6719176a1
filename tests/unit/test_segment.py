"""The Segment spec translated: events by the mapping file, the clock skew corrected, identify
traits into the profile under its own rules, and what cannot be kept refused by its Segment name."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from definition.problems import ProblemsForPeople
from ingestion.segment import (
    ANONYMOUS_REFUSED,
    EventCall,
    Ignored,
    ProfileCall,
    Refused,
    Translation,
    envelope,
    event_type_of,
    load_mapping,
    translate,
    updated_profile,
)
from storage.customers import Consents, CustomerProfile

pytestmark = pytest.mark.unit

MAPPING = load_mapping()
NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def call(**fields: Any) -> dict[str, Any]:
    return {"type": "track", "messageId": "m-1", "userId": "c-1", **fields}


def translated(message: dict[str, Any], sent_at: datetime | None = None) -> Translation:
    return translate(message, MAPPING, sent_at=sent_at, received_at=NOW, shop_currency="PLN")


def event(message: dict[str, Any], sent_at: datetime | None = None) -> dict[str, Any]:
    result = translated(message, sent_at)
    assert isinstance(result, EventCall), result
    return result.item


def refusal(message: dict[str, Any]) -> list[tuple[str, str]]:
    result = translated(message)
    assert isinstance(result, Refused), result
    return result.problems


def test_order_completed_is_a_purchase_with_the_revenue_as_its_amount() -> None:
    order = call(
        event="Order Completed",
        properties={"order_id": "o-7", "revenue": 250.0, "total": 270.0, "currency": "PLN", "coupon": "X"},
    )

    assert event(order) == {
        "event_id": "m-1",
        "customer_id": "c-1",
        "type": "purchase",
        "occurred_at": NOW.isoformat(),
        "properties": {"order_id": "o-7", "amount": 250.0},
    }


def test_an_order_without_revenue_takes_its_total_and_the_first_product_category() -> None:
    order = call(
        event="Order Completed", properties={"total": 99, "products": [{"category": "bags", "price": 99}]}
    )

    assert event(order)["properties"] == {"amount": 99, "category": "bags"}


def test_an_order_with_no_amount_is_refused_naming_where_the_amount_comes_from() -> None:
    assert refusal(call(event="Order Completed", properties={"order_id": "o-1"})) == [
        ("properties.revenue", "required: purchase events need amount, taken from revenue or total")
    ]


def test_an_order_in_another_currency_is_refused_not_counted_as_the_shop_s() -> None:
    problems = refusal(call(event="Order Completed", properties={"revenue": 10, "currency": "EUR"}))

    assert problems == [
        ("properties.currency", "cyklo counts amounts in PLN (CYKLO_CURRENCY): convert before sending")
    ]


def test_checkout_started_is_an_abandoned_cart_counting_its_products() -> None:
    checkout = call(
        event="Checkout Started", properties={"checkout_id": "k-3", "value": 120, "products": [{}, {}, {}]}
    )

    assert event(checkout)["type"] == "cart_abandoned"
    assert event(checkout)["properties"] == {"cart_id": "k-3", "value": 120, "items_count": 3}


def test_signed_up_keeps_no_personal_data_the_spec_puts_in_its_properties() -> None:
    signed = call(
        event="Signed Up", properties={"email": "ala@example.com", "first_name": "Ala", "type": "organic"}
    )

    assert event(signed)["type"] == "signed_up"
    assert event(signed)["properties"] == {}


def test_an_unmapped_event_is_recorded_under_its_snake_case_name_without_properties() -> None:
    viewed = call(event="Product Viewed", properties={"product_id": "p-1", "url": "https://x/?e=a@b.pl"})

    assert (event(viewed)["type"], event(viewed)["properties"]) == ("product_viewed", {})
    assert event_type_of("productAddedToWishlist") == "product_added_to_wishlist"
    assert event_type_of("Заказ") is None


def test_an_unmapped_email_event_is_ignored_so_opens_are_not_counted_twice() -> None:
    result = translated(call(event="Email Opened", properties={"email_id": "x"}))

    assert isinstance(result, Ignored) and "own providers' webhooks" in result.reason


def test_a_page_is_recorded_as_page_viewed_without_its_url() -> None:
    page = event(
        {"type": "page", "messageId": "m-2", "userId": "c-1", "name": "Home", "properties": {"url": "x"}}
    )

    assert (page["type"], page["properties"]) == ("page_viewed", {})


def test_the_timestamp_is_moved_by_how_far_the_sender_s_clock_is_off() -> None:
    # The sender's clock runs 1 h behind: it says it sent at 09:00 what arrived at 10:00.
    behind = NOW - timedelta(hours=1)
    message = call(event="Signed Up", timestamp=(behind - timedelta(minutes=5)).isoformat())

    assert event(message, sent_at=behind)["occurred_at"] == (NOW - timedelta(minutes=5)).isoformat()
    assert event({**message, "sentAt": "2026-03-02T09:30:00Z"}, sent_at=behind)["occurred_at"] == (
        "2026-03-02T09:25:00+00:00"
    )
    assert event(call(event="Signed Up"))["occurred_at"] == NOW.isoformat()
    assert refusal(call(event="Signed Up", timestamp="yesterday")) == [
        ("timestamp", "an ISO-8601 time, e.g. 2026-03-02T10:00:00.000Z")
    ]


def test_ids_follow_cyklo_s_rules_and_are_named_by_their_segment_fields() -> None:
    assert refusal(call(event="Signed Up", userId="ala@example.com"))[0][0] == "userId"
    assert "email address" in refusal(call(event="Signed Up", userId="ala@example.com"))[0][1]
    assert refusal(call(event="Signed Up", messageId="has space"))[0][0] == "messageId"
    assert refusal(call(event="Signed Up", messageId=None))[0][0] == "messageId"
    assert event(call(event="Signed Up", userId=42))["customer_id"] == "42"


def test_an_anonymous_call_is_refused_with_the_reason() -> None:
    assert refusal(call(event="Signed Up", userId=None, anonymousId="a-9")) == [("userId", ANONYMOUS_REFUSED)]


def test_group_and_alias_are_ignored_and_an_unknown_type_refused() -> None:
    assert isinstance(translated(call(type="group", groupId="g")), Ignored)
    assert isinstance(translated(call(type="alias", previousId="a")), Ignored)
    assert refusal(call(type="purchase"))[0][0] == "type"


def test_an_endpoint_for_one_call_type_refuses_another() -> None:
    result = translate(
        call(event="X"), MAPPING, sent_at=None, received_at=NOW, shop_currency="PLN", implied_type="page"
    )

    assert result == Refused([("type", "this endpoint takes page calls")])


def test_a_batch_needs_its_list_and_a_readable_sent_at() -> None:
    assert envelope({"batch": [], "sentAt": "2026-03-02T10:00:00Z"}, batched=True) is not None
    assert isinstance(envelope({"calls": []}, batched=True), Refused)
    assert envelope({"batch": [], "sentAt": 5}, batched=True) == Refused(
        [("sentAt", "an ISO-8601 time, e.g. 2026-03-02T10:00:00.000Z")]
    )


def identify(**traits: Any) -> ProfileCall:
    result = translate(
        {
            "type": "identify",
            "messageId": "m-9",
            "userId": "c-1",
            "traits": traits,
            "context": {"locale": "en-GB"},
        },
        MAPPING,
        sent_at=None,
        received_at=NOW,
        shop_currency="PLN",
    )
    assert isinstance(result, ProfileCall)
    return result


def test_identify_sets_the_profile_from_the_spec_s_traits_and_the_device_s_locale() -> None:
    profile = updated_profile(
        None,
        identify(
            email="ala@example.com",
            firstName="Ala",
            phone="601 234 567",
            lastName="Nowak",
            consents={"email": True},
        ),
    )

    assert isinstance(profile, CustomerProfile)
    assert (profile.id, profile.email, profile.first_name, profile.phone, profile.locale) == (
        "c-1",
        "ala@example.com",
        "Ala",
        "+48601234567",
        "en",
    )
    assert profile.consents.email and not profile.consents.sms


def test_identify_changes_only_the_traits_it_carries() -> None:
    stored = CustomerProfile(
        id="c-1",
        email="ala@example.com",
        first_name="Ala",
        timezone="Europe/London",
        consents=Consents(email=True, sms=True, source="signup", at=NOW - timedelta(days=9)),
    )

    profile = updated_profile(stored, identify(firstName="Alicja", consents={"sms": False}))

    assert isinstance(profile, CustomerProfile)
    assert (profile.email, profile.first_name, profile.timezone) == (
        "ala@example.com",
        "Alicja",
        "Europe/London",
    )
    # The withdrawal is dated when the call was made, not when the consent was first given.
    assert (profile.consents.email, profile.consents.sms, profile.consents.source, profile.consents.at) == (
        True,
        False,
        "signup",
        NOW,
    )


def test_bad_traits_are_refused_by_their_segment_names_as_put_would() -> None:
    refused = updated_profile(None, identify(email="not-an-email", firstName="A" * 101, timezone="Mars/Base"))

    assert isinstance(refused, Refused)
    assert sorted(field for field, _ in refused.problems) == [
        "traits.email",
        "traits.firstName",
        "traits.timezone",
    ]


def test_a_mapping_file_with_a_mistake_names_the_file_line_and_field(tmp_path: Path) -> None:
    wrong = tmp_path / "segment.yaml"
    wrong.write_text(
        "events:\n  Order Completed:\n    type: purchase\n    properties:\n      total_paid: [total]\n"
    )

    with pytest.raises(ProblemsForPeople) as refused:
        load_mapping(wrong)

    assert str(refused.value) == (
        f"{wrong}:5: events.Order Completed.properties: "
        "'total_paid' is not a property of purchase events (declared: order_id, amount, category)"
    )
