"""Shopify and WooCommerce webhooks, as documented, become the right purchase, profile,
consent and abandoned cart; signatures are checked the platforms' way."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from definition.channels import Channel
from ingestion import shopify, woocommerce
from ingestion.shop import ShopPayloadError
from ingestion.signatures import sign, signed_by_any
from routing.events import IncomingEvent
from tests.shop_payloads import documented

pytestmark = pytest.mark.unit


def routed(item: dict[str, Any]) -> IncomingEvent:
    """The event as api.ingest validates it: every rule of POST /v1/events applies."""
    return IncomingEvent.model_validate_json(json.dumps(item), strict=True)


def test_a_paid_shopify_order_is_one_purchase_of_its_total_in_shop_currency() -> None:
    order = documented("shopify/order", financial_status="paid")

    (created,) = shopify.translate("orders/create", order).events
    (paid,) = shopify.translate("orders/paid", order).events

    event = routed(created)
    assert (event.type, event.customer_id) == ("purchase", "115310627314723954")
    assert event.properties == {"order_id": "820982911946154508", "amount": 404.95}
    assert event.occurred_at == datetime(2022, 1, 1, 0, 0, tzinfo=UTC)
    # The same order by either topic is the same event id: the second is a duplicate.
    assert created["event_id"] == paid["event_id"] == "shopify:order:820982911946154508"


def test_an_order_brings_its_customer_for_cyklo_to_keep_only_if_it_has_none() -> None:
    shopify_order = shopify.translate("orders/paid", documented("shopify/order"))
    woo_order = woocommerce.translate("order.created", documented("woocommerce/order", customer_id=25))

    assert shopify_order.profile is not None and shopify_order.profile_only_if_new
    assert (shopify_order.profile.email, shopify_order.profile.locale) == ("john@example.com", "en")
    assert (shopify_order.profile.consents.email, shopify_order.profile.consents.sms) == (False, False)
    assert woo_order.profile is not None and woo_order.profile_only_if_new
    assert (woo_order.profile.id, woo_order.profile.email) == ("25", "john.doe@example.com")
    broken = shopify.translate("orders/paid", documented("shopify/order", customer={"id": 7, "email": "no"}))
    assert len(broken.events) == 1 and broken.profile is None and broken.warnings


def test_an_unpaid_or_guest_shopify_order_is_no_purchase_and_says_why() -> None:
    pending = shopify.translate("orders/create", documented("shopify/order", financial_status="pending"))
    guest = shopify.translate("orders/paid", documented("shopify/order", customer=None))

    assert pending.events == [] and pending.ignored is not None and "orders/paid" in pending.ignored
    assert guest.events == [] and guest.ignored is not None and "guest" in guest.ignored


def test_the_shop_currency_amount_wins_over_the_presentment_one() -> None:
    order = documented("shopify/order", financial_status="paid", total_price="100.00")
    order["total_price_set"] = {
        "shop_money": {"amount": "400.00", "currency_code": "PLN"},
        "presentment_money": {"amount": "100.00", "currency_code": "EUR"},
    }

    (event,) = shopify.translate("orders/create", order).events

    assert routed(event).properties["amount"] == 400.0


def test_a_shopify_customer_is_a_profile_and_a_signup_without_consent_of_its_own() -> None:
    translation = shopify.translate("customers/create", documented("shopify/customers_create", locale="en"))

    profile = translation.profile
    assert profile is not None
    assert (profile.id, profile.email, profile.first_name, profile.locale) == (
        "706405506930370084",
        "bob@biller.com",
        "Bob",
        "en",
    )
    # Since 2025-01 customers/create carries no consent: the stored one must be kept.
    assert translation.profile_states_consent is False
    (event,) = translation.events
    assert (routed(event).type, event["event_id"]) == ("signed_up", "shopify:signed_up:706405506930370084")
    assert shopify.translate("customers/update", documented("shopify/customers_create")).events == []


def test_shopify_consent_topics_grant_only_when_subscribed_with_source_and_time() -> None:
    email = documented("shopify/customers_email_marketing_consent_update")
    email["email_marketing_consent"] = {
        "state": "subscribed",
        "opt_in_level": "confirmed_opt_in",
        "consent_updated_at": "2026-11-30T10:00:00+01:00",
    }
    sms = documented("shopify/customers_marketing_consent_update")

    (granted,) = shopify.translate("customers_email_marketing_consent/update", email).consents
    (unknown,) = shopify.translate("customers_marketing_consent/update", sms).consents

    assert (granted.customer_id, granted.channel, granted.granted) == (
        "706405506930370084",
        Channel.EMAIL,
        True,
    )
    assert granted.at == datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
    assert "confirmed_opt_in" in granted.source
    assert (unknown.channel, unknown.granted, unknown.at) == (Channel.SMS, False, None)
    assert "other" in unknown.source  # consent_collected_from


def test_an_older_customer_payload_with_consent_states_it() -> None:
    customer = documented(
        "shopify/customers_create",
        email_marketing_consent={
            "state": "subscribed",
            "opt_in_level": "single_opt_in",
            "consent_updated_at": None,
        },
        sms_marketing_consent={
            "state": "not_subscribed",
            "opt_in_level": None,
            "consent_updated_at": None,
            "consent_collected_from": "shopify",
        },
    )

    translation = shopify.translate("customers/create", customer)

    assert translation.profile is not None and translation.profile_states_consent
    assert (translation.profile.consents.email, translation.profile.consents.sms) == (True, False)
    # No consent time given: the payload's updated_at dates it, so a later older one loses.
    assert translation.profile.consents.at == datetime(2022, 1, 1, 0, 0, tzinfo=UTC)


def test_a_consent_without_its_own_time_is_dated_by_the_payload_s_updated_at() -> None:
    email = documented("shopify/customers_email_marketing_consent_update", updated_at="2026-11-30T10:00:00Z")
    email["email_marketing_consent"] = {
        "state": "subscribed",
        "opt_in_level": None,
        "consent_updated_at": None,
    }

    (change,) = shopify.translate("customers_email_marketing_consent/update", email).consents

    assert (change.granted, change.at) == (True, datetime(2026, 11, 30, 10, 0, tzinfo=UTC))


def test_a_shopify_checkout_is_an_abandoned_cart_with_nothing_personal() -> None:
    (item,) = shopify.translate("checkouts/update", documented("shopify/checkout")).events

    event = routed(item)
    assert (event.type, event.customer_id) == ("cart_abandoned", "603851970716743426")
    assert event.properties == {"cart_id": "123123123", "value": 421.88, "items_count": 2}
    completed = shopify.translate(
        "checkouts/update", documented("shopify/checkout", completed_at="2026-12-01T10:00:00Z")
    )
    assert completed.events == [] and completed.ignored is not None


def test_woocommerce_counts_an_order_only_once_it_is_paid() -> None:
    statuses = {
        status: woocommerce.translate(
            "order.updated", documented("woocommerce/order", customer_id=25, status=status)
        )
        for status in ("pending", "on-hold", "processing", "completed", "cancelled")
    }

    assert [status for status, translation in statuses.items() if translation.events] == [
        "processing",
        "completed",
    ]
    event = routed(statuses["processing"].events[0])
    assert (event.event_id, event.customer_id) == ("woocommerce:order:727", "25")
    assert event.properties == {"order_id": "727", "amount": 29.35}
    assert event.occurred_at == datetime(2017, 3, 22, 19, 28, 8, tzinfo=UTC)  # date_paid_gmt
    guest = woocommerce.translate("order.created", documented("woocommerce/order"))  # customer_id 0
    assert guest.events == [] and guest.ignored is not None and "guest" in guest.ignored


def test_a_woocommerce_customer_is_a_profile_and_a_signup_and_a_bad_phone_only_a_warning() -> None:
    translation = woocommerce.translate("customer.created", documented("woocommerce/customer"))

    assert translation.profile is not None
    assert (translation.profile.id, translation.profile.email, translation.profile.phone) == (
        "25",
        "john.doe@example.com",
        None,
    )
    assert translation.warnings and "phone" in translation.warnings[0]
    assert [routed(event).type for event in translation.events] == ["signed_up"]


def test_shopify_privacy_requests_erase_or_point_at_the_export() -> None:
    redact = shopify.translate("customers/redact", documented("shopify/customers_redact"))
    request = shopify.translate("customers/data_request", documented("shopify/customers_data_request"))

    assert (redact.erase, redact.events, redact.profile) == ("191167", [], None)
    assert request.erase is None and request.ignored is not None
    assert "/v1/customers/191167/export" in request.ignored


def test_a_platform_id_that_is_no_number_is_named() -> None:
    with pytest.raises(ShopPayloadError) as refused:
        shopify.translate("orders/paid", documented("shopify/order", id="ala@example.com"))

    assert refused.value.field == "id" and "ala" not in str(refused.value)


def test_a_signature_is_base64_hmac_sha256_of_the_raw_body() -> None:
    body = b'{"id": 1}'
    expected = base64.b64encode(hmac.new(b"secret", body, hashlib.sha256).digest()).decode()

    assert sign("secret", body) == expected
    assert signed_by_any(body, expected, ["old", "secret"])  # a rotation: either secret
    assert not signed_by_any(body + b" ", expected, ["secret"])
    assert not signed_by_any(body, None, ["secret"]) and not signed_by_any(body, expected, [""])
