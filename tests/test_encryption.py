"""Payload encryption: what reaches Temporal history is unreadable without the key, still
replays with it, survives key rotation, and a missing key is an error that says which."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.api.failure.v1 import Failure
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter
from temporalio.exceptions import ApplicationError
from temporalio.worker import Replayer

from connection import data_converter
from definition.schedule import daytime_zone
from payload_encryption import (
    ENCODING,
    EncryptionCodec,
    PayloadDecryptionError,
    PayloadKeyError,
    new_payload_key,
    parse_payload_keys,
)
from publishing import publish_journeys
from routing.events import IncomingEvent
from settings import Settings
from tests.conftest import JOURNEYS, REPO, World, make_scenario
from tests.payloads import decrypted, encoding, payloads, text
from worker import build_worker
from workflows.journey import JourneyWorkflow, workflow_runner

ORDER, CATEGORY = "order-7731", "garden-furniture"


def _converter(keys: str) -> DataConverter:
    return data_converter(Settings(payload_keys=keys))


def _plain(text: str) -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=text.encode())


# --- the key ring, without a server ---------------------------------------------------------


def test_first_key_encrypts_and_every_key_decrypts() -> None:
    old, new = new_payload_key("2025-01"), new_payload_key("2026-06")
    ring = parse_payload_keys(f"{new},{old}")
    assert ring.current == "2026-06" and list(ring.by_id) == ["2026-06", "2025-01"]


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("", "holds no key"),
        ("nocolon", "entry 1: use KEY_ID:BASE64_KEY"),
        ("bad id:AAAA", "entry 1: use KEY_ID:BASE64_KEY"),
        (f"k1:{base64.b64encode(b'short').decode()}", "entry 1 (k1): the key must be 32 random bytes"),
        ("k1:!!!not base64!!!", "entry 1 (k1): the key must be 32 random bytes"),
        (f"{new_payload_key('k1')},{new_payload_key('k1')}", "entry 2: key id 'k1' appears twice"),
    ],
)
def test_a_malformed_key_ring_names_the_entry_and_never_echoes_a_key(text: str, complaint: str) -> None:
    with pytest.raises(PayloadKeyError) as error:
        parse_payload_keys(text)
    assert complaint in str(error.value)
    for entry in text.split(","):
        secret = entry.partition(":")[2]
        assert len(secret) < 8 or secret not in str(error.value)


def test_without_keys_a_process_refuses_unless_plain_text_is_chosen() -> None:
    with pytest.raises(PayloadKeyError, match="CYKLO_PAYLOAD_KEYS is not set"):
        data_converter(Settings(payload_keys=""))
    assert (
        data_converter(Settings(payload_keys="", allow_unencrypted_payloads=True)) is pydantic_data_converter
    )


async def test_rotation_old_payloads_decrypt_with_the_new_ring_and_a_dropped_key_is_named() -> None:
    old = new_payload_key("k1")
    (written,) = await EncryptionCodec(parse_payload_keys(old)).encode([_plain('"c-rot"')])
    rotated = EncryptionCodec(parse_payload_keys(f"{new_payload_key('k2')},{old}"))

    assert written.metadata["encoding"] == ENCODING and written.metadata["encryption-key-id"] == b"k1"
    assert b"c-rot" not in written.data
    assert (await rotated.decode([written]))[0].data == b'"c-rot"'
    (rewritten,) = await rotated.encode([_plain('"c-rot"')])
    assert rewritten.metadata["encryption-key-id"] == b"k2"

    with pytest.raises(PayloadDecryptionError, match="key id 'k1', which CYKLO_PAYLOAD_KEYS does not hold"):
        await EncryptionCodec(parse_payload_keys(new_payload_key("k2"))).decode([written])
    with pytest.raises(PayloadDecryptionError, match="under key id 'k1' does not decrypt"):
        await EncryptionCodec(parse_payload_keys(new_payload_key("k1"))).decode([written])


async def test_payloads_written_before_encryption_pass_through() -> None:
    codec = EncryptionCodec(parse_payload_keys(new_payload_key("k1")))
    assert (await codec.decode([_plain('"old"')]))[0].data == b'"old"'


async def test_failure_messages_are_encrypted_too() -> None:
    converter = data_converter(Settings(payload_keys=new_payload_key("k1")))
    failure = Failure()

    await converter.encode_failure(ApplicationError("could not send to ala@example.com"), failure)

    assert "ala@example.com" not in str(failure)
    assert failure.encoded_attributes.metadata["encoding"] == ENCODING
    assert "ala@example.com" in str(await converter.decode_failure(failure))


# --- on the real server ---------------------------------------------------------------------


async def test_history_on_the_server_is_encrypted_and_replays_with_the_key(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    publish_journeys(world.settings, [JOURNEYS])
    world.add_customers(make_scenario(id="c-crypt", timezone=daytime_zone(datetime.now(UTC))))
    purchase = IncomingEvent(
        event_id="crypt-1",
        customer_id="c-crypt",
        type="purchase",
        occurred_at=datetime.now(UTC),
        properties={"order_id": ORDER, "amount": 49.0, "category": CATEGORY},
    )
    with ThreadPoolExecutor(max_workers=16) as executor:
        async with build_worker(world.env.client, world.settings, executor):
            assert await world.router().route(purchase) == "accepted"
            await world.env.sleep(timedelta(hours=1))
            history = await world.env.client.get_workflow_handle("journey:lifecycle:c-crypt").fetch_history()
    raw = json.loads(history.to_json())

    found = list(payloads(raw))
    attributes = [(where, payload) for where, payload in found if "searchAttributes" in where]
    # A local activity's marker carries the SDK's own bookkeeping (sequence number, attempt,
    # times) past the codec, and a patch marker its patch id; a local activity's result goes
    # through it.
    bookkeeping = [
        (where, payload) for where, payload in found if ".details.data." in where or ".details.patch-data." in where
    ]
    encrypted = [pair for pair in found if pair not in attributes and pair not in bookkeeping]
    assert bookkeeping and all("c-crypt" not in text(payload) for _, payload in bookkeeping)
    kinds = {where.split(".")[2] for where, _ in encrypted}
    assert {"workflowExecutionStartedEventAttributes", "workflowExecutionSignaledEventAttributes"} <= kinds
    # The sends are local activities (SENDS_AS_LOCAL_ACTIVITIES): their requests and outcomes
    # are in the markers' results, encrypted like every other payload.
    sends = [where for where, _ in encrypted if where.split(".")[2] == "markerRecordedEventAttributes"]
    assert len(sends) >= 3, "prepare_journey's answer, the thank-you email's and the SMS's outcomes"
    for where, payload in encrypted:
        assert encoding(payload) == "binary/encrypted", where
        assert base64.b64decode(payload["metadata"]["encryption-key-id"]) == b"test"
    for secret in (ORDER, CATEGORY, "purchase", "thank_you"):
        assert secret not in json.dumps([payload for _, payload in encrypted]), secret
        assert not any(secret in text(payload) for _, payload in encrypted), secret
    # Search attributes are never encrypted: they hold opaque ids and stage names only.
    assert {text(payload) for _, payload in attributes} >= {'"c-crypt"', '"lifecycle"'}

    plain = await decrypted(raw, world.settings.payload_keys)
    assert ORDER in json.dumps([text(payload) for _, payload in payloads(plain)])

    rotated = f"{new_payload_key('next')},{world.settings.payload_keys}"
    for keys in (world.settings.payload_keys, rotated):
        replayer = Replayer(
            workflows=[JourneyWorkflow], data_converter=_converter(keys), workflow_runner=workflow_runner()
        )
        replayed = await replayer.replay_workflow(
            WorkflowHistory.from_json(history.workflow_id, raw), raise_on_replay_failure=False
        )
        assert replayed.replay_failure is None, replayed.replay_failure

    without_old_key = Replayer(
        workflows=[JourneyWorkflow],
        data_converter=_converter(new_payload_key("next")),
        workflow_runner=workflow_runner(),
    )
    failed = await without_old_key.replay_workflow(
        WorkflowHistory.from_json(history.workflow_id, raw), raise_on_replay_failure=False
    )
    # The task failure itself is encrypted; the worker's log says what is wrong.
    assert failed.replay_failure is not None
    assert "key id 'test', which CYKLO_PAYLOAD_KEYS does not hold (it holds next)" in caplog.text


@pytest.mark.parametrize("command", ["worker", "api"])
def test_worker_and_api_without_keys_refuse_to_start_in_one_line(command: str, tmp_path: Path) -> None:
    environment = {
        **{name: value for name, value in os.environ.items() if not name.startswith("CYKLO_")},
        "CYKLO_DATABASE_URL": f"sqlite:///{tmp_path}/cyklo.db",
        "TEMPORAL_ADDRESS": "127.0.0.1:1",  # never reached: the refusal comes first
    }
    result = subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "cli.main", command],
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 2
    assert (
        "CYKLO_PAYLOAD_KEYS is not set" in result.stderr
        and "CYKLO_ALLOW_UNENCRYPTED_PAYLOADS" in result.stderr
    )
    assert "Traceback" not in result.stderr
