"""A test send (`cyklo send-test`): one message to a tester's address or phone, rendered as
a preview is and delivered through the channel's adapter, the real provider path.

It is written to the ledger like any send (claimed before the provider call, completed after),
so every message that left is on record, but marked `test`: the frequency cap and reports
leave it out, and no consent, quiet hours or suppression applies, since the tester asked for it.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from email_validator import EmailNotValidError, validate_email
from sqlmodel import Session

from activities.adapter import Delivery
from activities.channels import adapter_for
from activities.previews import JourneyMessage, PreviewRefused, TemplateFailed
from activities.provider_errors import ProviderAmbiguous, ProviderRejected, ProviderRetryable
from activities.rendering import links_view, render_message, sample_context
from activities.send import finish
from definition.channels import Channel
from definition.context import CustomerView, EventView
from definition.model import Journey
from definition.phones import InvalidPhone, normalize_phone
from definition.problems import ProblemsForPeople
from definition.sandbox import BoundedEnvironment
from definition.statuses import MessageStatus
from definition.templates import TEMPLATE_ERROR
from settings import Settings
from storage.database import migrate, session_for
from storage.models import Message, utcnow
from workflows.interface import SendRequest

FILES_VERSION = 0
"""The ledger's journey version of a test send: the journey files as they are, unpublished."""
TEST_STEP = "send-test"


class SendTestFailed(ProblemsForPeople):
    """The provider refused or did not answer; the ledger row says `failed` with the reason."""


@dataclass(frozen=True)
class SendTestResult:
    message_id: int
    """The ledger row."""
    provider_message_id: str | None
    locale: str


def channel_for(to: str) -> Channel:
    """An address with @ is an email's, anything else a phone number."""
    return Channel.EMAIL if "@" in to else Channel.SMS


def send_test(
    settings: Settings,
    environment: BoundedEnvironment,
    journey: Journey,
    message: JourneyMessage,
    to: str,
    customer_id: str,
    customer: CustomerView | None = None,
    event: EventView | None = None,
    locale: str | None = None,
) -> SendTestResult:
    """Render `message` as a preview does and hand it to its provider for `to`, on record.

    Raises PreviewRefused (`to` is no address or number of the channel), TemplateFailed or
    SendTestFailed (the provider refused or did not answer); the row says which, but for the
    first, which writes none."""
    channel = message.send.channel
    destination = _destination(channel, to, settings)
    migrate(settings.database_url)
    adapter = adapter_for(channel)
    with session_for(settings.database_url) as session:
        row = _claim(session, journey, message, customer_id)
        assert row.id is not None
        context = sample_context(
            settings, journey.locales, customer, event, locale, links=links_view(settings, row.id)
        )
        try:
            rendered = render_message(environment, channel, message.send.template, context, settings)
            too_large = adapter.check(row, rendered)
        except Exception as problem:  # the template's own error at render time, whatever it is
            too_large = f"{type(problem).__name__}: {problem}"
        if too_large is not None:
            finish(session, row, MessageStatus.FAILED, f"{TEMPLATE_ERROR}: {too_large}")
            raise TemplateFailed(
                f"{journey.journey} {channel} {message.send.template}: {TEMPLATE_ERROR}: {too_large}"
            ) from None
        finish(session, row, MessageStatus.SENDING, None)
        delivery = Delivery(
            request=SendRequest(
                idempotency_key=row.idempotency_key,
                customer_id=customer_id,
                journey_id=journey.journey,
                journey_version=FILES_VERSION,
                stage=message.stage,
                step=TEST_STEP,
                channel=channel,
                template=message.send.template,
                transactional=message.send.transactional,
                send_at=row.scheduled_at,
                metrics=context["metrics"],
                event=dict(context["event"]),
            ),
            message_id=row.id,
            destination=destination,
            first_name=context["customer"]["first_name"],
            rendered=rendered,
            unsubscribe_url=None if message.send.transactional else context["links"]["unsubscribe"],
        )
    # Outside any transaction, as the send activity calls it: SQLite would stay locked meanwhile.
    try:
        provider_id: str | None = adapter.deliver(delivery, settings)
        status, reason = MessageStatus.SENT, None
    except (ProviderRetryable, ProviderRejected, ProviderAmbiguous) as problem:
        provider_id, status, reason = None, MessageStatus.FAILED, str(problem)
    with session_for(settings.database_url) as session:
        row = session.get_one(Message, delivery.message_id)
        row.provider_message_id = provider_id or None
        finish(session, row, status, reason)
    if reason is not None:
        raise SendTestFailed(f"test send {delivery.message_id} failed: {reason}")
    return SendTestResult(delivery.message_id, provider_id or None, context["customer"]["locale"])


def _destination(channel: Channel, to: str, settings: Settings) -> str:
    match channel:
        case Channel.EMAIL:
            try:
                return validate_email(to, check_deliverability=False).normalized
            except EmailNotValidError as error:
                raise PreviewRefused(f"--to {to!r} is not an email address: {error}") from None
        case Channel.SMS:
            try:
                return normalize_phone(to, settings.default_phone_region)
            except InvalidPhone as error:
                raise PreviewRefused(f"--to: {error}") from None
        case Channel.WEBHOOK:
            raise PreviewRefused("a webhook goes to the journey's own url: send-test sends email and SMS")


def _claim(session: Session, journey: Journey, message: JourneyMessage, customer_id: str) -> Message:
    row = Message(
        # Its own key: a test send is never the occurrence of a journey step.
        idempotency_key=f"test:{secrets.token_hex(12)}",
        customer_id=customer_id,
        journey_id=journey.journey,
        journey_version=FILES_VERSION,
        stage=message.stage,
        step=TEST_STEP,
        channel=message.send.channel,
        template=message.send.template,
        transactional=message.send.transactional,
        test=True,
        status=MessageStatus.PENDING,
        attempts=1,
        scheduled_at=utcnow(),
    )
    session.add(row)
    session.commit()
    session.refresh(row)
    return row
