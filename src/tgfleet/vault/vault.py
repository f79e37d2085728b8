"""The Vault a process holds: its keyring and its import limits.

The keyring is loaded from the settings (the key file, the environment key or the
passphrase; see ``tgfleet.vault.keyring``) and reloaded when a secret names a KEK it does not
hold, or when the key file changed because another process rotated.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from tgfleet.config import Settings
from tgfleet.vault.archive import ArchiveLimits
from tgfleet.vault.formats import FormatPolicy
from tgfleet.vault.kek import Keyring, KeySource
from tgfleet.vault.keyring import load_keyring


@dataclass
class Vault:
    """The process's keyring and import limits. The keyring is reloaded from its source when
    a secret names a KEK it does not hold (another process rotated)."""

    keyring: Keyring
    policy: FormatPolicy
    limits: ArchiveLimits
    settings: Settings
    _stamp: tuple[int, int, int] | None = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)

    @classmethod
    def load(cls, settings: Settings) -> Vault:
        """Blocking (scrypt in passphrase mode): call from a thread inside a running loop."""
        stamp = _key_file_stamp(settings)
        return cls(
            keyring=load_keyring_for(settings),
            _stamp=stamp,
            policy=FormatPolicy(
                allowed_dc_ids=frozenset({1, 2, 3, 4, 5, *settings.vault_extra_dc_ids}),
                max_file_bytes=settings.import_max_file_bytes,
            ),
            limits=ArchiveLimits(
                max_entries=settings.import_max_entries,
                max_entry_bytes=settings.import_max_file_bytes,
                max_total_bytes=settings.import_max_total_bytes,
            ),
            settings=settings,
        )

    async def reload(self) -> Keyring:
        async with self._lock:
            stamp = _key_file_stamp(self.settings)
            self.keyring = await asyncio.to_thread(load_keyring_for, self.settings)
            self._stamp = stamp
            return self.keyring

    async def current(self) -> Keyring:
        """The keyring, reloaded first if the key file changed (another process rotated):
        new secrets must never be wrapped by a KEK that was retired meanwhile."""
        if self.keyring.source is KeySource.FILE and _key_file_stamp(self.settings) != self._stamp:
            return await self.reload()
        return self.keyring

    async def keyring_with(self, kek_id: str) -> Keyring:
        if kek_id in self.keyring.usable_ids():
            return self.keyring
        return await self.reload()


def _key_file_stamp(settings: Settings) -> tuple[int, int, int] | None:
    try:
        info = settings.effective_vault_key_file.stat()
    except OSError:
        return None
    return (info.st_ino, info.st_mtime_ns, info.st_size)


def load_keyring_for(settings: Settings) -> Keyring:
    return load_keyring(
        key_file=settings.effective_vault_key_file,
        env_key=settings.vault_key.get_secret_value() if settings.vault_key else None,
        passphrase=(
            settings.vault_passphrase.get_secret_value() if settings.vault_passphrase else None
        ),
        previous_keys=(
            settings.vault_previous_keys.get_secret_value()
            if settings.vault_previous_keys
            else None
        ),
        salt_file=settings.vault_salt_file,
        allow_readable_key_file=settings.vault_allow_readable_key_file,
    )
