"""Envelope encryption of secrets: a fresh data key per secret, wrapped by a KEK.

``seal`` draws a random 256-bit data key, encrypts the plaintext with it (AES-256-GCM, random
96-bit nonce) and wraps the data key with the keyring's active KEK (AES-256-GCM, its own
random nonce). The data key lives in a local variable for the length of one call; nothing
caches it.

Both encryptions carry associated data, so a stored blob is only valid where it was sealed:

- payload: ``b"tgfleet/session/v1\\x00" || account_id (16 bytes) || version (8 bytes, big-endian)``
- wrapped key: ``b"tgfleet/data-key/v1\\x00" || kek_id (ASCII) || b"\\x00" || account_id ||
  version``

A ciphertext or a wrapped key copied to another account, or to another version of the same
account's secret, fails authentication; so does a wrapped key relabelled with another KEK id.
The payload's associated data leaves out the KEK id on purpose: ``rewrap`` changes the KEK
and must leave the payload untouched.

Random nonces are safe here: a data key encrypts exactly one message, and a KEK would have to
wrap about 2**32 data keys before a nonce collision became a concern (NIST SP 800-38D), which
is far beyond a fleet's size between rotations.

Every failure is a ``DecryptError`` whose message names the KEK id at most, never key
material or plaintext.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from functools import lru_cache

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tgfleet.vault.exceptions import DecryptError
from tgfleet.vault.kek import Kek, Keyring

NONCE_BYTES = 12
DATA_KEY_BYTES = 32
TAG_BYTES = 16
WRAPPED_KEY_BYTES = NONCE_BYTES + DATA_KEY_BYTES + TAG_BYTES
PAYLOAD_AAD_DOMAIN = b"tgfleet/session/v1\x00"
WRAP_AAD_DOMAIN = b"tgfleet/data-key/v1\x00"
_MAX_VERSION = 2**64 - 1


@dataclass(frozen=True, slots=True)
class Envelope:
    """A sealed secret as stored: which KEK wraps its data key, the wrapped key, the payload.

    Constructing one checks nothing: an envelope read from the database may be damaged, and
    ``open_envelope`` reports that as a ``DecryptError``.
    """

    kek_id: str
    #: 12-byte nonce || AES-256-GCM(KEK, data key, wrap AAD): 60 bytes.
    wrapped_key: bytes
    #: 12 bytes, the payload's nonce.
    nonce: bytes
    #: AES-256-GCM(data key, plaintext, payload AAD), the 16-byte tag included.
    ciphertext: bytes


def seal(keyring: Keyring, plaintext: bytes, *, account_id: uuid.UUID, version: int) -> Envelope:
    """Encrypt ``plaintext`` for ``account_id`` at ``version`` under a fresh data key."""
    _check_version(version)
    kek = keyring.active
    data_key = AESGCM.generate_key(bit_length=DATA_KEY_BYTES * 8)
    nonce = os.urandom(NONCE_BYTES)
    ciphertext = AESGCM(data_key).encrypt(nonce, plaintext, _payload_aad(account_id, version))
    return Envelope(
        kek_id=kek.id,
        wrapped_key=_wrap(kek, data_key, account_id=account_id, version=version),
        nonce=nonce,
        ciphertext=ciphertext,
    )


def open_envelope(
    keyring: Keyring, envelope: Envelope, *, account_id: uuid.UUID, version: int
) -> bytes:
    """The plaintext of ``envelope``, sealed for ``account_id`` at ``version``.

    DecryptError if the KEK is retired or unknown (the message names its id), if any byte of
    the envelope was changed, or if it was sealed for another account or version.
    """
    _check_version(version)
    if len(envelope.nonce) != NONCE_BYTES:
        msg = f"the payload nonce is {len(envelope.nonce)} bytes, expected {NONCE_BYTES}"
        raise DecryptError(msg)
    if len(envelope.ciphertext) < TAG_BYTES:
        msg = f"the ciphertext is {len(envelope.ciphertext)} bytes, shorter than its tag"
        raise DecryptError(msg)
    data_key = _unwrap(keyring, envelope, account_id=account_id, version=version)
    try:
        return AESGCM(data_key).decrypt(
            envelope.nonce, envelope.ciphertext, _payload_aad(account_id, version)
        )
    except InvalidTag:
        msg = (
            "the ciphertext failed authentication: it was altered, or was sealed for "
            "another account or version"
        )
        raise DecryptError(msg) from None


def rewrap(
    keyring: Keyring,
    envelope: Envelope,
    *,
    account_id: uuid.UUID,
    version: int,
    to_kek_id: str | None = None,
) -> Envelope:
    """``envelope`` with its data key re-wrapped by ``to_kek_id`` (default: the active KEK).

    The payload nonce and ciphertext are returned untouched and the plaintext is never
    decrypted, so a rotation handles no secret in the clear. The wrapped key is authenticated
    (DecryptError as in ``open_envelope``); the payload is not checked. Re-wrapping to the KEK
    that already wraps it is allowed and gives a fresh wrapping nonce.
    """
    _check_version(version)
    target = keyring.active if to_kek_id is None else keyring.get(to_kek_id)
    data_key = _unwrap(keyring, envelope, account_id=account_id, version=version)
    return Envelope(
        kek_id=target.id,
        wrapped_key=_wrap(target, data_key, account_id=account_id, version=version),
        nonce=envelope.nonce,
        ciphertext=envelope.ciphertext,
    )


def _wrap(kek: Kek, data_key: bytes, *, account_id: uuid.UUID, version: int) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    aad = _wrap_aad(kek.id, account_id, version)
    return nonce + _kek_cipher(_material(kek)).encrypt(nonce, data_key, aad)


@lru_cache(maxsize=16)
def _kek_cipher(key: bytes) -> AESGCM:
    """One AESGCM per KEK, reused: building it costs as much as a small decrypt, and the
    key already lives in the keyring for the life of the process. Data keys are never
    cached."""
    return AESGCM(key)


def _unwrap(keyring: Keyring, envelope: Envelope, *, account_id: uuid.UUID, version: int) -> bytes:
    kek = keyring.get(envelope.kek_id)
    wrapped = envelope.wrapped_key
    if len(wrapped) != WRAPPED_KEY_BYTES:
        msg = f"the wrapped data key is {len(wrapped)} bytes, expected {WRAPPED_KEY_BYTES}"
        raise DecryptError(msg)
    aad = _wrap_aad(kek.id, account_id, version)
    try:
        return _kek_cipher(_material(kek)).decrypt(
            wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], aad
        )
    except InvalidTag:
        msg = (
            f"the data key did not unwrap with key-encryption key {kek.id}: the wrapped key "
            f"was altered, or was sealed for another account or version"
        )
        raise DecryptError(msg) from None


def _material(kek: Kek) -> bytes:
    if kek.key is None:
        # Keyring.get and Keyring.active only hand out usable KEKs; this is the type's due.
        msg = f"key-encryption key {kek.id} is not in the keyring (retired)"
        raise DecryptError(msg)
    return kek.key


def _payload_aad(account_id: uuid.UUID, version: int) -> bytes:
    return PAYLOAD_AAD_DOMAIN + account_id.bytes + version.to_bytes(8, "big")


def _wrap_aad(kek_id: str, account_id: uuid.UUID, version: int) -> bytes:
    # The NUL ends the variable-length id, so no two (id, account, version) share an AAD.
    return (
        WRAP_AAD_DOMAIN
        + kek_id.encode("ascii")
        + b"\x00"
        + account_id.bytes
        + version.to_bytes(8, "big")
    )


def _check_version(version: int) -> None:
    # A caller bug, not a damaged blob: refuse before touching any key.
    if not 0 <= version <= _MAX_VERSION:
        msg = f"version must be between 0 and 2**64 - 1, got {version}"
        raise ValueError(msg)
