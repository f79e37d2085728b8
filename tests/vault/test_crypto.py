"""Envelope encryption: round trips, tamper detection, binding to account and version, rewrap."""

from __future__ import annotations

import base64
import os
import uuid
from dataclasses import replace

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given
from hypothesis import strategies as st

from tgfleet.vault.crypto import (
    NONCE_BYTES,
    WRAPPED_KEY_BYTES,
    Envelope,
    open_envelope,
    rewrap,
    seal,
)
from tgfleet.vault.exceptions import DecryptError
from tgfleet.vault.kek import Kek, Keyring, KeySource

ACCOUNT = uuid.UUID("6f1c2a4e-9d7b-4c1e-8a53-2f0e9b7c6d41")
OTHER_ACCOUNT = uuid.UUID("0b8e7f6a-1c2d-4e3f-9a8b-7c6d5e4f3a21")
PLAINTEXT = b"auth-key-bytes"

# One keyring for the module: generating keys is cheap, but hypothesis examples must not
# depend on a function-scoped fixture.
KEK = Kek.generate()
KEYRING = Keyring(source=KeySource.ENV, active=KEK, keks=[KEK])
SEALED = seal(KEYRING, b"tiny", account_id=ACCOUNT, version=1)
FIELDS = ("wrapped_key", "nonce", "ciphertext")


def flipped(envelope: Envelope, field: str, position: int, mask: int) -> Envelope:
    value = bytearray(getattr(envelope, field))
    value[position] ^= mask
    return with_field(envelope, field, bytes(value))


def with_field(envelope: Envelope, field: str, value: bytes) -> Envelope:
    if field == "wrapped_key":
        return replace(envelope, wrapped_key=value)
    if field == "nonce":
        return replace(envelope, nonce=value)
    assert field == "ciphertext"
    return replace(envelope, ciphertext=value)


def only(kek: Kek) -> Keyring:
    """A file keyring holding ``kek`` alone."""
    return Keyring(source=KeySource.FILE, active=kek, keks=[kek])


def two_key_keyring() -> tuple[Kek, Kek, Keyring]:
    """A keyring where ``old`` wraps nothing new any more and ``new`` is active."""
    old, new = Kek.generate(), Kek.generate()
    return old, new, Keyring(source=KeySource.FILE, active=new, keks=[old, new])


class TestSeal:
    def test_round_trip(self) -> None:
        """What seal encrypts, open_envelope gives back, with the documented field sizes."""
        envelope = seal(KEYRING, PLAINTEXT, account_id=ACCOUNT, version=3)
        assert envelope.kek_id == KEK.id
        assert len(envelope.wrapped_key) == WRAPPED_KEY_BYTES == 60
        assert len(envelope.nonce) == NONCE_BYTES
        assert len(envelope.ciphertext) == len(PLAINTEXT) + 16
        assert PLAINTEXT not in envelope.ciphertext
        assert open_envelope(KEYRING, envelope, account_id=ACCOUNT, version=3) == PLAINTEXT

    def test_empty_plaintext(self) -> None:
        """An empty secret still round-trips (the tag alone authenticates it)."""
        envelope = seal(KEYRING, b"", account_id=ACCOUNT, version=0)
        assert open_envelope(KEYRING, envelope, account_id=ACCOUNT, version=0) == b""

    def test_each_seal_is_fresh(self) -> None:
        """Two seals of the same plaintext share no nonce, wrapped key or ciphertext."""
        one = seal(KEYRING, PLAINTEXT, account_id=ACCOUNT, version=1)
        two = seal(KEYRING, PLAINTEXT, account_id=ACCOUNT, version=1)
        assert one.nonce != two.nonce
        assert one.wrapped_key[:NONCE_BYTES] != two.wrapped_key[:NONCE_BYTES]
        assert one.wrapped_key != two.wrapped_key
        assert one.ciphertext != two.ciphertext

    def test_each_seal_has_its_own_data_key(self) -> None:
        """Swapping wrapped keys between two seals of one account and version fails to open.

        The swapped wrapped key still authenticates (same KEK, account and version), so the
        failure can only come from the data keys being different.
        """
        one = seal(KEYRING, PLAINTEXT, account_id=ACCOUNT, version=1)
        two = seal(KEYRING, PLAINTEXT, account_id=ACCOUNT, version=1)
        swapped = replace(one, wrapped_key=two.wrapped_key)
        with pytest.raises(DecryptError, match="ciphertext failed authentication"):
            open_envelope(KEYRING, swapped, account_id=ACCOUNT, version=1)

    def test_version_out_of_range_refused(self) -> None:
        """A negative version is a caller bug, refused before any key is used."""
        with pytest.raises(ValueError, match="version must be between"):
            seal(KEYRING, PLAINTEXT, account_id=ACCOUNT, version=-1)


