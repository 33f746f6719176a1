"""Email through the real SendGrid client (pointed at the emulator in development)."""

from __future__ import annotations

import threading
import urllib.error
from dataclasses import dataclass

from python_http_client import exceptions as http_errors
from sendgrid import SendGridAPIClient
from sendgrid.helpers.mail import Category, Content, CustomArg, From, Header, Mail, Subject, To

from activities.provider_errors import ProviderAmbiguous, ProviderRejected, ProviderRetryable, never_connected
from settings import Settings

_clients = threading.local()


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


def _client(settings: Settings) -> SendGridAPIClient:
    # One client per thread and configuration: the client keeps per-call headers on
    # itself, so sharing it between activity threads would mix requests.
    key = (settings.sendgrid_host, settings.sendgrid_api_key, settings.provider_timeout_seconds)
    cache: dict[tuple[object, ...], SendGridAPIClient] = getattr(_clients, "cache", None) or {}
    _clients.cache = cache
    if key not in cache:
        client = SendGridAPIClient(api_key=settings.sendgrid_api_key, host=settings.sendgrid_host)
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
        # Per personalization: SendGrid echoes these in every webhook event.
        mail.personalizations[0].add_custom_arg(CustomArg(key, value))
    for category in email.categories:
        mail.add_category(Category(category))
    if email.unsubscribe_url:
        mail.add_header(Header("List-Unsubscribe", f"<{email.unsubscribe_url}>"))
        mail.add_header(Header("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"))
    return mail


def send_email(email: OutgoingEmail, settings: Settings) -> str:
    """Send; return SendGrid's message id. Raises ProviderRetryable or ProviderRejected."""
    try:
        response = _client(settings).send(build_mail(email, settings))
    except http_errors.HTTPError as error:
        status = getattr(error, "status_code", 0) or 0
        body = error.body.decode("utf-8", "replace") if isinstance(error.body, bytes) else str(error.body)
        if status == 429 or status >= 500:
            raise ProviderRetryable(
                f"SendGrid {status}: {body[:200]}", _retry_after(error.headers)
            ) from error
        raise ProviderRejected(str(status), f"SendGrid rejected the email: {body[:300]}") from error
    except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as error:
        if never_connected(error):
            raise ProviderRetryable(f"SendGrid unreachable: {error}") from error
        raise ProviderAmbiguous(f"SendGrid did not answer: {error}") from error
    return str(response.headers.get("X-Message-Id", ""))


def _retry_after(headers: object) -> float | None:
    value = headers.get("Retry-After") if hasattr(headers, "get") else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
