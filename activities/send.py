"""The send activity: claim → render → deliver → record, exactly once.

The ledger row for a step occurrence is claimed (unique idempotency key), checked for
consent and cap, rendered and committed as `sending` in one transaction, just before the
provider is called. A retry that finds `sending` cannot know whether the provider took the
message, so it records the message failed instead of risking a duplicate: at most once.

Errors stay at their depth: only the render's own errors make a `template error`. A database
error (reading templates, claiming, recording) leaves the activity to its retry policy, the
claim rolled back when the provider was not called, so the message goes out later, once; a
provider's id already got is kept in the activity's heartbeat, so a retry only records it (a
local activity, which has no heartbeat, waits for the database within its attempt instead).
"""

from __future__ import annotations

import logging
import secrets
import time
from datetime import timedelta
from functools import lru_cache
from typing import cast

from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlmodel import Session, col, func, select
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.adapter import ChannelAdapter, Delivery
from activities.channels import adapter_for
from activities.metrics import MESSAGES, provider_call
from activities.prepare import record_entries
from activities.provider_errors import ProviderAmbiguous, ProviderRejected, ProviderRetryable
from activities.rendering import customer_view, links_view, render_message, template_context
from definition import templates
from definition.channels import CUSTOMER_CHANNELS
from definition.context import EventView
from definition.holdout import in_global_holdout
from definition.model import conversion_window
from definition.phones import InvalidPhone
from definition.program import Send, compile_journey
from definition.sandbox import BoundedEnvironment, LimitExceeded
from definition.statuses import COUNTS_TOWARD_CAP, MessageStatus
from settings import Settings
from storage import journey_versions, ledger
from storage.database import session_for
from storage.models import Customer, Message, utcnow
from workflows.interface import SendOutcome, SendRequest
from workflows.retries import SEND_MAX_ATTEMPTS

CAP_MESSAGES = 3
CAP_WINDOW = timedelta(days=7)
RECORD_SENT_PAUSES = (0.5, 1.0, 2.0, 4.0, 8.0)
"""Seconds between the tries of recording a local send the provider took: 15.5 s in all,
inside the send's 30 s start-to-close timeout."""

log = logging.getLogger(__name__)


class MessageTooLarge(ValueError):
    """The rendered message is over its channel's cap: the template's fault, so never sent."""


