"""WooCommerce webhooks as cyklo events and profiles. A webhook's body is the REST API v3
resource ("exactly the same as if requested via the REST API", WooCommerce's webhook docs).

- `order.created` / `order.updated`: a purchase once the order is paid, i.e. its status is
  `processing` or `completed`; `pending`, `on-hold` (a bank transfer not yet received),
  `failed`, `cancelled` and `refunded` are not. One purchase per order, keyed
  `woocommerce:order:{id}`: an order created pending and paid later counts when the update
  says so, and every later update is a duplicate. The amount is `total`, in the shop's currency.
- `customer.created`: the profile and a `signed_up`; `customer.updated`: the profile only.
  WooCommerce itself records no marketing consent, so these never change it: set it with
  `PUT /v1/customers` or an import.

`X-WC-Webhook-Delivery-ID` is a fresh hash for every delivery attempt, so it cannot tell a
repeat; the order's id does. The customer id is WooCommerce's user id as text; guest orders
(`customer_id` 0) have no customer to follow and are ignored.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from ingestion.shop import (
    ShopPayloadError,
    Translation,
    contact_profile,
    ignored,
    object_at,
    optional_object,
    platform_id,
    purchase,
    signed_up,
    text,
)

ORDER_TOPICS = ("order.created", "order.updated")
CUSTOMER_TOPICS = ("customer.created", "customer.updated")
TOPICS = (*ORDER_TOPICS, *CUSTOMER_TOPICS)
PAID_STATUSES = ("processing", "completed")


def translate(topic: str, payload: Any) -> Translation:
    if topic in ORDER_TOPICS:
        return _order(object_at(payload, ""))
    if topic in CUSTOMER_TOPICS:
        return _customer(topic, object_at(payload, ""))
    return ignored(f"topic {topic or '(none)'} is not one cyklo reads: subscribe to {', '.join(TOPICS)}")


def _order(order: dict[str, Any]) -> Translation:
    order_id = platform_id(order, "id")
    if order.get("customer_id") in (0, "0", None):
        return ignored(f"order {order_id} is a guest order: no customer to follow")
    status = text(order, "status")
    if status not in PAID_STATUSES:
        return ignored(
            f"order {order_id} is {status}: only a paid order ({', '.join(PAID_STATUSES)}) is a purchase"
        )
    at = _gmt(text(order, "date_paid_gmt") or text(order, "date_created_gmt"))
    customer_id = platform_id(order, "customer_id")
    event = purchase(f"woocommerce:order:{order_id}", customer_id, order_id, order.get("total"), at)
    # A customer from before cyklo was connected has no profile: the order's billing contact
    # lets the transactional thank-you reach them (marketing still waits for consent).
    try:
        known = _customer("order", {"id": customer_id, "billing": optional_object(order, "billing")})
    except (ValidationError, ShopPayloadError):
        return Translation(
            events=[event], warnings=["the order's billing contact is no valid profile: none saved"]
        )
    return Translation(
        events=[event], profile=known.profile, profile_only_if_new=True, warnings=known.warnings
    )


def _customer(topic: str, customer: dict[str, Any]) -> Translation:
    customer_id = platform_id(customer, "id")
    billing = optional_object(customer, "billing")
    warnings: list[str] = []
    profile = contact_profile(
        customer_id,
        email=text(customer, "email") or text(billing, "email"),
        phone=text(billing, "phone"),
        phone_region=text(billing, "country"),
        first_name=text(customer, "first_name") or text(billing, "first_name"),
        locale=text(customer, "locale"),
        warnings=warnings,
    )
    events = []
    if topic == "customer.created":
        at = _gmt(text(customer, "date_created_gmt"))
        events.append(signed_up(f"woocommerce:signed_up:{customer_id}", customer_id, at))
    return Translation(events=events, profile=profile, warnings=warnings)


def _gmt(value: str | None) -> str | None:
    # WooCommerce's *_gmt times carry no offset: they are UTC by name.
    return f"{value}+00:00" if value and value[-1].isdigit() else value
