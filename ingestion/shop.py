"""What a shop platform's webhook becomes in cyklo, whichever platform sent it.

A translation is pure: events in the shape `POST /v1/events` takes (api.ingest routes and
validates them, so a webhook's events obey every rule the API's do), a profile validated as
`PUT /v1/customers` validates it, and consent changes. The API does the I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from definition.channels import Channel
from definition.events import EventType
from definition.phones import InvalidPhone, normalize_phone
from settings import get_settings
from storage.customers import SUPPORTED_LOCALES, Consents, CustomerProfile


class ShopPayloadError(ValueError):
    """A signed payload cyklo cannot read: names the field, never quotes its value."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class ConsentChange:
    customer_id: str
    channel: Channel
    granted: bool
    source: str
    at: datetime | None


@dataclass(frozen=True)
class Translation:
    events: list[dict[str, Any]] = field(default_factory=list)
    profile: CustomerProfile | None = None
    profile_states_consent: bool = False
    """Whether the payload said anything about consent; if not, the stored consent is kept."""
    profile_only_if_new: bool = False
    """A customer seen only in an order: saved when cyklo has no profile yet, never over one."""
    consents: list[ConsentChange] = field(default_factory=list)
    erase: str | None = None
    """A customer to erase everywhere, at the shop's request (Shopify's customers/redact)."""
    ignored: str | None = None
    """Why the delivery changes nothing (a guest order, an unpaid one, a topic cyklo does not read)."""
    latest_state: bool = False
    """Its events are a state of something that changes (a checkout), dated by the platform:
    left out when cyklo already holds a newer event of the same type for the customer."""
    warnings: list[str] = field(default_factory=list)


def ignored(reason: str) -> Translation:
    return Translation(ignored=reason)


def object_at(payload: Any, name: str) -> dict[str, Any]:
    if not isinstance(payload, dict):
        raise ShopPayloadError(name or "body", "expected a JSON object")
    value = payload.get(name) if name else payload
    if not isinstance(value, dict):
        raise ShopPayloadError(name, "expected a JSON object")
    return value


def optional_object(payload: dict[str, Any], name: str) -> dict[str, Any]:
    """A nested object the translation can do without (an address): empty when absent or not one."""
    value = payload.get(name)
    return value if isinstance(value, dict) else {}


def platform_id(payload: dict[str, Any], name: str) -> str:
    """The platform's numeric id as cyklo's id: the number as text, as the shop's admin shows it."""
    value = payload.get(name)
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 10**18:
        return str(value)
    if isinstance(value, str) and value.isdigit() and 0 < len(value) <= 18:
        return value
    raise ShopPayloadError(name, "expected the platform's numeric id")


def text(payload: dict[str, Any], name: str) -> str | None:
    value = payload.get(name)
    return value.strip() or None if isinstance(value, str) else None


def aware_time(value: str | None, field: str) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ShopPayloadError(field, "expected an ISO 8601 time") from None
    if moment.tzinfo is None:
        raise ShopPayloadError(field, "expected a time with its UTC offset")
    return moment


def locale_of(value: str | None) -> str | None:
    """`en-US` or `pl` as one of cyklo's locales, or None for one it has no templates in."""
    language = (value or "").replace("_", "-").split("-")[0].lower()
    return language if language in SUPPORTED_LOCALES else None


def phone_or_warning(raw: str | None, region: str | None, warnings: list[str]) -> str | None:
    """A number SMS can reach, or None with a warning: a bad phone must not lose the email."""
    if not raw:
        return None
    try:
        return normalize_phone(raw, (region or get_settings().default_phone_region).upper())
    except InvalidPhone as error:
        warnings.append(f"phone left out: {error}")
        return None


def contact_profile(
    customer_id: str,
    *,
    email: str | None,
    phone: str | None,
    phone_region: str | None,
    first_name: str | None,
    locale: str | None,
    warnings: list[str],
    consents: Consents | None = None,
) -> CustomerProfile:
    """A platform's contact data as a profile, validated as `PUT /v1/customers` validates one."""
    fields: dict[str, Any] = {
        "id": customer_id,
        "email": email,
        "phone": phone_or_warning(phone, phone_region, warnings),
        "first_name": first_name,
        "consents": consents or Consents(),
    }
    if locale_of(locale):
        fields["locale"] = locale_of(locale)
    return CustomerProfile.model_validate(fields)


def purchase(event_id: str, customer_id: str, order_id: str, amount: Any, at: str | None) -> dict[str, Any]:
    item: dict[str, Any] = {
        "event_id": event_id,
        "customer_id": customer_id,
        "type": EventType.PURCHASE,
        "properties": {"order_id": order_id, "amount": amount},
    }
    return _at(item, at)


def signed_up(event_id: str, customer_id: str, at: str | None) -> dict[str, Any]:
    return _at({"event_id": event_id, "customer_id": customer_id, "type": EventType.SIGNED_UP}, at)


def _at(item: dict[str, Any], at: str | None) -> dict[str, Any]:
    # Left out, the event happened now: what a platform's missing time most likely means.
    return {**item, "occurred_at": at} if at else item