class MessageSender:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @activity.defn(name="send_message")
    def send_message(self, request: SendRequest) -> SendOutcome:
        outcome = self._send(request)
        MESSAGES.labels(request.channel, outcome.status).inc()
        # Ids and statuses only: the reason kept here is the public one, without provider text.
        log.info(
            "send %s message %s %s/%s attempt %s: %s%s",
            request.channel,
            outcome.message_id,
            request.journey_id,
            request.template,
            activity.info().attempt,
            outcome.status,
            f" ({outcome.reason})" if outcome.reason else "",
        )
        return outcome

    def _send(self, request: SendRequest) -> SendOutcome:
        channel = adapter_for(request.channel)
        delivered = _delivered_before()
        if delivered is not None:
            return self._record_sent(*delivered)
        environment, locales = _templates(
            self.settings.database_url, request.journey_id, request.journey_version
        )
        with session_for(self.settings.database_url) as session:
            message, customer = self._claim(session, request)
            if message.status != MessageStatus.PENDING:
                return _outcome(message, customer)
            assert customer is not None, "a message without a profile is suppressed when claimed"
            try:
                destination = channel.destination(customer, request, self.settings)
            except InvalidPhone as problem:
                return _outcome(finish(session, message, MessageStatus.FAILED, str(problem)), customer)
            try:
                rendered = self._render(environment, locales, request, message, customer)
                too_large = channel.check(message, rendered)
                if too_large is not None:
                    raise MessageTooLarge(too_large)
            except (LimitExceeded, MessageTooLarge, templates.OutputNotJson) as problem:
                return _outcome(
                    finish(session, message, MessageStatus.FAILED, f"template error: {problem}"), customer
                )
            except Exception as problem:  # the template's own error at render time, whatever it is
                reason = f"template error: {type(problem).__name__}: {problem}"
                return _outcome(finish(session, message, MessageStatus.FAILED, reason), customer)
            _mark_sending(session, message)
        return self._deliver(channel, request, message, customer, destination, rendered)

    def _deliver(
        self,
        channel: ChannelAdapter,
        request: SendRequest,
        message: Message,
        customer: Customer,
        destination: str,
        rendered: dict[str, str],
    ) -> SendOutcome:
        assert message.id is not None
        links = links_view(self.settings, message.id)
        delivery = Delivery(
            request=request,
            message_id=message.id,
            destination=destination,
            first_name=customer.first_name,
            rendered=rendered,
            unsubscribe_url=None if request.transactional else links["unsubscribe"],
        )
        try:
            with provider_call(request.channel):
                provider_id = channel.deliver(delivery, self.settings)
        except ProviderRetryable as problem:
            with session_for(self.settings.database_url) as session:
                if activity.info().attempt >= SEND_MAX_ATTEMPTS:
                    failed = finish(
                        session, message, MessageStatus.FAILED, f"provider unavailable: {problem.message}"
                    )
                    return _outcome(failed, customer)
                finish(session, message, MessageStatus.RETRYING, problem.message)
            raise ApplicationError(
                f"provider busy or down, will retry: {problem.message}",
                type="ProviderRetryable",
                next_retry_delay=timedelta(seconds=problem.retry_after) if problem.retry_after else None,
            ) from problem
        except ProviderAmbiguous as problem:
            reason = f"{ledger.OUTCOME_UNKNOWN}: {problem.message}; not resent, to avoid a duplicate"
            with session_for(self.settings.database_url) as session:
                return _outcome(ledger.record_outcome_unknown(session, message.id, reason), customer)
        except ProviderRejected as problem:
            with session_for(self.settings.database_url) as session:
                return _outcome(
                    finish(session, message, MessageStatus.FAILED, f"{problem.code}: {problem.message}"),
                    customer,
                )
        if activity.info().is_local:
            return self._record_sent_within_attempt(message.id, provider_id, customer)
        # The provider took it: should recording fail, the next attempt finds this and only records.
        activity.heartbeat(message.id, provider_id)
        return self._record_sent(message.id, provider_id, customer)

    def _record_sent_within_attempt(
        self, message_id: int, provider_id: str | None, customer: Customer
    ) -> SendOutcome:
        """A local activity has no heartbeat to hand the provider's id to its next attempt,
        which would find the row `sending` and could only record the outcome unknown: so a
        database that fails here is waited for in this attempt, within its timeout."""
        for pause in RECORD_SENT_PAUSES:
            try:
                return self._record_sent(message_id, provider_id, customer)
            except DBAPIError as problem:
                log.warning("recording message %s sent failed, again in %s s: %s", message_id, pause, problem)
                time.sleep(pause)
        return self._record_sent(message_id, provider_id, customer)

    def _record_sent(
        self, message_id: int, provider_id: str | None, customer: Customer | None = None
    ) -> SendOutcome:
        with session_for(self.settings.database_url) as session:
            status, reason, customer_id = ledger.record_sent(session, message_id, provider_id)
            if customer is None:  # a retry that only records what an earlier attempt sent
                customer = session.get(Customer, customer_id)
            return SendOutcome(
                message_id=message_id,
                status=status,
                reason=public_reason(status, reason),
                timezone=customer.timezone if customer is not None else None,
            )

    def _claim(self, session: Session, request: SendRequest) -> tuple[Message, Customer | None]:
        """Find or create the ledger row and decide, under the customer's lock, whether to send:
        `pending` (flushed, uncommitted: the caller renders and commits it as `sending`) if it
        may go, otherwise what the row already says or the refusal, committed."""
        customer = _locked_customer(session, request.customer_id)
        message = session.exec(
            select(Message).where(Message.idempotency_key == request.idempotency_key)
        ).first()
        if message is not None and MessageStatus(message.status).final:
            session.rollback()
            return message, customer
        if message is not None and message.status == MessageStatus.SENDING:
            reason = (
                f"{ledger.OUTCOME_UNKNOWN}: an earlier attempt stopped during the provider call; not resent"
            )
            return finish(session, message, MessageStatus.FAILED, reason), customer
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
                status=MessageStatus.PENDING,
                discount_code=_discount_code(),
                scheduled_at=request.send_at,
                held_since=request.held_since,
                conversion_window_seconds=_conversion_window_seconds(self.settings.database_url, request),
            )
            # Committed with the claim, so a retry that finds the row finds the entries too.
            record_entries(session, request.journey_id, request.customer_id, request.entered)
        refusal = _refusal(session, request, customer, self.settings.global_holdout_percent)
        if refusal is not None:
            status, reason = refusal
            return finish(session, message, status, reason), customer
        message.status = MessageStatus.PENDING
        message.attempts += 1
        message.updated_at = utcnow()
        session.add(message)
        try:
            # Flushed, not committed: the row is decided with the render, in this transaction.
            session.flush()
        except IntegrityError:
            # Another attempt claimed the key between our read and write: its row decides.
            session.rollback()
            return self._claim(session, request)
        return message, customer

    def _render(
        self,
        environment: BoundedEnvironment,
        locales: list[str],
        request: SendRequest,
        message: Message,
        customer: Customer,
    ) -> dict[str, str]:
        assert message.id is not None and message.discount_code is not None, "both set when claimed"
        context = template_context(
            customer_view(customer.first_name, customer.locale, customer.timezone, locales),
            request.metrics,
            cast(EventView, request.event),
            message.discount_code,
            links_view(self.settings, message.id),
            self.settings,
        )
        return render_message(environment, request.channel, request.template, context, self.settings)


