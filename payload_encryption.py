"""Encryption of everything cyklo puts into Temporal: AES-256-GCM, keys from the environment.

Workflow inputs, signals, activity arguments and results, queries, memos and failure
messages cross the Temporal server and stay in its history for the namespace retention.
They are meant to hold only ids and metrics; encrypting them means that whatever does
slip through is unreadable to anyone with access to the server but not to the key.

Keys are a ring, `CYKLO_PAYLOAD_KEYS=kid2:BASE64,kid1:BASE64`: the first encrypts, every
one decrypts, so a key is rotated by putting a new one in front and keeping the old one
until no history written under it is left. The format is the one of Temporal's samples
(`binary/encrypted`, `encryption-key-id`, 12-byte nonce before the ciphertext, the whole
inner payload encrypted) so their codec servers can show cyklo's histories in the Web UI.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

ENCODING = b"binary/encrypted"
KEY_ID = "encryption-key-id"
NONCE_BYTES = 12
KEY_BYTES = 32
KEY_ID_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class PayloadKeyError(ValueError):
    """CYKLO_PAYLOAD_KEYS is missing or malformed; the message names the entry, never a key."""


class PayloadDecryptionError(ValueError):
    """A payload cyklo encrypted cannot be decrypted with the keys this process has."""


@dataclass(frozen=True)
class PayloadKeys:
    """The key ring: `current` encrypts, every key in `by_id` decrypts."""

    current: str
    by_id: dict[str, bytes]


def parse_payload_keys(text: str) -> PayloadKeys:
    """`kid2:BASE64,kid1:BASE64` → the ring, newest first; a bad entry is an error naming it."""
    by_id: dict[str, bytes] = {}
    for number, entry in enumerate(filter(None, (part.strip() for part in text.split(","))), start=1):
        key_id, separator, encoded = entry.partition(":")
        where = f"CYKLO_PAYLOAD_KEYS entry {number}"
        if not separator or not KEY_ID_PATTERN.match(key_id):
            raise PayloadKeyError(
                f"{where}: use KEY_ID:BASE64_KEY, the id 1-64 letters, digits, '.', '_' or '-'"
            )
        if key_id in by_id:
            raise PayloadKeyError(f"{where}: key id {key_id!r} appears twice")
        try:
            key = base64.b64decode(encoded.strip() + "=" * (-len(encoded.strip()) % 4), altchars=b"-_")
        except (binascii.Error, ValueError):
            key = b""
        if len(key) != KEY_BYTES:
            raise PayloadKeyError(
                f"{where} ({key_id}): the key must be {KEY_BYTES} random bytes in base64 "
                f"(make one with `openssl rand -base64 {KEY_BYTES}`)"
            )
        by_id[key_id] = key
    if not by_id:
        raise PayloadKeyError("CYKLO_PAYLOAD_KEYS holds no key")
    return PayloadKeys(current=next(iter(by_id)), by_id=by_id)


def new_payload_key(key_id: str) -> str:
    """One ring entry with a fresh random key: `key_id:BASE64`."""
    return f"{key_id}:{base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()}"


class EncryptionCodec(PayloadCodec):
    """AES-256-GCM over whole payloads; payloads it did not encrypt pass through on decode,
    so histories written before encryption was switched on still replay."""

    def __init__(self, keys: PayloadKeys) -> None:
        self._current = keys.current
        self._ciphers = {key_id: AESGCM(key) for key_id, key in keys.by_id.items()}

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        cipher = self._ciphers[self._current]
        return [
            Payload(
                metadata={"encoding": ENCODING, KEY_ID: self._current.encode()},
                data=_encrypt(cipher, payload.SerializeToString()),
            )
            for payload in payloads
        ]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self._decode_one(payload) for payload in payloads]

    def _decode_one(self, payload: Payload) -> Payload:
        if payload.metadata.get("encoding") != ENCODING:
            return payload
        key_id = payload.metadata.get(KEY_ID, b"").decode("utf-8", "replace")
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise PayloadDecryptionError(
                f"a payload was encrypted with key id {key_id!r}, which CYKLO_PAYLOAD_KEYS does not hold "
                f"(it holds {', '.join(self._ciphers)}): put that key back at the end of the list"
            )
        data = payload.data
        try:
            plain = cipher.decrypt(data[:NONCE_BYTES], data[NONCE_BYTES:], None)
        except InvalidTag:
            raise PayloadDecryptionError(
                f"a payload under key id {key_id!r} does not decrypt: that id names a different key "
                "here than where the payload was written, or the payload was altered"
            ) from None
        decoded = Payload()
        decoded.ParseFromString(plain)
        return decoded


def _encrypt(cipher: AESGCM, plain: bytes) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    return nonce + cipher.encrypt(nonce, plain, None)
