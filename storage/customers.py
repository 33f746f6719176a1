"""Customer profiles: the only place personal data is kept."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AwareDatetime, BaseModel, ConfigDict, EmailStr, Field, field_validator
from sqlmodel import Session, col, select

from definition.channels import Channel
from definition.identifiers import Identifier
from definition.phones import normalize_phone
from settings import get_settings
from storage.consents import record_profile_consents
from storage.models import Customer, utcnow

SUPPORTED_LOCALES = ("pl", "en")


class Consents(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: bool = False
    sms: bool = False
    source: str | None = None
    """Where consent was given (signup form, checkout, support call...)."""
    at: AwareDatetime | None = None
    """With its UTC offset: consents are ordered by it (storage.consents), across time zones."""


class CustomerProfile(BaseModel):
    """A profile as the shop sends it; validated field by field."""

    model_config = ConfigDict(extra="forbid")

    id: Identifier
    email: EmailStr | None = None
    phone: str | None = None
    first_name: str | None = Field(default=None, max_length=100)
    locale: str = "pl"
    timezone: str = "Europe/Warsaw"
    consents: Consents = Consents()
    attributes: dict[str, Any] = {}

    @field_validator("locale")
    @classmethod
    def _locale(cls, value: str) -> str:
        if value not in SUPPORTED_LOCALES:
            raise ValueError(f"unsupported locale {value!r}: use one of {', '.join(SUPPORTED_LOCALES)}")
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}: use an IANA name like Europe/Warsaw") from None
        return value

    @field_validator("phone")
    @classmethod
    def _phone(cls, value: str | None) -> str | None:
        if value is None:
            return None
        return normalize_phone(value, get_settings().default_phone_region)


def upsert(session: Session, profile: CustomerProfile, *, with_consents: bool = True) -> Customer:
    """The profile saved; without its consents when it says nothing about them (the stored ones kept)."""
    now = utcnow()
    customer = session.get(Customer, profile.id) or Customer(id=profile.id, created_at=now)
    apply(session, customer, profile, now, with_consents=with_consents)
    customer.attributes = profile.attributes
    session.add(customer)
    session.commit()
    return customer


def apply(
    session: Session,
    customer: Customer,
    profile: CustomerProfile,
    now: datetime,
    *,
    with_consents: bool = True,
) -> list[Channel]:
    """The profile's contact data, locale, time zone and consents onto the row (consent
    changes into the history), without committing. Returns the channels whose consent was
    left as it was, since cyklo holds a newer change (storage.consents.takes_effect)."""
    customer.email = str(profile.email) if profile.email else None
    customer.phone = profile.phone
    customer.first_name = profile.first_name
    customer.locale = profile.locale
    customer.timezone = profile.timezone
    customer.updated_at = now
    if not with_consents:
        return []
    consents = profile.consents
    return record_profile_consents(
        session, customer, consents.email, consents.sms, consents.source, consents.at, now
    )


def change_consent(
    session: Session, customer_id: str, channel: Channel, granted: bool, source: str, at: datetime | None
) -> bool:
    """One channel's consent as a platform changed it at `at` (now if it gave no time), the
    other channel kept, in one transaction; a customer not seen yet is created with it.
    False when cyklo holds a newer change: consent is left as it is."""
    now = utcnow()
    customer = session.get(Customer, customer_id, with_for_update=True) or Customer(
        id=customer_id, created_at=now
    )
    email = granted if channel == Channel.EMAIL else None
    sms = granted if channel == Channel.SMS else None
    stale = record_profile_consents(session, customer, email, sms, source, at, now)
    customer.updated_at = now
    session.add(customer)
    session.commit()
    return not stale


def stored_profile(session: Session, customer_id: str) -> CustomerProfile | None:
    """The profile as saved, in the shape it was sent: what a partial update starts from."""
    customer = session.get(Customer, customer_id)
    if customer is None:
        return None
    return CustomerProfile(
        id=customer.id,
        email=customer.email,
        phone=customer.phone,
        first_name=customer.first_name,
        locale=customer.locale,
        timezone=customer.timezone,
        consents=Consents(
            email=customer.consent_email,
            sms=customer.consent_sms,
            source=customer.consent_source,
            at=customer.consent_updated_at,
        ),
        attributes=customer.attributes,
    )


def existing(session: Session, customer_ids: Iterable[str]) -> set[str]:
    """Those of `customer_ids` that have a profile."""
    wanted = list(customer_ids)
    return (
        set(session.exec(select(Customer.id).where(col(Customer.id).in_(wanted))).all()) if wanted else set()
    )


def differs(customer: Customer, profile: CustomerProfile) -> bool:
    """Whether saving the profile would change the row (its attributes aside)."""
    consents = profile.consents
    return (
        customer.email,
        customer.phone,
        customer.first_name,
        customer.locale,
        customer.timezone,
        customer.consent_email,
        customer.consent_sms,
        customer.consent_source,
    ) != (
        str(profile.email) if profile.email else None,
        profile.phone,
        profile.first_name,
        profile.locale,
        profile.timezone,
        consents.email,
        consents.sms,
        consents.source,
    )
