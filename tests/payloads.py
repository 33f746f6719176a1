"""Looking inside raw Temporal histories (as `WorkflowHistory.to_json()` writes them)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

from google.protobuf import json_format
from temporalio.api.common.v1 import Payload

from payload_encryption import EncryptionCodec, parse_payload_keys


def payloads(node: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, payload) for every payload of a history, search attributes included."""
    if isinstance(node, dict):
        if isinstance(node.get("metadata"), dict) and "encoding" in node["metadata"]:
            yield path, node
            return
        for key, value in node.items():
            yield from payloads(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, item in enumerate(node):
            yield from payloads(item, f"{path}[{index}]")


def encoding(payload: dict[str, Any]) -> str:
    return base64.b64decode(payload["metadata"]["encoding"]).decode()


def text(payload: dict[str, Any]) -> str:
    return base64.b64decode(payload.get("data", "")).decode("utf-8", "replace")


async def decrypted(node: Any, keys: str) -> Any:
    """The history with every payload decrypted by the key ring `keys` (CYKLO_PAYLOAD_KEYS form)."""
    codec = EncryptionCodec(parse_payload_keys(keys))

    async def walk(value: Any) -> Any:
        if isinstance(value, dict):
            if isinstance(value.get("metadata"), dict) and "encoding" in value["metadata"]:
                (plain,) = await codec.decode([json_format.ParseDict(value, Payload())])
                return json_format.MessageToDict(plain)
            return {key: await walk(item) for key, item in value.items()}
        if isinstance(value, list):
            return [await walk(item) for item in value]
        return value

    return await walk(node)
