"""Shopify webhooks (payloads as shopify.dev/docs/api/webhooks documents them) as cyklo events,
profiles and consents.

- `orders/create` and `orders/paid`: one purchase per order, keyed `shopify:order:{id}`.
  `orders/create` counts only when the order is already paid (`financial_status` paid, the
  usual card checkout); an order paid later counts when `orders/paid` comes. Whichever of
  the two arrives second is a duplicate, so no order is two purchases. The amount is
  `total_price` in the shop's currency (`total_price_set.shop_money`).
- `customers/create`: the profile and a `signed_up`; `customers/update`: the profile only.
  Since API version 2025-01 these carry no consent: it comes by
  `customers_email_marketing_consent/update` and `customers_marketing_consent/update` (SMS),
  and a profile without it keeps the consent already stored. Older payloads'
  `email_marketing_consent` / `sms_marketing_consent` / `accepts_marketing` are read when present.
  A consent change is dated by Shopify's `consent_updated_at` (else the payload's `updated_at`):
  one older than the change cyklo holds for its channel leaves consent as it is, so a retried
  or late "subscribed" never undoes a newer "unsubscribed".
- `customers/redact` (a mandatory privacy topic): the customer is erased as
  `DELETE /v1/customers/{id}` erases; `customers/data_request` is answered by a person with
  `GET /v1/customers/{id}/export`, so cyklo only acknowledges it.
- `checkouts/create` / `checkouts/update`: `cart_abandoned` for the checkout (its token, total
  and item count; nothing personal). The abandoned-cart journey waits an hour for a purchase,
  so an updated checkout restarts that hour and a completed one cancels the reminder; a
  checkout state older (`updated_at`) than a cart cyklo already holds for the customer is ignored.

The customer id is Shopify's customer id as text (`706405506930370084`): the id the shop's
admin, its exports and a Segment `userId` from Shopify use, so every door names one customer alike.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import ValidationError

from definition.channels import Channel
from definition.events import EventType
from ingestion.shop import (
    ConsentChange,
    ShopPayloadError,
    Translation,
    aware_time,
    contact_profile,
    ignored,
    object_at,
    optional_object,
    platform_id,
    purchase,
    signed_up,
    text,
)
from storage.customers import Consents

ORDER_TOPICS = ("orders/create", "orders/paid")
CUSTOMER_TOPICS = ("customers/create", "customers/update")
CHECKOUT_TOPICS = ("checkouts/create", "checkouts/update")
EMAIL_CONSENT_TOPIC = "customers_email_marketing_consent/update"
SMS_CONSENT_TOPIC = "customers_marketing_consent/update"
REDACT_TOPIC = "customers/redact"
DATA_REQUEST_TOPIC = "customers/data_request"
TOPICS = (
    *ORDER_TOPICS,
    *CUSTOMER_TOPICS,
    *CHECKOUT_TOPICS,
    EMAIL_CONSENT_TOPIC,
    SMS_CONSENT_TOPIC,
    REDACT_TOPIC,
    DATA_REQUEST_TOPIC,
)

SUBSCRIBED = "subscribed"
"""The one marketing consent state that is consent (pending, not_subscribed, unsubscribed... are not)."""


def translate(topic: str, payload: Any) -> Translation:
    if topic in ORDER_TOPICS:
        return _order(topic, object_at(payload, ""))
    if topic in CUSTOMER_TOPICS:
        return _customer(topic, object_at(payload, ""))
    if topic in CHECKOUT_TOPICS:
        return _checkout(object_at(payload, ""))
    if topic == EMAIL_CONSENT_TOPIC:
        body = object_at(payload, "")
        given = body.get("email_marketing_consent")
        change = _consent(topic, platform_id(body, "customer_id"), Channel.EMAIL, given, _updated_at(body))
        return Translation(consents=[change] if change else [])
    if topic == SMS_CONSENT_TOPIC:
        body = object_at(payload, "")
        given = body.get("sms_marketing_consent")
        change = _consent(topic, platform_id(body, "id"), Channel.SMS, given, _updated_at(body))
        return Translation(consents=[change] if change else [])
    if topic == REDACT_TOPIC:
        return Translation(erase=platform_id(object_at(payload, "customer"), "id"))
    if topic == DATA_REQUEST_TOPIC:
        customer_id = platform_id(object_at(payload, "customer"), "id")
        return ignored(
            f"a data request for customer {customer_id} is answered by a person: "
            f"GET /v1/customers/{customer_id}/export is everything cyklo keeps of them"
        )
    return ignored(f"topic {topic or '(none)'} is not one cyklo reads: subscribe to {', '.join(TOPICS)}")


def _order(topic: str, order: dict[str, Any]) -> Translation:
    order_id = platform_id(order, "id")
    customer = order.get("customer")
    if not isinstance(customer, dict) or customer.get("id") is None:
        return ignored(f"order {order_id} is a guest order: no customer to follow")
    status = text(order, "financial_status")
    if topic == "orders/create" and status != "paid":
        return ignored(f"order {order_id} is not paid yet ({status}): orders/paid will bring the purchase")
    shop_money = ((order.get("total_price_set") or {}).get("shop_money") or {}).get("amount")
    amount = shop_money if shop_money is not None else order.get("total_price")
    at = text(order, "processed_at") or text(order, "created_at")
    event = purchase(f"shopify:order:{order_id}", platform_id(customer, "id"), order_id, amount, at)
    # A customer from before cyklo was connected has no profile: the order's copy lets the
    # transactional thank-you reach them (marketing still waits for consent).
    try:
        known = _customer("orders", {"locale": order.get("customer_locale"), **customer})
    except (ValidationError, ShopPayloadError):
        return Translation(events=[event], warnings=["the order's customer is no valid profile: none saved"])
    return Translation(
        events=[event],
        profile=known.profile,
        profile_states_consent=known.profile_states_consent,
        profile_only_if_new=True,
        warnings=known.warnings,
    )


def _customer(topic: str, customer: dict[str, Any]) -> Translation:
    customer_id = platform_id(customer, "id")
    warnings: list[str] = []
    consents, states_consent = _profile_consents(topic, customer)
    profile = contact_profile(
        customer_id,
        email=text(customer, "email"),
        phone=text(customer, "phone"),
        phone_region=text(optional_object(customer, "default_address"), "country_code"),
        first_name=text(customer, "first_name"),
        locale=text(customer, "locale"),
        warnings=warnings,
        consents=consents,
    )
    events = []
    if topic == "customers/create":
        events.append(
            signed_up(f"shopify:signed_up:{customer_id}", customer_id, text(customer, "created_at"))
        )
    return Translation(
        events=events, profile=profile, profile_states_consent=states_consent, warnings=warnings
    )


def _profile_consents(topic: str, customer: dict[str, Any]) -> tuple[Consents, bool]:
    email_given = customer.get("email_marketing_consent")
    sms_given = customer.get("sms_marketing_consent")
    legacy = customer.get("accepts_marketing")
    if not isinstance(email_given, dict) and not isinstance(sms_given, dict) and not isinstance(legacy, bool):
        return Consents(), False
    customer_id = platform_id(customer, "id")
    updated = _updated_at(customer)
    email = _consent(topic, customer_id, Channel.EMAIL, email_given, updated)
    sms = _consent(topic, customer_id, Channel.SMS, sms_given, updated)
    times = [change.at for change in (email, sms) if change is not None and change.at is not None]
    sources = [change.source for change in (email, sms) if change is not None]
    return (
        Consents(
            email=email.granted if email else legacy is True,
            sms=sms.granted if sms else False,
            source="; ".join(sources) or f"shopify {topic}: accepts_marketing",
            at=max(times) if times else updated,
        ),
        True,
    )


def _updated_at(payload: dict[str, Any]) -> datetime | None:
    return aware_time(text(payload, "updated_at"), "updated_at")


def _consent(
    topic: str, customer_id: str, channel: Channel, given: Any, updated: datetime | None
) -> ConsentChange | None:
    """Shopify's consent object (`state`, `opt_in_level`, `consent_updated_at`, for SMS also
    `consent_collected_from`) as a change: granted only when subscribed; where kept, and when
    by Shopify's clock (`consent_updated_at`, else the payload's `updated_at`), since only a
    change newer than the one cyklo holds may change consent (storage.consents.takes_effect)."""
    if not isinstance(given, dict):
        return None
    state = text(given, "state") or "no state"
    details = [part for part in (text(given, "opt_in_level"), text(given, "consent_collected_from")) if part]
    source = f"shopify {topic}: {channel} {state}" + (f" ({', '.join(details)})" if details else "")
    when = aware_time(text(given, "consent_updated_at"), f"{channel}_marketing_consent.consent_updated_at")
    return ConsentChange(customer_id, channel, state == SUBSCRIBED, source, when or updated)


def _checkout(checkout: dict[str, Any]) -> Translation:
    token = text(checkout, "token")
    if token is None:
        raise ShopPayloadError("token", "a checkout needs its token")
    if checkout.get("completed_at"):
        return ignored(f"checkout {token} is completed: its order brings the purchase")
    customer = checkout.get("customer")
    if not isinstance(customer, dict) or customer.get("id") is None:
        return ignored(f"checkout {token} has no customer: nobody to remind")
    given = checkout.get("line_items")
    line_items: list[Any] = given if isinstance(given, list) else []
    quantities = [item.get("quantity") for item in line_items if isinstance(item, dict)]
    item: dict[str, Any] = {
        # The same checkout state delivered twice (a retry, a second subscription) is one event.
        "event_id": f"shopify:checkout:{token}:{text(checkout, 'updated_at') or ''}",
        "customer_id": platform_id(customer, "id"),
        "type": EventType.CART_ABANDONED,
        "properties": {
            "cart_id": token,
            "value": checkout.get("total_price"),
            "items_count": sum(quantity for quantity in quantities if isinstance(quantity, int)),
        },
    }
    if text(checkout, "updated_at"):
        item["occurred_at"] = text(checkout, "updated_at")
    # A retried or late older state must not restart the hour as if it were the newest cart.
    return Translation(events=[item], latest_state=True)
