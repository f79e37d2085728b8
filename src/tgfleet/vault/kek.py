"""Key-encryption keys (KEKs) and the keyring of them a process holds.

A KEK wraps the per-secret data keys (see ``tgfleet.vault.crypto``); it never encrypts a
secret itself. Every KEK has a deterministic id, the first 16 hex characters of
``SHA-256(b"tgfleet/kek-id\\x00" + key)``, so the same key material always has the same id
wherever it is loaded from, and an envelope names the KEK that wraps its data key.

Where the KEKs come from (the key file, the environment, a passphrase) is
``tgfleet.vault.keyring``'s business.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tgfleet.kit.keyfile import KEY_BYTES, now_in_seconds
from tgfleet.vault.exceptions import DecryptError

KEK_ID_LENGTH = 16
KEK_ID_DOMAIN = b"tgfleet/kek-id\x00"

PREVIOUS_KEYS_NAME = "TGFLEET_VAULT_PREVIOUS_KEYS"


def kek_fingerprint(key: bytes) -> str:
    """The id of a KEK: 16 hex characters of a domain-separated SHA-256 of its material."""
    return hashlib.sha256(KEK_ID_DOMAIN + key).hexdigest()[:KEK_ID_LENGTH]


@dataclass(frozen=True, slots=True)
class Kek:
    """A key-encryption key. ``key`` is None once retired: the material is destroyed.

    Whether a KEK is the active one is the keyring's business, not the KEK's. ``repr`` never
    shows the key.
    """

    id: str
    key: bytes | None = field(repr=False)
    created_at: datetime
    retired_at: datetime | None = None

    def __post_init__(self) -> None:
        # The loaders report bad input with specific messages before getting here; these
        # checks keep a hand-built Kek from breaking the invariants crypto relies on.
        if self.key is not None:
            if len(self.key) != KEY_BYTES:
                msg = f"a KEK is {KEY_BYTES} bytes, got {len(self.key)}"
                raise ValueError(msg)
            if kek_fingerprint(self.key) != self.id:
                msg = f"KEK id {self.id} does not match its key"
                raise ValueError(msg)
        if (self.key is None) != (self.retired_at is not None):
            msg = f"KEK {self.id}: a key without material must be retired, and only then"
            raise ValueError(msg)
        if self.created_at.tzinfo is None:
            msg = f"KEK {self.id}: created_at must be timezone-aware"
            raise ValueError(msg)

    @classmethod
    def from_key(cls, key: bytes, *, created_at: datetime | None = None) -> Kek:
        """A usable KEK for ``key`` (32 bytes), its id computed from the material."""
        return cls(
            id=kek_fingerprint(key),
            key=key,
            created_at=created_at or now_in_seconds(),
            retired_at=None,
        )

    @classmethod
    def generate(cls) -> Kek:
        """A fresh random KEK."""
        return cls.from_key(AESGCM.generate_key(bit_length=KEY_BYTES * 8))

    @property
    def usable(self) -> bool:
        """True while the material exists (not retired)."""
        return self.key is not None

    def retired(self, at: datetime | None = None) -> Kek:
        """This KEK with its material dropped and ``retired_at`` set."""
        return replace(self, key=None, retired_at=at or now_in_seconds())


class KeySource(StrEnum):
    FILE = "file"
    ENV = "env"
    PASSPHRASE = "passphrase"  # noqa: S105 - a source name, not a passphrase


class Keyring:
    """The KEKs this process knows: one active (wraps everything new), others for decrypting.

    Immutable once built; ``repr`` shows ids only.
    """

    __slots__ = ("_active", "_keks", "_source")

    def __init__(self, *, source: KeySource, active: Kek, keks: Iterable[Kek]) -> None:
        """``keks`` is every KEK, retired ones included; it must contain ``active``."""
        ordered = list(keks)
        by_id: dict[str, Kek] = {}
        for kek in ordered:
            if kek.id in by_id:
                msg = f"KEK {kek.id} appears twice"
                raise ValueError(msg)
            by_id[kek.id] = kek
        if by_id.get(active.id) != active:
            msg = f"the active KEK {active.id} is not among the keyring's KEKs"
            raise ValueError(msg)
        if not active.usable:
            msg = f"the active KEK {active.id} is retired"
            raise ValueError(msg)
        self._source = source
        self._active = active
        self._keks = by_id

    @property
    def source(self) -> KeySource:
        return self._source

    @property
    def active(self) -> Kek:
        """The KEK every new data key is wrapped with."""
        return self._active

    def find(self, kek_id: str) -> Kek | None:
        """The usable KEK with this id, or None if it is retired or was never loaded."""
        kek = self._keks.get(kek_id)
        return kek if kek is not None and kek.usable else None

    def get(self, kek_id: str) -> Kek:
        """The usable KEK with this id; DecryptError naming the id if there is none."""
        kek = self._keks.get(kek_id)
        if kek is None:
            msg = (
                f"key-encryption key {kek_id} is not in the keyring (never loaded: "
                f"check {PREVIOUS_KEYS_NAME} or the key file)"
            )
            raise DecryptError(msg)
        if kek.retired_at is not None:
            msg = (
                f"key-encryption key {kek_id} is not in the keyring (retired on "
                f"{kek.retired_at.isoformat()}; its material is destroyed)"
            )
            raise DecryptError(msg)
        return kek

    def usable_ids(self) -> frozenset[str]:
        """Ids of the KEKs that can still unwrap a data key."""
        return frozenset(kek.id for kek in self._keks.values() if kek.usable)

    def all(self) -> list[Kek]:
        """Every KEK, retired ones included, in creation order (for ``vault status``)."""
        return list(self._keks.values())

    def __repr__(self) -> str:
        retired = sum(1 for kek in self._keks.values() if not kek.usable)
        return (
            f"Keyring(source={self._source.value!r}, active={self._active.id!r}, "
            f"usable={len(self._keks) - retired}, retired={retired})"
        )
