"""All configuration, from the environment: one object, one table in README.md."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def _env(name: str) -> AliasChoices:
    return AliasChoices(name)


class Settings(BaseSettings):
    # Secrets live here: an error names the variable, never repeats its value.
    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True, hide_input_in_errors=True)

    database_url: str = Field("sqlite:///.cyklo/cyklo.db", validation_alias=_env("CYKLO_DATABASE_URL"))
    journeys_dir: Path = Field(Path("journeys"), validation_alias=_env("CYKLO_JOURNEYS_DIR"))
    publish_on_start: bool = Field(False, validation_alias=_env("CYKLO_PUBLISH_ON_START"))
    """The worker and the API publish the journeys folder when they start, as `cyklo publish`
    would: for a single box that deploys files and restarts. Otherwise they run what is published."""

    temporal_address: str = Field("127.0.0.1:7233", validation_alias=_env("TEMPORAL_ADDRESS"))
    temporal_namespace: str = Field("default", validation_alias=_env("TEMPORAL_NAMESPACE"))
    # Temporal Cloud or a cluster behind TLS: the variables Temporal's own tools read.
    temporal_api_key: str = Field("", validation_alias=_env("TEMPORAL_API_KEY"))
    """Temporal Cloud API key (sent as a bearer token); it turns TLS on."""
    temporal_tls: bool = Field(False, validation_alias=_env("TEMPORAL_TLS"))
    """TLS with the system's root certificates; a key, a client certificate or a CA turns it on too."""
    temporal_tls_client_cert_path: Path | None = Field(
        None, validation_alias=_env("TEMPORAL_TLS_CLIENT_CERT_PATH")
    )
    temporal_tls_client_key_path: Path | None = Field(
        None, validation_alias=_env("TEMPORAL_TLS_CLIENT_KEY_PATH")
    )
    """mTLS (a Temporal Cloud namespace with certificates, or a self-hosted cluster): both or neither."""
    temporal_tls_server_ca_cert_path: Path | None = Field(
        None, validation_alias=_env("TEMPORAL_TLS_SERVER_CA_CERT_PATH")
    )
    temporal_tls_server_name: str = Field("", validation_alias=_env("TEMPORAL_TLS_SERVER_NAME"))
    """The name the server's certificate is checked against, when it is not the address's host."""
    task_queue: str = Field("cyklo", validation_alias=_env("CYKLO_TASK_QUEUE"))
    workflow_cache_size: int = Field(1000, ge=0, validation_alias=_env("CYKLO_WORKFLOW_CACHE_SIZE"))
    workflow_sandbox: bool = Field(False, validation_alias=_env("CYKLO_WORKFLOW_SANDBOX"))
    """Run the journey workflow in the Temporal SDK's sandbox, which refuses a non-deterministic
    call as it happens. The tests and the replay checks run in it; a worker does not by default:
    the sandbox re-imports the workflow's module for every customer it starts or rebuilds and
    proxies what the workflow touches, which was 40 % of the worker's CPU per sign-up."""
    temporal_rpc_timeout_seconds: float = Field(
        5.0, gt=0, validation_alias=_env("CYKLO_TEMPORAL_RPC_TIMEOUT")
    )
    """Each Temporal call the API makes gives up after this; the API answers 503 instead of waiting."""
    event_budget_seconds: float = Field(10.0, gt=0, validation_alias=_env("CYKLO_EVENT_BUDGET"))
    """A POST /v1/events answers within this; events not delivered by then are not kept."""
    max_event_requests: int = Field(100, gt=0, validation_alias=_env("CYKLO_MAX_EVENT_REQUESTS"))
    """POST /v1/events requests in flight at once; one more is answered 429 at once."""
    events_per_run: int = Field(500, gt=0, validation_alias=_env("CYKLO_EVENTS_PER_RUN"))
    payload_keys: str = Field("", validation_alias=_env("CYKLO_PAYLOAD_KEYS"))
    """`KID:BASE64,KID:BASE64` (32-byte keys): the first encrypts what goes to Temporal, all decrypt."""
    allow_unencrypted_payloads: bool = Field(False, validation_alias=_env("CYKLO_ALLOW_UNENCRYPTED_PAYLOADS"))
    """Run without CYKLO_PAYLOAD_KEYS, payloads in plain text: an explicit choice, never a default."""

    sendgrid_api_key: str = Field("", validation_alias=_env("SENDGRID_API_KEY"))
    sendgrid_host: str = Field("https://api.sendgrid.com", validation_alias=_env("CYKLO_SENDGRID_HOST"))
    email_from: str = Field("shop@example.com", validation_alias=_env("CYKLO_EMAIL_FROM"))
    email_from_name: str = Field("cyklo shop", validation_alias=_env("CYKLO_EMAIL_FROM_NAME"))

    twilio_account_sid: str = Field("", validation_alias=_env("TWILIO_ACCOUNT_SID"))
    twilio_auth_token: str = Field("", validation_alias=_env("TWILIO_AUTH_TOKEN"))
    twilio_base_url: str | None = Field(None, validation_alias=_env("CYKLO_TWILIO_BASE_URL"))
    sms_from: str = Field("+48500000000", validation_alias=_env("CYKLO_SMS_FROM"))
    default_phone_region: str = Field("PL", validation_alias=_env("CYKLO_DEFAULT_PHONE_REGION"))

    webhook_secret: str = Field("", validation_alias=_env("CYKLO_WEBHOOK_SECRET"))
    """Signs every webhook step's POST (X-Cyklo-Signature); without it webhooks are recorded failed."""

    provider_timeout_seconds: float = Field(10.0, gt=0, validation_alias=_env("CYKLO_PROVIDER_TIMEOUT"))
    render_seconds: float = Field(2.0, gt=0, validation_alias=_env("CYKLO_RENDER_SECONDS"))
    """Time one message's templates may take to render; past it the message is a template error."""
    worker_metrics_port: int | None = Field(None, ge=0, le=65535, validation_alias=_env("CYKLO_WORKER_METRICS_PORT"))
    """The worker serves GET /metrics on this port (a key with the `metrics` scope); unset: none."""
    worker_metrics_host: str = Field("127.0.0.1", validation_alias=_env("CYKLO_WORKER_METRICS_HOST"))
    """Where the worker's /metrics listens: 0.0.0.0 for a Prometheus on another machine."""
    log_level: str = Field("INFO", validation_alias=_env("CYKLO_LOG_LEVEL"))
    """DEBUG, INFO, WARNING or ERROR: what cyklo's processes log (to stderr)."""

    api_keys: str = Field("", validation_alias=_env("CYKLO_API_KEYS"))
    """`KEY=scope,scope;KEY2=scope`: scopes events, support:read, support:write, reports, metrics."""
    segment_write_keys: str = Field("", validation_alias=_env("CYKLO_SEGMENT_WRITE_KEYS"))
    """`KEY,KEY2`: the write keys a Segment library (or RudderStack) may send with to /segment/v1/…"""
    segment_mapping: Path | None = Field(None, validation_alias=_env("CYKLO_SEGMENT_MAPPING"))
    """The file mapping Segment track events to cyklo events; the shipped ingestion/segment.yaml if unset."""
    session_secret: str = Field("", validation_alias=_env("CYKLO_SESSION_SECRET"))
    """Signs support page sessions; every API process behind one address needs the same one."""
    session_hours: float = Field(8.0, gt=0, le=24 * 30, validation_alias=_env("CYKLO_SESSION_HOURS"))
    max_request_bytes: int = Field(5_000_000, gt=0, validation_alias=_env("CYKLO_MAX_REQUEST_BYTES"))

    sendgrid_webhook_public_key: str = Field("", validation_alias=_env("SENDGRID_WEBHOOK_PUBLIC_KEY"))
    """The event webhook's verification key as SendGrid shows it (base64 of the DER key)."""
    public_url: str = Field("http://127.0.0.1:8000", validation_alias=_env("CYKLO_PUBLIC_URL"))
    """The API's URL as providers call it: Twilio signs that URL."""
    webhook_max_age_seconds: int = Field(600, gt=0, validation_alias=_env("CYKLO_WEBHOOK_MAX_AGE"))
    shopify_webhook_secrets: str = Field("", validation_alias=_env("CYKLO_SHOPIFY_WEBHOOK_SECRETS"))
    """The Shopify app's client secret, which signs its webhooks; during a rotation the old and
    the new, comma-separated (Shopify may sign with the old one for up to an hour)."""
    woocommerce_webhook_secret: str = Field("", validation_alias=_env("CYKLO_WOOCOMMERCE_WEBHOOK_SECRET"))
    """The secret typed into every WooCommerce webhook that points at cyklo (one for them all)."""

    global_holdout_percent: float = Field(
        0.0, ge=0, lt=100, validation_alias=_env("CYKLO_GLOBAL_HOLDOUT_PERCENT")
    )
    """This share of customers (a sticky hash of the id) gets no marketing message from any
    journey, recorded `held_out`: the control the experiments report measures the programme by."""

    shop_name: str = Field("cyklo shop", validation_alias=_env("CYKLO_SHOP_NAME"))
    shop_url: str = Field("https://shop.example.com", validation_alias=_env("CYKLO_SHOP_URL"))
    currency: str = Field("PLN", validation_alias=_env("CYKLO_CURRENCY"))

    @field_validator("log_level")
    @classmethod
    def _level_name(cls, level: str) -> str:
        if level.upper() not in LOG_LEVELS:
            raise ValueError(f"CYKLO_LOG_LEVEL: use one of {', '.join(LOG_LEVELS)}")
        return level.upper()

    @model_validator(mode="after")
    def _client_cert_with_key(self) -> Settings:
        if (self.temporal_tls_client_cert_path is None) != (self.temporal_tls_client_key_path is None):
            raise ValueError(
                "TEMPORAL_TLS_CLIENT_CERT_PATH and TEMPORAL_TLS_CLIENT_KEY_PATH: set both (mTLS) or neither"
            )
        return self
    @field_validator("segment_write_keys")
    @classmethod
    def _write_keys_long_enough(cls, text: str) -> str:
        for number, key in enumerate(filter(None, (part.strip() for part in text.split(","))), start=1):
            if len(key) < 16:
                raise ValueError(f"CYKLO_SEGMENT_WRITE_KEYS key {number}: use keys of 16 characters or more")
        return text

    @field_validator("session_secret")
    @classmethod
    def _long_enough(cls, secret: str) -> str:
        if secret and len(secret) < 32:
            raise ValueError(
                "CYKLO_SESSION_SECRET: use 32 characters or more, e.g. the output of "
                "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
            )
        return secret


def as_environment(settings: Settings) -> dict[str, str]:
    """The settings as environment variables: how a process started by another gets them."""
    found = {}
    for name, field in Settings.model_fields.items():
        value = getattr(settings, name)
        if value is not None and isinstance(field.validation_alias, AliasChoices):
            found[str(field.validation_alias.choices[0])] = str(value)
    return found


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
