"""Email through the real SendGrid client (pointed at the emulator in development)."""

from __future__ import annotations

import http.client
import threading
import urllib.error
from collections.abc import Mapping
from dataclasses import dataclass

from python_http_client import exceptions as http_errors
from sendgrid import SendGridAPIClient
from sendgrid.helpers.mail import Category, Content, CustomArg, From, Header, Mail, Subject, To

from activities.adapter import Delivery
from activities.provider_errors import (
    ProviderAmbiguous,
    ProviderRejected,
    ProviderRetryable,
    retry_after_seconds,
)
from definition.statuses import NO_CONSENT
from settings import Settings
from storage.models import Customer, Message
from workflows.interface import SendRequest

_clients = threading.local()

MAX_SUBJECT = 998
"""Characters of a subject: RFC 5322's line limit, and a subject is one line."""
MAX_BODY_BYTES = 1_000_000
"""UTF-8 bytes of the HTML and of the text body, each; SendGrid takes 30 MB in all, but an
inbox clips long before (Gmail at 102 kB) and a 1 MB body is a template gone wrong."""


@dataclass(frozen=True)
class OutgoingEmail:
    to: str
    to_name: str | None
    subject: str
    html: str
    text: str
    custom_args: dict[str, str]
    categories: list[str]
    unsubscribe_url: str | None


def size_problem(subject: str, html: str, text: str) -> str | None:
    """Why this email is too large to send, naming the cap; None if it fits."""
    if len(subject) > MAX_SUBJECT:
        return f"email subject is {len(subject):,} characters: at most {MAX_SUBJECT}"
    if "\n" in subject or "\r" in subject:
        return "email subject has a line break: a subject is one line"
    for part, body in (("HTML", html), ("text", text)):
        size = len(body.encode("utf-8", "surrogatepass"))
        if size > MAX_BODY_BYTES:
            return f"email {part} body is {size:,} bytes: at most {MAX_BODY_BYTES:,}"
    return None


def _client(settings: Settings) -> SendGridAPIClient:
    # One client per thread and configuration: the client keeps per-call headers on
    # itself, so sharing it between activity threads could mix requests.
    key = (settings.sendgrid_host, settings.sendgrid_api_key, settings.provider_timeout_seconds)
    cache: dict[tuple[str, str, float], SendGridAPIClient] = _clients.__dict__.setdefault("cache", {})
    if key not in cache:
        client = SendGridAPIClient(api_key=settings.sendgrid_api_key, host=settings.sendgrid_host)
        # The library waits for ever by default; an activity must not.
        client.client.timeout = settings.provider_timeout_seconds
        cache[key] = client
    return cache[key]


def build_mail(email: OutgoingEmail, settings: Settings) -> Mail:
    mail = Mail(
        from_email=From(settings.email_from, settings.email_from_name),
        to_emails=To(email.to, email.to_name),
        subject=Subject(email.subject),
        plain_text_content=Content("text/plain", email.text),
        html_content=Content("text/html", email.html),
    )
    for key, value in email.custom_args.items():
        # Per personalization, not top level: SendGrid echoes these in every webhook event,
        # and its spec types the top-level field as a string.
        mail.personalizations[0].add_custom_arg(CustomArg(key, value))
    for category in email.categories:
        mail.add_category(Category(category))
    if email.unsubscribe_url:
        # RFC 8058 one-click unsubscribe, which Gmail and Yahoo require of bulk senders.
        mail.add_header(Header("List-Unsubscribe", f"<{email.unsubscribe_url}>"))
        mail.add_header(Header("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"))
    return mail


def send_email(email: OutgoingEmail, settings: Settings) -> str:
    """Send; return SendGrid's message id (X-Message-Id).

    Raises ProviderRetryable (429, 5xx, never connected), ProviderRejected (other 4xx) or
    ProviderAmbiguous (the request went out but no answer came back)."""
    if not settings.sendgrid_api_key:
        # The library would send `Bearer None`; say what is wrong instead.
        raise ProviderRejected("configuration", "SENDGRID_API_KEY is not set")
    try:
        response = _client(settings).send(build_mail(email, settings))
    except http_errors.HTTPError as error:
        status = int(error.status_code or 0)
        body = error.body.decode("utf-8", "replace") if isinstance(error.body, bytes) else str(error.body)
        if status == 429 or status >= 500:
            raise ProviderRetryable(
                f"SendGrid {status}: {body[:200]}", retry_after_seconds(error.headers)
            ) from error
        raise ProviderRejected(str(status), f"SendGrid rejected the email: {body[:300]}") from error
    except urllib.error.URLError as error:
        # urllib raises URLError only while connecting or writing the request; HTTP errors
        # became HTTPError above. So SendGrid cannot have read the whole request: safe to resend.
        raise ProviderRetryable(f"SendGrid unreachable: {error.reason}") from error
    except (OSError, http.client.HTTPException) as error:
        # Raised while waiting for or reading the answer: the request was sent in full.
        raise ProviderAmbiguous(f"SendGrid did not answer: {type(error).__name__}: {error}") from error
    return str(response.headers.get("X-Message-Id", ""))


class EmailChannel:
    """The email adapter (activities.adapter.ChannelAdapter)."""

    def refusal(self, customer: Customer, transactional: bool) -> str | None:
        if not customer.email:
            return "no email address"
        if customer.email_suppressed:
            return "email suppressed after a hard bounce or spam report"
        if not transactional and not customer.consent_email:
            return f"{NO_CONSENT} for email"
        return None

    def destination(self, customer: Customer, request: SendRequest, settings: Settings) -> str:
        assert customer.email is not None, "refused when claimed"
        return customer.email

    def check(self, message: Message, rendered: Mapping[str, str]) -> str | None:
        return size_problem(rendered["subject.txt"], rendered["html"], rendered["txt"])

    def deliver(self, delivery: Delivery, settings: Settings) -> str | None:
        request = delivery.request
        email = OutgoingEmail(
            to=delivery.destination,
            to_name=delivery.first_name,
            subject=delivery.rendered["subject.txt"],
            html=delivery.rendered["html"],
            text=delivery.rendered["txt"],
            custom_args={
                "cyklo_message_id": str(delivery.message_id),
                "customer_id": request.customer_id,
                "journey_id": request.journey_id,
            },
            categories=[request.journey_id, request.template],
            unsubscribe_url=delivery.unsubscribe_url,
        )
        return send_email(email, settings)
