"""What the vault page shows, from the vault's services: the keyring (KEKs with their state
and how many secrets each wraps), the secrets by state, what needs a re-wrap or cannot be
read, the tampered secrets with the way back, and the last rotation. Nothing decrypts."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from tgfleet.account import service as account_service
from tgfleet.models import VaultRotation
from tgfleet.vault import service as vault_service

#: How many tampered secrets the page lists (the count says how many there are).
TAMPERED_SHOWN = 100
#: KEK states whose secrets no process here can decrypt (docs/vault.md, "vault status").
UNREADABLE_KEK_STATES = frozenset({"retired", "missing"})


@dataclass(frozen=True, slots=True)
class TamperedRow:
    account_id: uuid.UUID
    label: str | None
    version: int
    kek_id: str | None
    source_format: str


@dataclass(frozen=True, slots=True)
class KekRow:
    id: str
    state: str
    secrets: int
    created_at: datetime | None
    retired_at: datetime | None


def _moment(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


@dataclass(frozen=True, slots=True)
class VaultPage:
    source: str
    active_kek_id: str
    keks: list[KekRow]
    secrets_by_state: dict[str, int]
    #: Secrets wrapped by a KEK other than the active one that still decrypts them.
    needs_rewrap: int
    #: Secrets wrapped by a retired or missing KEK: undecryptable until the key is back.
    unreadable: int
    tampered: list[TamperedRow]
    tampered_count: int
    last_rotation: VaultRotation | None


async def vault_page(session: AsyncSession, vault: vault_service.Vault) -> VaultPage:
    status = await vault_service.status(session, vault)
    found = await vault_service.tampered(session, limit=TAMPERED_SHOWN)
    accounts = await account_service.get_accounts(session, [s.account_id for s in found])
    labels = {account.id: account.label for account in accounts}
    return VaultPage(
        source=status.source,
        active_kek_id=status.active_kek_id,
        keks=[
            KekRow(k.id, k.state, k.secrets, _moment(k.created_at), _moment(k.retired_at))
            for k in status.keks
        ],
        secrets_by_state=status.secrets_by_state,
        needs_rewrap=sum(k.secrets for k in status.keks if k.state == "usable"),
        unreadable=sum(k.secrets for k in status.keks if k.state in UNREADABLE_KEK_STATES),
        tampered=[
            TamperedRow(
                account_id=s.account_id,
                label=labels.get(s.account_id),
                version=s.version,
                kek_id=s.kek_id,
                source_format=s.source_format,
            )
            for s in found
        ],
        tampered_count=status.secrets_by_state.get("tampered", 0),
        last_rotation=status.last_rotation,
    )
