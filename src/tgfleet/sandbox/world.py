"""The sandbox world's model: who exists and which groups they are in, as ``world.yaml`` holds it.

Frozen dataclasses (`World`, `WorldAccount`, `WorldMember`, `WorldGroup`, `TrafficSettings`),
the id ranges and Telegram's limits the world keeps. ``world_file`` reads and writes them
(``load_world``, ``dump_world``); ``state.WorldState`` is what the server keeps while it runs.

Id ranges (users and chats never collide; the server may put any id in any peer type):

=====================  =========================  ==========================================
what                   range                      why
=====================  =========================  ==========================================
fleet accounts         1_000_000 .. 1_999_999     user ids, like Telegram's small user ids
simulated members      2_000_000 .. 2_999_999     user ids, apart from accounts for reading
basic groups           3_000_000 .. 3_999_999     chat ids (peer id ``-id`` in Telethon)
supergroups            1_500_000_000 .. 1_999_999_999  channel ids (peer ``-100<id>``)
=====================  =========================  ==========================================
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal

from tgfleet.exceptions import AppError

WORLD_VERSION = 1
AUTH_KEY_BYTES = 256
#: Telegram's own cap on a basic group; bigger groups are supergroups.
BASIC_GROUP_MAX_MEMBERS = 200
#: Telegram's cap on a text message (MESSAGE_TOO_LONG above it).
MESSAGE_MAX_CHARS = 4096

ACCOUNT_IDS = range(1_000_000, 2_000_000)
MEMBER_IDS = range(2_000_000, 3_000_000)
BASIC_GROUP_IDS = range(3_000_000, 4_000_000)
SUPERGROUP_IDS = range(1_500_000_000, 2_000_000_000)

GroupKind = Literal["basic", "supergroup"]


class WorldError(AppError):
    """The world file is missing, malformed or inconsistent, or minting would clobber it."""

    status_code = 400
    code = "bad_world"


@dataclass(frozen=True)
class WorldAccount:
    """A fleet account: a Telegram user whose session (auth key) the sandbox knows."""

    id: int
    access_hash: int
    first_name: str
    username: str
    auth_key: bytes = field(repr=False)
    phone: str | None = None


@dataclass(frozen=True)
class WorldMember:
    """A simulated person who chats in groups; no session, the sandbox speaks for them."""

    id: int
    access_hash: int
    first_name: str
    last_name: str | None = None
    username: str | None = None


@dataclass(frozen=True)
class WorldGroup:
    """A basic group or a supergroup and who is in it.

    ``members`` holds user ids of accounts and simulated members; ``admins`` is a subset.
    In a ``read_only`` group only admins may post (others get CHAT_WRITE_FORBIDDEN).
    ``slowmode_seconds`` applies to non-admin fleet accounts, in supergroups only (as in
    Telegram, where slow mode needs a supergroup).
    """

    id: int
    kind: GroupKind
    title: str
    members: tuple[int, ...]
    admins: tuple[int, ...] = ()
    username: str | None = None
    access_hash: int | None = None
    read_only: bool = False
    slowmode_seconds: int = 0


@dataclass(frozen=True)
class TrafficSettings:
    """How simulated members behave; rates are per group."""

    seed: int = 0
    #: Poisson rate of member messages per group.
    messages_per_minute: float = 3.0
    #: Share of member messages that @mention a fleet account in the group.
    mention_ratio: float = 0.1
    #: Share of member messages that reply to a fleet account's last message.
    reply_ratio: float = 0.1
    #: Share of member messages that contain one of ``keywords``.
    keyword_ratio: float = 0.1
    keywords: tuple[str, ...] = ("price", "urgent", "help")
    #: Poisson rate of new members joining each group (from members not yet in it).
    joins_per_hour: float = 1.0


@dataclass(frozen=True)
class World:
    """Everything in ``world.yaml``."""

    accounts: tuple[WorldAccount, ...]
    members: tuple[WorldMember, ...]
    groups: tuple[WorldGroup, ...]
    traffic: TrafficSettings = TrafficSettings()
    version: int = WORLD_VERSION
    dc_id: int = 2
    port: int = 8443

    @cached_property
    def accounts_by_id(self) -> Mapping[int, WorldAccount]:
        return {a.id: a for a in self.accounts}

    @cached_property
    def members_by_id(self) -> Mapping[int, WorldMember]:
        return {m.id: m for m in self.members}

    @cached_property
    def groups_by_id(self) -> Mapping[int, WorldGroup]:
        return {g.id: g for g in self.groups}

    @cached_property
    def user_ids_by_username(self) -> Mapping[str, int]:
        """Lower-cased username → user id, for accounts and members."""
        found = {a.username.lower(): a.id for a in self.accounts}
        found.update({m.username.lower(): m.id for m in self.members if m.username})
        return found

    @cached_property
    def accounts_by_auth_key(self) -> Mapping[bytes, WorldAccount]:
        """The full 256-byte auth key → its account (the server derives key ids from these)."""
        return {a.auth_key: a for a in self.accounts}
