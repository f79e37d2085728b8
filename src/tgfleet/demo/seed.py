"""Put a sandbox world's fleet under management: the demo's setup, reused by tests and
benchmarks.

Everything goes through the services an operator's API calls use (vault import, playbook
save, group settings, account control), so the audit log shows the demo's setup like any
other change.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from telethon import utils
from telethon.tl import types

from tgfleet.account import commands as account_commands
from tgfleet.account import groups as account_groups
from tgfleet.account import service as account_service
from tgfleet.audit.schemas import AuditContext
from tgfleet.exceptions import AppError
from tgfleet.kit.db import unit_of_work
from tgfleet.logging import get_logger
from tgfleet.playbook import service as playbook_service
from tgfleet.sandbox.world import World, WorldGroup
from tgfleet.vault import service as vault_service
from tgfleet.vault.service import Vault

log = get_logger(__name__)


async def _managed(
    sessionmaker: async_sessionmaker[AsyncSession], usernames: Sequence[str]
) -> dict[str, uuid.UUID]:
    """The accounts already managed under these labels (username -> account id)."""
    found: dict[str, uuid.UUID] = {}
    async with unit_of_work(sessionmaker, read_only=True) as session:
        for username in usernames:
            try:
                found[username] = (await account_service.resolve(session, username)).id
            except AppError:
                continue
    return found


def chat_id_of(group: WorldGroup) -> int:
    """Telethon's marked id of a sandbox group (``-id`` or ``-100id``)."""
    peer: types.PeerChat | types.PeerChannel = (
        types.PeerChannel(group.id) if group.kind == "supergroup" else types.PeerChat(group.id)
    )
    return int(utils.get_peer_id(peer))


@dataclass(frozen=True, slots=True)
class SeededFleet:
    account_ids: dict[str, uuid.UUID]  # world username -> account id
    playbook_ids: dict[str, uuid.UUID]  # playbook name -> id
    chat_ids: dict[int, int]  # world group id -> marked chat id
    failed: list[str]


async def seed_fleet(
    sessionmaker: async_sessionmaker[AsyncSession],
    vault: Vault,
    context: AuditContext,
    world: World,
    session_dir: Path,
    *,
    playbooks: Mapping[str, str],
    assignment: Mapping[int, str] | None = None,
    groups: Sequence[int] | None = None,
    start: bool = True,
) -> SeededFleet:
    """Import the world's session files, install ``playbooks`` (name -> YAML), enable
    replies in ``groups`` (world group ids; default all) for the accounts that are members
    of each, with the playbook ``assignment`` names per world group id (default: the
    playbooks in turn), and start every account."""
    # A rerun (a warm restart of the demo) finds the accounts of the earlier run by their
    # labels and imports only the sessions of the others: re-importing a stored session is
    # refused as a duplicate, which is no failure here.
    account_ids = await _managed(sessionmaker, [a.username for a in world.accounts])
    files = await asyncio.to_thread(
        lambda: sorted(
            path
            for path in session_dir.glob("*.session")
            if path.name.removesuffix(".session") not in account_ids
        )
    )
    entries = []
    for path in files:
        entries += await asyncio.to_thread(vault_service.expand_path, path, vault.limits)
    results = await vault_service.import_entries(sessionmaker, vault, context, entries)
    by_file = {r.name: r for r in results}
    already = len(account_ids)
    failed: list[str] = []
    for account in world.accounts:
        if account.username in account_ids:
            continue
        result = by_file.get(f"{account.username}.session")
        if result is not None and result.ok and result.account_id is not None:
            account_ids[account.username] = result.account_id
        else:  # e.g. imported meanwhile under its label: found by it below
            failed.append(account.username)
    if failed:
        account_ids |= await _managed(sessionmaker, failed)
        failed = [username for username in failed if username not in account_ids]
    log.info(
        "demo.sessions",
        already_managed=already,
        imported=sum(r.ok for r in results),
        missing=len(failed),
    )
    names = list(playbooks)
    chosen = [g for g in world.groups if groups is None or g.id in groups]
    chat_ids = {g.id: chat_id_of(g) for g in world.groups}
    async with unit_of_work(sessionmaker) as session:
        playbook_ids = {
            name: (
                await playbook_service.create_or_update_by_name(
                    session, context, name, source, f"installed by the demo: {name}"
                )
            ).id
            for name, source in playbooks.items()
        }
        ids = list(account_ids.values())
        by_user_id = {
            account.id: account_ids[account.username]
            for account in world.accounts
            if account.username in account_ids
        }
        for index, group in enumerate(chosen):
            members = [by_user_id[m] for m in group.members if m in by_user_id]
            if not names or not members:
                continue
            name = (assignment or {}).get(group.id, names[index % len(names)])
            await account_groups.bulk_set_groups(
                session,
                context,
                ids=members,
                chat_ids=[chat_ids[group.id]],
                enabled=True,
                playbook_id=playbook_ids[name],
                create=True,
            )
        if start and ids:
            await account_commands.bulk_control(session, context, ids=ids, action="start")
    return SeededFleet(
        account_ids=account_ids, playbook_ids=playbook_ids, chat_ids=chat_ids, failed=failed
    )