class TestTamper:
    def test_every_byte_flip_detected(self) -> None:
        """Changing any single byte of the wrapped key, nonce or ciphertext fails to open."""
        undetected = []
        for field in FIELDS:
            for position in range(len(getattr(SEALED, field))):
                for mask in (0x01, 0x80, 0xFF):
                    try:
                        open_envelope(
                            KEYRING,
                            flipped(SEALED, field, position, mask),
                            account_id=ACCOUNT,
                            version=1,
                        )
                    except DecryptError:
                        continue
                    undetected.append((field, position, mask))
        assert undetected == []

    @given(
        field=st.sampled_from(FIELDS),
        data=st.data(),
        mask=st.integers(min_value=1, max_value=255),
    )
    def test_any_byte_change_detected(self, field: str, data: st.DataObject, mask: int) -> None:
        """Property: any non-zero XOR of any byte of any field is a DecryptError."""
        position = data.draw(st.integers(min_value=0, max_value=len(getattr(SEALED, field)) - 1))
        with pytest.raises(DecryptError):
            open_envelope(
                KEYRING, flipped(SEALED, field, position, mask), account_id=ACCOUNT, version=1
            )

    @pytest.mark.parametrize(
        ("field", "value", "message"),
        [
            ("wrapped_key", SEALED.wrapped_key[:-1], "wrapped data key is 59 bytes, expected 60"),
            ("wrapped_key", SEALED.wrapped_key + b"\x00", "wrapped data key is 61 bytes"),
            ("nonce", SEALED.nonce[:8], "payload nonce is 8 bytes, expected 12"),
            ("ciphertext", b"short", "ciphertext is 5 bytes, shorter than its tag"),
            ("ciphertext", SEALED.ciphertext[:-1], "ciphertext failed authentication"),
        ],
    )
    def test_wrong_lengths_refused(self, field: str, value: bytes, message: str) -> None:
        """Truncated or padded fields are a DecryptError saying which field is wrong."""
        with pytest.raises(DecryptError, match=message):
            open_envelope(KEYRING, with_field(SEALED, field, value), account_id=ACCOUNT, version=1)


