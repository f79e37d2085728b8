"""Which KEKs a database's secrets need, and whether a keyring opens them.

A backup names the KEK ids its secrets are wrapped by; a restore (or ``tgfleet backup
check-keys`` after a PostgreSQL restore) decrypts one active secret per KEK id with the
configured keyring, so a missing or wrong key is found before anything depends on it.
Nothing is audited or marked here: the check reads, decrypts into memory, and forgets.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from tgfleet.kit.keyfile import KeyCheck
from tgfleet.vault import crypto
from tgfleet.vault.exceptions import DecryptError
from tgfleet.vault.kek import Keyring
from tgfleet.vault.repository import SecretRepository


async def keys_in_use(session: AsyncSession) -> dict[str, int]:
    """Each KEK id that wraps an active secret, and how many it wraps."""
    return await SecretRepository(session).active_per_kek()


async def check_keys(session: AsyncSession, keyring: Keyring) -> list[KeyCheck]:
    """For every KEK id in use: decrypt one of its secrets with ``keyring``."""
    repository = SecretRepository(session)
    checks: list[KeyCheck] = []
    for kek_id, count in sorted((await repository.active_per_kek()).items()):
        if kek_id not in keyring.usable_ids():
            missing = (
                f"vault key {kek_id} wraps {count} session(s) and is not in the configured "
                f"keyring (it holds {', '.join(sorted(keyring.usable_ids())) or 'no key'})"
            )
            checks.append(KeyCheck(kek_id, count, missing))
            continue
        secret = await repository.one_under(kek_id)
        problem: str | None = None
        if secret is not None:
            envelope = crypto.Envelope(
                kek_id=kek_id,
                wrapped_key=secret.wrapped_key or b"",
                nonce=secret.nonce or b"",
                ciphertext=secret.ciphertext or b"",
            )
            try:
                crypto.open_envelope(
                    keyring, envelope, account_id=secret.account_id, version=secret.version
                )
            except DecryptError as exc:
                problem = f"vault key {kek_id}: account {secret.account_id}: {exc.message}"
        checks.append(KeyCheck(kek_id, count, problem))
    return checks
