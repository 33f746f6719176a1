"""Customer profiles: the only place personal data is kept."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, EmailStr, Field, field_validator
from sqlmodel import Session

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
    at: datetime | None = None


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


def upsert(session: Session, profile: CustomerProfile) -> Customer:
    now = utcnow()
    customer = session.get(Customer, profile.id) or Customer(id=profile.id, created_at=now)
    customer.email = str(profile.email) if profile.email else None
    customer.phone = profile.phone
    customer.first_name = profile.first_name
    customer.locale = profile.locale
    customer.timezone = profile.timezone
    consents = profile.consents
    record_profile_consents(
        session, customer, consents.email, consents.sms, consents.source, consents.at or now
    )
    customer.attributes = profile.attributes
    customer.updated_at = now
    session.add(customer)
    session.commit()
    return customer