class TestBinding:
    def test_other_account_fails(self) -> None:
        """A blob copied to another account does not open there."""
        with pytest.raises(DecryptError, match="another account or version"):
            open_envelope(KEYRING, SEALED, account_id=OTHER_ACCOUNT, version=1)

    def test_other_version_fails(self) -> None:
        """A blob replayed as another version of the same account's secret does not open."""
        for version in (0, 2, 2**63):
            with pytest.raises(DecryptError, match="another account or version"):
                open_envelope(KEYRING, SEALED, account_id=ACCOUNT, version=version)

    def test_payload_moved_under_anothers_wrapped_key_fails(self) -> None:
        """Account B's payload with account A's wrapped key, opened as either, fails."""
        other = seal(KEYRING, PLAINTEXT, account_id=OTHER_ACCOUNT, version=1)
        mixed = replace(other, wrapped_key=SEALED.wrapped_key)
        for account in (ACCOUNT, OTHER_ACCOUNT):
            with pytest.raises(DecryptError):
                open_envelope(KEYRING, mixed, account_id=account, version=1)

    def test_wrapped_key_relabelled_with_another_kek_fails(self) -> None:
        """Relabelling an envelope with another usable KEK's id does not open it."""
        old, _new, keyring = two_key_keyring()
        envelope = seal(keyring, PLAINTEXT, account_id=ACCOUNT, version=1)
        relabelled = replace(envelope, kek_id=old.id)
        with pytest.raises(DecryptError, match=f"did not unwrap with key-encryption key {old.id}"):
            open_envelope(keyring, relabelled, account_id=ACCOUNT, version=1)

    def test_unknown_kek_names_it(self) -> None:
        """An envelope wrapped by a KEK the keyring never loaded names that KEK's id."""
        stranger = Kek.generate()
        keyring = Keyring(source=KeySource.ENV, active=stranger, keks=[stranger])
        with pytest.raises(DecryptError, match=f"{KEK.id} is not in the keyring") as caught:
            open_envelope(keyring, SEALED, account_id=ACCOUNT, version=1)
        assert KEK.key is not None
        for secret in (KEK.key.hex(), base64.b64encode(KEK.key).decode(), repr(KEK.key)):
            assert secret not in caught.value.message

    def test_retired_kek_names_it(self) -> None:
        """An envelope wrapped by a retired KEK fails, naming the id and the retirement."""
        old, new, _ = two_key_keyring()
        envelope = seal(only(old), PLAINTEXT, account_id=ACCOUNT, version=1)
        retired = Keyring(source=KeySource.FILE, active=new, keks=[old.retired(), new])
        with pytest.raises(DecryptError, match=f"{old.id} is not in the keyring \\(retired"):
            open_envelope(retired, envelope, account_id=ACCOUNT, version=1)


class TestRewrap:
    def test_rewrap_to_active_then_old_kek_not_needed(self) -> None:
        """After rewrap to the new KEK, a keyring without the old KEK opens the envelope."""
        old, new, both = two_key_keyring()
        under_old = seal(only(old), PLAINTEXT, account_id=ACCOUNT, version=4)
        rewrapped = rewrap(both, under_old, account_id=ACCOUNT, version=4)
        assert rewrapped.kek_id == new.id
        assert rewrapped.wrapped_key != under_old.wrapped_key
        assert (rewrapped.nonce, rewrapped.ciphertext) == (under_old.nonce, under_old.ciphertext)
        new_only = Keyring(source=KeySource.FILE, active=new, keks=[new])
        assert open_envelope(new_only, rewrapped, account_id=ACCOUNT, version=4) == PLAINTEXT
        with pytest.raises(DecryptError, match=f"{old.id} is not in the keyring"):
            open_envelope(new_only, under_old, account_id=ACCOUNT, version=4)

    def test_rewrap_to_named_kek(self) -> None:
        """to_kek_id wraps with a non-active KEK, for instance to roll back a rotation."""
        old, _new, both = two_key_keyring()
        under_new = seal(both, PLAINTEXT, account_id=ACCOUNT, version=1)
        back = rewrap(both, under_new, account_id=ACCOUNT, version=1, to_kek_id=old.id)
        assert back.kek_id == old.id
        assert open_envelope(only(old), back, account_id=ACCOUNT, version=1) == PLAINTEXT

    def test_rewrap_to_unknown_kek_refused(self) -> None:
        """Rewrapping to a KEK the keyring does not hold names the missing id."""
        with pytest.raises(DecryptError, match="0123456789abcdef is not in the keyring"):
            rewrap(KEYRING, SEALED, account_id=ACCOUNT, version=1, to_kek_id="0123456789abcdef")

    def test_rewrap_checks_binding(self) -> None:
        """Rewrap of a blob presented for another account fails instead of laundering it."""
        with pytest.raises(DecryptError, match="another account or version"):
            rewrap(KEYRING, SEALED, account_id=OTHER_ACCOUNT, version=1)

    def test_rewrap_keeps_binding(self) -> None:
        """The re-wrapped key is still bound to its account and version."""
        old, _new, both = two_key_keyring()
        envelope = seal(both, PLAINTEXT, account_id=ACCOUNT, version=1)
        rewrapped = rewrap(both, envelope, account_id=ACCOUNT, version=1, to_kek_id=old.id)
        with pytest.raises(DecryptError):
            open_envelope(both, rewrapped, account_id=OTHER_ACCOUNT, version=1)
        with pytest.raises(DecryptError):
            open_envelope(both, rewrapped, account_id=ACCOUNT, version=2)

    def test_rewrap_does_not_check_the_payload(self) -> None:
        """Rewrap never decrypts the payload: a damaged ciphertext is carried over unchanged."""
        damaged = flipped(SEALED, "ciphertext", 0, 0x01)
        rewrapped = rewrap(KEYRING, damaged, account_id=ACCOUNT, version=1)
        assert rewrapped.ciphertext == damaged.ciphertext
        with pytest.raises(DecryptError, match="ciphertext failed authentication"):
            open_envelope(KEYRING, rewrapped, account_id=ACCOUNT, version=1)


