"""Temporal Cloud and TLS clusters from the environment: what each set of variables makes of
`Client.connect`'s namespace, API key and TLS (docs/deploy.md)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import AliasChoices, ValidationError
from temporalio.service import TLSConfig

from connection import server_arguments
from settings import Settings

pytestmark = pytest.mark.unit


def settings_from(monkeypatch: pytest.MonkeyPatch, **variables: str) -> Settings:
    for field in Settings.model_fields.values():
        if isinstance(field.validation_alias, AliasChoices):
            monkeypatch.delenv(str(field.validation_alias.choices[0]), raising=False)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    return Settings()


def test_a_local_dev_server_is_plain_grpc_in_the_default_namespace(monkeypatch: pytest.MonkeyPatch) -> None:
    assert server_arguments(settings_from(monkeypatch)) == {"namespace": "default", "api_key": None, "tls": False}


def test_a_temporal_cloud_api_key_is_sent_and_turns_tls_on(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = settings_from(
        monkeypatch,
        TEMPORAL_ADDRESS="eu-west-1.aws.api.temporal.io:7233",
        TEMPORAL_NAMESPACE="shop.a1b2c",
        TEMPORAL_API_KEY="key-from-the-cloud-ui",
    )
    assert server_arguments(settings) == {
        "namespace": "shop.a1b2c",
        "api_key": "key-from-the-cloud-ui",
        "tls": True,
    }


def test_client_certificate_and_key_files_make_an_mtls_config(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "client.pem").write_bytes(b"CERT")
    (tmp_path / "client.key").write_bytes(b"KEY")
    (tmp_path / "ca.pem").write_bytes(b"CA")
    settings = settings_from(
        monkeypatch,
        TEMPORAL_NAMESPACE="shop.a1b2c",
        TEMPORAL_TLS_CLIENT_CERT_PATH=str(tmp_path / "client.pem"),
        TEMPORAL_TLS_CLIENT_KEY_PATH=str(tmp_path / "client.key"),
        TEMPORAL_TLS_SERVER_CA_CERT_PATH=str(tmp_path / "ca.pem"),
        TEMPORAL_TLS_SERVER_NAME="temporal.internal",
    )
    assert server_arguments(settings) == {
        "namespace": "shop.a1b2c",
        "api_key": None,
        "tls": TLSConfig(
            server_root_ca_cert=b"CA", domain="temporal.internal", client_cert=b"CERT", client_private_key=b"KEY"
        ),
    }


def test_tls_alone_uses_the_system_roots(monkeypatch: pytest.MonkeyPatch) -> None:
    assert server_arguments(settings_from(monkeypatch, TEMPORAL_TLS="true"))["tls"] is True


def test_a_certificate_without_its_key_is_refused_naming_both_variables(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with pytest.raises(ValidationError, match="TEMPORAL_TLS_CLIENT_CERT_PATH and TEMPORAL_TLS_CLIENT_KEY_PATH"):
        settings_from(monkeypatch, TEMPORAL_TLS_CLIENT_CERT_PATH=str(tmp_path / "client.pem"))


def test_an_unreadable_certificate_file_names_its_variable_and_path(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    missing = tmp_path / "nowhere.pem"
    settings = settings_from(
        monkeypatch, TEMPORAL_TLS_CLIENT_CERT_PATH=str(missing), TEMPORAL_TLS_CLIENT_KEY_PATH=str(missing)
    )
    with pytest.raises(ValueError, match=f"TEMPORAL_TLS_CLIENT_CERT_PATH: cannot read {missing}: No such file"):
        server_arguments(settings)
