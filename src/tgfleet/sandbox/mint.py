"""Mint a sandbox world: ``world.yaml`` plus one Telethon ``.session`` per fleet account.

Everything is derived from ``seed`` (ids, access hashes, names, group layout, the traffic
seed) except the auth keys, which come from ``os.urandom``: a session file is a credential
for the sandbox, and keys that a seed could reproduce would be guessable.

Layout: accounts ``fleet_0001``…, groups alternate basic group / supergroup (a group is a
supergroup whenever its members would exceed Telegram's 200 for a basic group), each group
holds every fleet account plus ``members`` simulated members of its own, and ``members``
spare simulated members belong to no group so that traffic has people to join.
"""

from __future__ import annotations

import ipaddress
import os
import random
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

from telethon.crypto import AuthKey
from telethon.sessions import SQLiteSession

from tgfleet.sandbox.world import (
    ACCOUNT_IDS,
    AUTH_KEY_BYTES,
    BASIC_GROUP_IDS,
    BASIC_GROUP_MAX_MEMBERS,
    MEMBER_IDS,
    SUPERGROUP_IDS,
    TrafficSettings,
    World,
    WorldAccount,
    WorldError,
    WorldGroup,
    WorldMember,
)
from tgfleet.sandbox.world_file import dump_world

WORLD_FILE = "world.yaml"
SANDBOX_HOST = "127.0.0.1"
_SESSION_WRITERS = 32

_FIRST_NAMES = (
    "Ada", "Boris", "Chen", "Dana", "Emeka", "Farah", "Goran", "Hana", "Ivan", "Jun",
    "Kofi", "Lena", "Mateo", "Nadia", "Omar", "Priya", "Quinn", "Rosa", "Sven", "Tariq",
    "Uma", "Viktor", "Wen", "Ximena", "Yusuf", "Zoe",
)  # fmt: skip
_LAST_NAMES = (
    "Okafor", "Ivanova", "Nakamura", "Silva", "Kowalski", "Haddad", "Moreau", "Larsen",
    "Patel", "Novak", "Costa", "Berg",
)  # fmt: skip


def _access_hash(rng: random.Random) -> int:
    # Telegram's access_hash is a signed 64-bit integer; positive keeps the YAML readable.
    return rng.randrange(1, 2**63)


def mint(
    out_dir: Path,
    *,
    accounts: int,
    groups: int,
    members: int = 5,
    port: int = 8443,
    seed: int = 0,
    dc_id: int = 2,
    force: bool = False,
    address: str = SANDBOX_HOST,
    traffic: TrafficSettings | None = None,
) -> World:
    """Write ``out_dir/world.yaml`` and ``out_dir/<username>.session`` for every account,
    the sessions pointing at the sandbox on ``address`` (an IP address: the vault stores
    addresses, not host names) and ``port``. ``traffic`` (default: the defaults with
    ``seed``) is how the world's simulated members behave.

    Refuses (`WorldError`) when ``world.yaml`` or one of the session files exists, unless
    ``force``. Files are written with mode 0600. Returns the minted world.
    """
    try:
        ipaddress.ip_address(address)
    except ValueError:
        msg = f"{address!r} is not an IP address (sessions store the sandbox's address)"
        raise WorldError(msg) from None
    if accounts < 1 or accounts > len(ACCOUNT_IDS):
        raise WorldError(f"accounts must be 1..{len(ACCOUNT_IDS)}, got {accounts}")
    if groups < 0 or members < 0:
        raise WorldError("groups and members must not be negative")
    if (groups + 1) * members > len(MEMBER_IDS):
        raise WorldError(f"too many simulated members: {(groups + 1) * members}")
    if groups > len(BASIC_GROUP_IDS):
        raise WorldError(f"too many groups: {groups}")
    world_path = out_dir / WORLD_FILE
    rng = random.Random(seed)  # noqa: S311  (layout and names, not secrets; keys use urandom)

    world_accounts = tuple(
        WorldAccount(
            id=ACCOUNT_IDS.start + i,
            access_hash=_access_hash(rng),
            first_name=f"Fleet {i + 1}",
            username=f"fleet_{i + 1:04d}",
            phone=f"99966{dc_id}{i + 1:04d}" if i + 1 < 10_000 else None,
            auth_key=os.urandom(AUTH_KEY_BYTES),
        )
        for i in range(accounts)
    )
    world_members = tuple(
        WorldMember(
            id=MEMBER_IDS.start + i,
            access_hash=_access_hash(rng),
            first_name=rng.choice(_FIRST_NAMES),
            last_name=rng.choice(_LAST_NAMES) if rng.random() < 0.7 else None,
            username=f"member_{i + 1:05d}" if rng.random() < 0.6 else None,
        )
        for i in range((groups + 1) * members)
    )
    account_ids = tuple(a.id for a in world_accounts)
    world_groups: list[WorldGroup] = []
    for g in range(groups):
        own = tuple(m.id for m in world_members[g * members : (g + 1) * members])
        group_members = account_ids + own
        basic = g % 2 == 0 and len(group_members) + members <= BASIC_GROUP_MAX_MEMBERS
        world_groups.append(
            WorldGroup(
                id=(BASIC_GROUP_IDS if basic else SUPERGROUP_IDS).start + g,
                kind="basic" if basic else "supergroup",
                title=f"Sandbox group {g + 1}",
                username=None if basic else f"sandbox_group_{g + 1}",
                access_hash=None if basic else _access_hash(rng),
                members=group_members,
                admins=own[:1],
            )
        )
    world = World(
        accounts=world_accounts,
        members=world_members,
        groups=tuple(world_groups),
        traffic=traffic if traffic is not None else TrafficSettings(seed=seed),
        dc_id=dc_id,
        port=port,
    )

    session_paths = [out_dir / f"{a.username}.session" for a in world_accounts]
    if not force:
        for path in (world_path, *session_paths):
            if path.exists():
                raise WorldError(f"{path} exists; pass --force to overwrite it")
    out_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    # Each session commit waits on fsync; threads overlap the waits (1,000 sessions: ~20 s
    # in series, a few seconds this way).
    with ThreadPoolExecutor(max_workers=_SESSION_WRITERS) as pool:
        list(
            pool.map(
                partial(_write_session, dc_id=dc_id, address=address, port=port),
                session_paths,
                world_accounts,
            )
        )
    # The world file last: its presence means the mint finished.
    dump_world(world, world_path)
    return world


def _write_session(
    path: Path, account: WorldAccount, *, dc_id: int, address: str, port: int
) -> None:
    path.unlink(missing_ok=True)
    # Create the file 0600 first: SQLite then opens it in place and keeps its mode.
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    session = SQLiteSession(str(path))
    try:
        session.set_dc(dc_id, address, port)
        session.auth_key = AuthKey(data=account.auth_key)
        session.save()
    finally:
        session.close()
