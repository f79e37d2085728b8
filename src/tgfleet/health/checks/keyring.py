"""Checks of the vault's keyring: an active, usable key in memory; the key file still loads."""

from __future__ import annotations

from tgfleet.health.checks.result import COMPONENT, result
from tgfleet.health.schemas import CheckResult, Status
from tgfleet.vault.service import Vault


async def keyring_loaded(vault: Vault) -> list[CheckResult]:
    """The keyring in memory has an active, usable key (no I/O)."""
    keyring = vault.keyring
    usable = keyring.active.usable
    return [
        result(
            COMPONENT,
            Status.PASS if usable else Status.FAIL,
            len(keyring.usable_ids()),
            "keys",
            component_id=keyring.source.value,
            output=None if usable else "the active key-encryption key is not usable",
        )
    ]


async def keyring_reloaded(vault: Vault) -> list[CheckResult]:
    """As the readiness check, and the key file still loads if it changed (another
    process rotated): a warning, since this process keeps working with its keys."""
    try:
        await vault.current()
    except Exception as exc:  # noqa: BLE001 - any failure to reload is the finding
        keyring = vault.keyring
        return [
            result(
                COMPONENT,
                Status.WARN,
                len(keyring.usable_ids()),
                "keys",
                component_id=keyring.source.value,
                output=f"the key file changed and could not be loaded "
                f"({type(exc).__name__}); this process goes on with the keys it loaded",
            )
        ]
    return await keyring_loaded(vault)