def _delivered_before() -> tuple[int, str | None] | None:
    """(message id, provider id) if an earlier attempt handed the message over and then could
    not record it (the database failed): this attempt must record it, never send it again."""
    details = activity.info().heartbeat_details
    if len(details) != 2:
        return None
    message_id, provider_id = details
    return int(message_id), (str(provider_id) if provider_id is not None else None)


def _mark_sending(session: Session, message: Message) -> None:
    """`sending`, committed before the call, so that a later attempt knows the provider may
    have it. The claim's transaction still holds the customer's lock (SQLite's write lock,
    PostgreSQL's row lock), so no other attempt can have taken the row in between."""
    message.status = MessageStatus.SENDING
    message.updated_at = utcnow()
    session.add(message)
    session.commit()


def _locked_customer(session: Session, customer_id: str) -> Customer | None:
    # On PostgreSQL the row lock serialises concurrent sends to one customer, so the cap
    # cannot be passed twice at once; SQLite gets the same from BEGIN IMMEDIATE.
    query = select(Customer).where(Customer.id == customer_id)
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()
    return session.exec(query).first()


def _refusal(
    session: Session, request: SendRequest, customer: Customer | None, holdout_percent: float
) -> tuple[MessageStatus, str] | None:
    """Why this message must not go out, as (status, reason); None if it may."""
    if customer is None:
        return MessageStatus.SUPPRESSED, "no customer profile"
    refused = adapter_for(request.channel).refusal(customer, request.transactional)
    if refused is not None:
        return MessageStatus.SUPPRESSED, refused
    if request.transactional or not request.channel.reaches_customer:
        return None
    # After consent: a customer who may not be messaged anyway stays counted as suppressed.
    if in_global_holdout(request.customer_id, holdout_percent):
        return MessageStatus.HELD_OUT, "global control group: no marketing message"
    window_start = request.send_at - CAP_WINDOW
    recent = session.exec(
        select(func.count())
        .select_from(Message)
        .where(
            Message.customer_id == request.customer_id,
            col(Message.transactional).is_(False),
            col(Message.test).is_(False),
            col(Message.channel).in_(CUSTOMER_CHANNELS),
            # In flight counts too: two journeys sending at once must not both pass.
            col(Message.status).in_(COUNTS_TOWARD_CAP),
            Message.scheduled_at > window_start,
            Message.scheduled_at <= request.send_at,
            Message.idempotency_key != request.idempotency_key,
        )
    ).one()
    if recent >= CAP_MESSAGES:
        return MessageStatus.CAPPED, f"frequency cap: {recent} marketing messages in the 7 days before"
    return None


def finish(session: Session, message: Message, status: MessageStatus, reason: str | None) -> Message:
    """Record the row's status and reason (also for activities.send_test)."""
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
        reason=public_reason(MessageStatus(message.status), message.reason),
        timezone=customer.timezone if customer is not None else None,
    )


def public_reason(status: MessageStatus, reason: str | None) -> str | None:
    """The reason as the workflow may keep it: refusals verbatim (they hold no personal data),
    failures by their kind only, since provider texts can quote an address or number."""
    refusals = (MessageStatus.SUPPRESSED, MessageStatus.CAPPED, MessageStatus.HELD_OUT)
    if reason is None or status in refusals:
        return reason
    return reason.split(":", 1)[0]


def _discount_code() -> str:
    # Unique per message and stored with it, so the shop can honour it exactly once.
    return "CYK-" + secrets.token_hex(4).upper()


def _conversion_window_seconds(database_url: str, request: SendRequest) -> int | None:
    """The window the published step (or its journey) gives this send, kept on its row."""
    windows = _conversion_windows(database_url, request.journey_id, request.journey_version)
    # A step in a repeat carries its iteration (`…/flow/1#3`): the window is the step's.
    return windows.get(request.step.split("#", 1)[0])


@lru_cache(maxsize=64)
def _conversion_windows(database_url: str, journey_id: str, version: int) -> dict[str, int | None]:
    """Every send step's conversion window in seconds, by step path, of a published version."""
    compiled = compile_journey(journey_versions.published(database_url, journey_id, version).definition)
    windows: dict[str, int | None] = {}
    for program in compiled.programs.values():
        for instruction in program:
            if isinstance(instruction, Send):
                window = conversion_window(compiled.definition, instruction.spec)
                windows[instruction.path] = int(window.total_seconds()) if window is not None else None
    return windows


@lru_cache(maxsize=64)
def _templates(database_url: str, journey_id: str, version: int) -> tuple[BoundedEnvironment, list[str]]:
    """A published version's templates never change, so one environment per version serves."""
    from definition.model import Journey

    published = journey_versions.published(database_url, journey_id, version)
    locales = Journey.model_validate_json(published.definition).locales
    return templates.environment(published.templates), locales
