"""The send activity: consent, frequency cap, render, provider call, ledger — exactly once.

The ledger row for a step occurrence is claimed (unique idempotency key) and marked
`sending` before the provider is called, in the same transaction as the consent and cap
checks. A retry that finds `sending` cannot know whether the provider took the message,
so it records the message failed instead of risking a duplicate: at most once.
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from functools import lru_cache
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, func, select
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.email import OutgoingEmail, send_email
from activities.email import size_problem as email_size_problem
from activities.provider_errors import ProviderAmbiguous, ProviderRejected, ProviderRetryable
from activities.sms import send_sms, sms_encoding
from activities.sms import size_problem as sms_size_problem
from definition import templates
from definition.phones import InvalidPhone, normalize_phone
from definition.sandbox import LimitExceeded
from settings import Settings
from storage import journey_versions, ledger
from storage.database import session_for
from storage.models import Customer, Message, utcnow
from workflows.interface import SEND_MAX_ATTEMPTS, SendOutcome, SendRequest

CAP_MESSAGES = 3
CAP_WINDOW = timedelta(days=7)
DELIVERED_STATUSES = ("sent", "delivered", "opened", "clicked")
"""Statuses of a message the customer got (or is getting): what the cap counts."""
FINAL_STATUSES = (*DELIVERED_STATUSES, "suppressed", "capped", "failed", "bounced")


class MessageTooLarge(ValueError):
    """The rendered message is over its channel's cap: the template's fault, so never sent."""


class MessageSender:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @activity.defn(name="send_message")
    def send_message(self, request: SendRequest) -> SendOutcome:
        with session_for(self.settings.database_url) as session:
            message, customer = self._claim(session, request)
            if message.status != "sending":
                return _outcome(message, customer)
            assert customer is not None, "a message without a profile is suppressed when claimed"
            try:
                rendered = self._render(session, request, message, customer)
                destination = self._destination(request, customer)
            except InvalidPhone as problem:
                return _outcome(_finish(session, message, "failed", str(problem)), customer)
            except (LimitExceeded, MessageTooLarge) as problem:
                return _outcome(_finish(session, message, "failed", f"template error: {problem}"), customer)
            except Exception as problem:  # a template failing at render time, whatever its error
                reason = f"template error: {type(problem).__name__}: {problem}"
                return _outcome(_finish(session, message, "failed", reason), customer)

        try:
            if request.channel == "email":
                provider_id = send_email(
                    OutgoingEmail(
                        to=destination,
                        to_name=customer.first_name,
                        subject=rendered["subject.txt"],
                        html=rendered["html"],
                        text=rendered["txt"],
                        custom_args={
                            "cyklo_message_id": str(message.id),
                            "customer_id": request.customer_id,
                            "journey_id": request.journey_id,
                        },
                        categories=[request.journey_id, request.template],
                        unsubscribe_url=None
                        if request.transactional
                        else _links(self.settings, message)["unsubscribe"],
                    ),
                    self.settings,
                )
            else:
                provider_id = send_sms(destination, rendered["txt"], self.settings)
        except ProviderRetryable as problem:
            with session_for(self.settings.database_url) as session:
                if activity.info().attempt >= SEND_MAX_ATTEMPTS:
                    failed = _finish(session, message, "failed", f"provider unavailable: {problem.message}")
                    return _outcome(failed, customer)
                _finish(session, message, "retrying", problem.message)
            raise ApplicationError(
                f"provider busy or down, will retry: {problem.message}",
                type="ProviderRetryable",
                next_retry_delay=timedelta(seconds=problem.retry_after) if problem.retry_after else None,
            ) from problem
        except ProviderAmbiguous as problem:
            reason = f"{ledger.OUTCOME_UNKNOWN}: {problem.message}; not resent, to avoid a duplicate"
            with session_for(self.settings.database_url) as session:
                assert message.id is not None
                return _outcome(ledger.record_outcome_unknown(session, message.id, reason), customer)
        except ProviderRejected as problem:
            with session_for(self.settings.database_url) as session:
                return _outcome(
                    _finish(session, message, "failed", f"{problem.code}: {problem.message}"), customer
                )

        with session_for(self.settings.database_url) as session:
            # Read again: a delivery webhook may already have moved the row past `sent`.
            current = session.get(Message, message.id)
            assert current is not None
            current.provider_message_id = provider_id
            ledger.advance_status(session, current, "sent")
            session.add(current)
            session.commit()
            return _outcome(current, customer)

    def _claim(self, session: Session, request: SendRequest) -> tuple[Message, Customer | None]:
        """Find or create the ledger row and decide, under the customer's lock, whether to send."""
        customer = _locked_customer(session, request.customer_id)
        message = session.exec(
            select(Message).where(Message.idempotency_key == request.idempotency_key)
        ).first()
        if message is not None and message.status in FINAL_STATUSES:
            session.rollback()
            return message, customer
        if message is not None and message.status == "sending":
            reason = (
                f"{ledger.OUTCOME_UNKNOWN}: an earlier attempt stopped during the provider call; not resent"
            )
            return _finish(session, message, "failed", reason), customer
        if message is None:
            message = Message(
                idempotency_key=request.idempotency_key,
                customer_id=request.customer_id,
                journey_id=request.journey_id,
                journey_version=request.journey_version,
                stage=request.stage,
                step=request.step,
                channel=request.channel,
                template=request.template,
                transactional=request.transactional,
                status="pending",
                discount_code=_discount_code(),
                scheduled_at=request.send_at,
            )
        refusal = _refusal(session, request, customer)
        if refusal is not None:
            status, reason = refusal
            return _finish(session, message, status, reason), customer
        message.status = "sending"
        message.attempts += 1
        message.updated_at = utcnow()
        session.add(message)
        try:
            session.commit()
        except IntegrityError:
            # Another attempt claimed the key between our read and write: its row decides.
            session.rollback()
            return self._claim(session, request)
        return message, customer

    def _render(
        self, session: Session, request: SendRequest, message: Message, customer: Customer
    ) -> dict[str, str]:
        environment, locales = _templates(
            self.settings.database_url, request.journey_id, request.journey_version
        )
        locale = customer.locale if customer.locale in locales else locales[0]
        context: dict[str, Any] = {
            "customer": {"first_name": customer.first_name, "locale": locale, "timezone": customer.timezone},
            "metrics": request.metrics,
            "event": request.event,
            "discount_code": message.discount_code,
            "shop": {
                "name": self.settings.shop_name,
                "url": self.settings.shop_url,
                "currency": self.settings.currency,
            },
            "links": _links(self.settings, message),
        }
        rendered = templates.render(
            environment,
            locale,
            request.channel,  # type: ignore[arg-type]
            request.template,
            context,
            seconds=self.settings.render_seconds,
        )
        if request.channel == "sms":
            message.sms_encoding, message.sms_segments = sms_encoding(rendered["txt"])
            session.add(message)
            session.commit()
            too_large = sms_size_problem(rendered["txt"])
        else:
            too_large = email_size_problem(rendered["subject.txt"], rendered["html"], rendered["txt"])
        if too_large is not None:
            raise MessageTooLarge(too_large)
        return rendered

    def _destination(self, request: SendRequest, customer: Customer) -> str:
        if request.channel == "email":
            assert customer.email is not None
            return customer.email
        assert customer.phone is not None
        return normalize_phone(customer.phone, self.settings.default_phone_region)