def documented_wrap_aad(kek_id: str, account_id: uuid.UUID, version: int) -> bytes:
    """The wrapped key's associated data, spelled out as the module docstring documents it."""
    return (
        b"tgfleet/data-key/v1\x00"
        + kek_id.encode("ascii")
        + b"\x00"
        + account_id.bytes
        + version.to_bytes(8, "big")
    )


def documented_payload_aad(account_id: uuid.UUID, version: int) -> bytes:
    return b"tgfleet/session/v1\x00" + account_id.bytes + version.to_bytes(8, "big")


class TestStoredFormat:
    """Envelopes are stored data: the layout must not drift silently between releases."""

    def test_documented_layout_decrypts(self) -> None:
        """Decrypting by hand with the documented layout and AADs recovers the plaintext."""
        assert KEK.key is not None
        envelope = seal(KEYRING, PLAINTEXT, account_id=ACCOUNT, version=7)
        wrap_nonce, wrapped = envelope.wrapped_key[:12], envelope.wrapped_key[12:]
        data_key = AESGCM(KEK.key).decrypt(
            wrap_nonce, wrapped, documented_wrap_aad(KEK.id, ACCOUNT, 7)
        )
        assert len(data_key) == 32
        plaintext = AESGCM(data_key).decrypt(
            envelope.nonce, envelope.ciphertext, documented_payload_aad(ACCOUNT, 7)
        )
        assert plaintext == PLAINTEXT

    @pytest.mark.parametrize(("account_id", "version"), [(OTHER_ACCOUNT, 1), (ACCOUNT, 2)])
    def test_payload_bound_on_its_own(self, account_id: uuid.UUID, version: int) -> None:
        """Even with its data key validly re-wrapped for another slot, the payload fails there.

        The wrapped key's binding normally stops a moved blob first; this proves the payload's
        own binding by wrapping the genuine data key for the target account and version.
        """
        assert KEK.key is not None
        wrap_nonce, wrapped = SEALED.wrapped_key[:12], SEALED.wrapped_key[12:]
        data_key = AESGCM(KEK.key).decrypt(
            wrap_nonce, wrapped, documented_wrap_aad(KEK.id, ACCOUNT, 1)
        )
        forged_nonce = os.urandom(12)
        forged = forged_nonce + AESGCM(KEK.key).encrypt(
            forged_nonce, data_key, documented_wrap_aad(KEK.id, account_id, version)
        )
        moved = replace(SEALED, wrapped_key=forged)
        with pytest.raises(DecryptError, match="ciphertext failed authentication"):
            open_envelope(KEYRING, moved, account_id=account_id, version=version)