def _locked_customer(session: Session, customer_id: str) -> Customer | None:
    # On PostgreSQL the row lock serialises concurrent sends to one customer, so the cap
    # cannot be passed twice at once; SQLite gets the same from BEGIN IMMEDIATE.
    query = select(Customer).where(Customer.id == customer_id)
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()
    return session.exec(query).first()


def _refusal(session: Session, request: SendRequest, customer: Customer | None) -> tuple[str, str] | None:
    """Why this message must not go out, as (status, reason); None if it may."""
    if customer is None:
        return "suppressed", "no customer profile"
    address = customer.email if request.channel == "email" else customer.phone
    if not address:
        return "suppressed", f"no {'email address' if request.channel == 'email' else 'phone number'}"
    if request.channel == "email" and customer.email_suppressed:
        return "suppressed", "email suppressed after a hard bounce or spam report"
    if request.channel == "sms" and customer.sms_suppressed:
        return "suppressed", "SMS suppressed after STOP"
    if request.transactional:
        return None
    consent = customer.consent_email if request.channel == "email" else customer.consent_sms
    if not consent:
        return "suppressed", f"no marketing consent for {request.channel}"
    window_start = request.send_at - CAP_WINDOW
    recent = session.exec(
        select(func.count())
        .select_from(Message)
        .where(
            Message.customer_id == request.customer_id,
            col(Message.transactional).is_(False),
            # In flight counts too: two journeys sending at once must not both pass.
            col(Message.status).in_((*DELIVERED_STATUSES, "sending", "retrying")),
            Message.scheduled_at > window_start,
            Message.scheduled_at <= request.send_at,
            Message.idempotency_key != request.idempotency_key,
        )
    ).one()
    if recent >= CAP_MESSAGES:
        return "capped", f"frequency cap: {recent} marketing messages in the 7 days before"
    return None


def _finish(session: Session, message: Message, status: str, reason: str | None) -> Message:
    message.status = status
    message.reason = reason
    message.updated_at = utcnow()
    session.add(message)
    session.commit()
    return message


def _outcome(message: Message, customer: Customer | None) -> SendOutcome:
    assert message.id is not None
    return SendOutcome(
        message_id=message.id,
        status=message.status,
        reason=public_reason(message),
        timezone=customer.timezone if customer is not None else None,
    )


def public_reason(message: Message) -> str | None:
    """The reason as the workflow may keep it: refusals verbatim (they hold no personal data),
    failures by their kind only, since provider texts can quote an address or number."""
    if message.reason is None or message.status in ("suppressed", "capped"):
        return message.reason
    return message.reason.split(":", 1)[0]


def _discount_code() -> str:
    # Unique per message and stored with it, so the shop can honour it exactly once.
    return "CYK-" + secrets.token_hex(4).upper()


def _links(settings: Settings, message: Message) -> dict[str, str]:
    return {
        "unsubscribe": f"{settings.shop_url}/unsubscribe?m={message.id}",
        "preferences": f"{settings.shop_url}/preferences",
    }


@lru_cache(maxsize=64)
def _templates(database_url: str, journey_id: str, version: int) -> tuple[Any, list[str]]:
    """A published version's templates never change, so one environment per version serves."""
    from definition.model import Journey

    published = journey_versions.published(database_url, journey_id, version)
    locales = Journey.model_validate_json(published.definition).locales
    return templates.environment(published.templates), locales
