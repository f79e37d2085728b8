"""The sandbox world: who exists, which groups they are in, and what has been said since.

Two halves:

* The *world file* (``world.yaml``): frozen dataclasses (`World`, `WorldAccount`,
  `WorldMember`, `WorldGroup`, `TrafficSettings`) loaded and validated by `load_world`, written
  by `dump_world`. The file holds every account's auth key, so it is written with mode 0600.
* The *runtime state* (`WorldState`): what the MTProto server needs while it runs. It keeps
  Telegram's update bookkeeping in plain Python (no TL objects) so it can be tested alone:

  - basic groups: message ids, pts and seq are **per account** (every member account sees
    the same message under its own id, as in Telegram's common message box);
  - supergroups: one message id and pts sequence **per channel**, shared by all members;
  - a bounded backlog per account and per channel, so ``updates.getDifference`` and
    ``updates.getChannelDifference`` return exactly the updates a client missed.

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

import base64
import binascii
import math
import re
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml

from tgfleet.config import write_private_file
from tgfleet.exceptions import AppError
from tgfleet.kit.yaml_guard import YamlRefused, screen

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

_USERNAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{4,31}")
_MENTION = re.compile(r"@([A-Za-z][A-Za-z0-9_]{4,31})")

GroupKind = Literal["basic", "supergroup"]
EventKind = Literal["message", "join"]


class WorldError(AppError):
    """The world file is missing, malformed or inconsistent, or minting would clobber it."""

    status_code = 400
    code = "bad_world"


# --------------------------------------------------------------------------- world file


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


# --------------------------------------------------------------------------- loading


_Path = tuple[str | int, ...]


def _format_path(path: _Path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out or "(top level)"


def _node_lines(node: yaml.Node, path: _Path, lines: dict[_Path, int]) -> None:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode):
                _node_lines(value, (*path, str(key.value)), lines)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _node_lines(item, (*path, index), lines)


_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
#: Scalars and collections in one world file (100,000 accounts and their members fit).
MAX_WORLD_NODES = 10_000_000
_Dumper: type[yaml.SafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class _Reader:
    """Typed access to the parsed YAML that fails with the field's path and line."""

    def __init__(self, source: str, lines: dict[_Path, int]) -> None:
        self.source = source
        self.lines = lines

    def fail(self, path: _Path, problem: str) -> WorldError:
        probe = path
        while probe not in self.lines and probe:
            probe = probe[:-1]
        line = self.lines.get(probe)
        where = f"{self.source} line {line}" if line is not None else self.source
        return WorldError(f"{where}: {_format_path(path)}: {problem}")

    def mapping(self, value: object, path: _Path, allowed: Iterable[str]) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(path, "expected a mapping")
        allowed_set = set(allowed)
        for key in value:
            if key not in allowed_set:
                raise self.fail((*path, str(key)), "unknown field")
        return value

    def sequence(self, data: Mapping[str, Any], path: _Path, key: str) -> list[Any]:
        value = data.get(key, [])
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.fail((*path, key), "expected a list")
        return value

    def integer(
        self, data: Mapping[str, Any], path: _Path, key: str, default: int | None = None
    ) -> int:
        if key not in data or data[key] is None:
            if default is None:
                raise self.fail((*path, key), "missing")
            return default
        value = data[key]
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail((*path, key), f"expected an integer, got {value!r}")
        return value

    def number(self, data: Mapping[str, Any], path: _Path, key: str, default: float) -> float:
        value = data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
            raise self.fail((*path, key), f"expected a number, got {value!r}")
        return float(value)

    def text(self, data: Mapping[str, Any], path: _Path, key: str) -> str:
        value = self.optional_text(data, path, key)
        if value is None:
            raise self.fail((*path, key), "missing")
        return value

    def optional_text(self, data: Mapping[str, Any], path: _Path, key: str) -> str | None:
        value = data.get(key)
        if value is not None and not isinstance(value, str):
            raise self.fail((*path, key), f"expected a string, got {value!r}")
        return value

    def flag(self, data: Mapping[str, Any], path: _Path, key: str) -> bool:
        value = data.get(key, False)
        if not isinstance(value, bool):
            raise self.fail((*path, key), f"expected true or false, got {value!r}")
        return value


_ACCOUNT_FIELDS = ("id", "access_hash", "first_name", "username", "phone", "auth_key")
_MEMBER_FIELDS = ("id", "access_hash", "first_name", "last_name", "username")
_GROUP_FIELDS = (
    "id",
    "kind",
    "title",
    "username",
    "access_hash",
    "members",
    "admins",
    "read_only",
    "slowmode_seconds",
)
_TRAFFIC_FIELDS = (
    "seed",
    "messages_per_minute",
    "mention_ratio",
    "reply_ratio",
    "keyword_ratio",
    "keywords",
    "joins_per_hour",
)
_WORLD_FIELDS = ("version", "dc_id", "port", "accounts", "members", "groups", "traffic")


class _Validator:
    def __init__(self, reader: _Reader) -> None:
        self.r = reader
        self.ids: set[int] = set()
        self.usernames: set[str] = set()
        self.keys: set[bytes] = set()

    def unique_id(self, value: int, path: _Path, ids: range, what: str) -> int:
        if value not in ids:
            raise self.r.fail(path, f"{what} id {value} outside {ids.start}..{ids.stop - 1}")
        if value in self.ids:
            raise self.r.fail(path, f"duplicate id {value}")
        self.ids.add(value)
        return value

    def username(self, value: str | None, path: _Path) -> str | None:
        if value is None:
            return None
        if not _USERNAME.fullmatch(value):
            raise self.r.fail(
                path, f"invalid username {value!r}: 5-32 of [A-Za-z0-9_], starting with a letter"
            )
        if value.lower() in self.usernames:
            raise self.r.fail(path, f"duplicate username {value!r}")
        self.usernames.add(value.lower())
        return value

    def account(self, raw: object, path: _Path) -> WorldAccount:
        r = self.r
        data = r.mapping(raw, path, _ACCOUNT_FIELDS)
        encoded = r.text(data, path, "auth_key")
        try:
            key = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise r.fail((*path, "auth_key"), "not valid base64") from None
        if len(key) != AUTH_KEY_BYTES:
            raise r.fail((*path, "auth_key"), f"{len(key)} bytes, expected {AUTH_KEY_BYTES}")
        if key in self.keys:
            raise r.fail((*path, "auth_key"), "same auth key as another account")
        self.keys.add(key)
        username = r.text(data, path, "username")
        self.username(username, (*path, "username"))
        return WorldAccount(
            id=self.unique_id(r.integer(data, path, "id"), (*path, "id"), ACCOUNT_IDS, "account"),
            access_hash=r.integer(data, path, "access_hash"),
            first_name=r.optional_text(data, path, "first_name") or "",
            username=username,
            phone=r.optional_text(data, path, "phone"),
            auth_key=key,
        )

    def member(self, raw: object, path: _Path) -> WorldMember:
        r = self.r
        data = r.mapping(raw, path, _MEMBER_FIELDS)
        return WorldMember(
            id=self.unique_id(r.integer(data, path, "id"), (*path, "id"), MEMBER_IDS, "member"),
            access_hash=r.integer(data, path, "access_hash"),
            first_name=r.optional_text(data, path, "first_name") or "",
            last_name=r.optional_text(data, path, "last_name"),
            username=self.username(r.optional_text(data, path, "username"), (*path, "username")),
        )

    def group(self, raw: object, path: _Path, users: set[int]) -> WorldGroup:
        r = self.r
        data = r.mapping(raw, path, _GROUP_FIELDS)
        kind_text = r.text(data, path, "kind")
        if kind_text not in ("basic", "supergroup"):
            raise r.fail((*path, "kind"), f"expected 'basic' or 'supergroup', got {kind_text!r}")
        kind: GroupKind = "basic" if kind_text == "basic" else "supergroup"
        ids = BASIC_GROUP_IDS if kind == "basic" else SUPERGROUP_IDS
        group_id = self.unique_id(r.integer(data, path, "id"), (*path, "id"), ids, kind)
        members = self.user_list(data, path, "members", users)
        admins = self.user_list(data, path, "admins", set(members))
        if kind == "basic" and len(members) > BASIC_GROUP_MAX_MEMBERS:
            raise r.fail(
                (*path, "members"),
                f"{len(members)} members; a basic group holds at most {BASIC_GROUP_MAX_MEMBERS}",
            )
        access_hash = data.get("access_hash")
        if kind == "supergroup":
            access_hash = r.integer(data, path, "access_hash")
        elif access_hash is not None:
            raise r.fail((*path, "access_hash"), "basic groups have no access_hash")
        username = r.optional_text(data, path, "username")
        if kind == "basic" and username is not None:
            raise r.fail((*path, "username"), "basic groups cannot have a username")
        slowmode = r.integer(data, path, "slowmode_seconds", 0)
        if slowmode < 0:
            raise r.fail((*path, "slowmode_seconds"), "must not be negative")
        if kind == "basic" and slowmode:
            raise r.fail((*path, "slowmode_seconds"), "slow mode needs a supergroup")
        title = r.text(data, path, "title")
        if not title:
            raise r.fail((*path, "title"), "must not be empty")
        return WorldGroup(
            id=group_id,
            kind=kind,
            title=title,
            username=self.username(username, (*path, "username")),
            access_hash=access_hash,
            members=members,
            admins=admins,
            read_only=r.flag(data, path, "read_only"),
            slowmode_seconds=slowmode,
        )

    def user_list(
        self, data: Mapping[str, Any], path: _Path, key: str, known: set[int]
    ) -> tuple[int, ...]:
        out: list[int] = []
        seen: set[int] = set()
        for index, value in enumerate(self.r.sequence(data, path, key)):
            where = (*path, key, index)
            if isinstance(value, bool) or not isinstance(value, int):
                raise self.r.fail(where, f"expected a user id, got {value!r}")
            if value not in known:
                problem = "not a member of this group" if key == "admins" else "unknown user id"
                raise self.r.fail(where, f"{problem} {value}")
            if value in seen:
                raise self.r.fail(where, f"listed twice: {value}")
            seen.add(value)
            out.append(value)
        return tuple(out)

    def traffic(self, raw: object, path: _Path) -> TrafficSettings:
        r = self.r
        if raw is None:
            return TrafficSettings()
        data = r.mapping(raw, path, _TRAFFIC_FIELDS)
        defaults = TrafficSettings()
        rates: dict[str, float] = {}
        for key in ("messages_per_minute", "joins_per_hour"):
            rates[key] = r.number(data, path, key, getattr(defaults, key))
            if rates[key] < 0:
                raise r.fail((*path, key), "must not be negative")
        ratios: dict[str, float] = {}
        for key in ("mention_ratio", "reply_ratio", "keyword_ratio"):
            ratios[key] = r.number(data, path, key, getattr(defaults, key))
            if not 0 <= ratios[key] <= 1:
                raise r.fail((*path, key), f"must be between 0 and 1, got {ratios[key]}")
        keywords = data.get("keywords", list(defaults.keywords))
        if not isinstance(keywords, list) or not all(
            isinstance(k, str) and k.strip() for k in keywords
        ):
            raise r.fail((*path, "keywords"), "expected a list of non-empty strings")
        if ratios["keyword_ratio"] > 0 and not keywords:
            raise r.fail((*path, "keywords"), "keyword_ratio > 0 needs at least one keyword")
        return TrafficSettings(
            seed=r.integer(data, path, "seed", 0),
            messages_per_minute=rates["messages_per_minute"],
            joins_per_hour=rates["joins_per_hour"],
            mention_ratio=ratios["mention_ratio"],
            reply_ratio=ratios["reply_ratio"],
            keyword_ratio=ratios["keyword_ratio"],
            keywords=tuple(keywords),
        )


def parse_world(text: str, source: str = "world.yaml") -> World:
    """Parse and validate the YAML text of a world file; `WorldError` names field and line."""
    try:
        screen(text, max_nodes=MAX_WORLD_NODES, loader=_Loader)
    except YamlRefused as exc:
        raise WorldError(f"{source} line {exc.line}: {exc.message}") from None
    except yaml.YAMLError:
        pass  # the loader below reports it with its line
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        raw: object = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source} line {mark.line + 1}" if mark is not None else source
        raise WorldError(f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    finally:
        loader.dispose()
    lines: dict[_Path, int] = {}
    if node is not None:
        _node_lines(node, (), lines)
    reader = _Reader(source, lines)
    check = _Validator(reader)
    data = reader.mapping(raw, (), _WORLD_FIELDS)
    version = reader.integer(data, (), "version")
    if version != WORLD_VERSION:
        raise reader.fail(("version",), f"unsupported version {version}, expected {WORLD_VERSION}")
    dc_id = reader.integer(data, (), "dc_id", 2)
    if not 1 <= dc_id <= 5:
        raise reader.fail(("dc_id",), f"expected 1..5, got {dc_id}")
    port = reader.integer(data, (), "port", 8443)
    if not 1 <= port <= 65535:
        raise reader.fail(("port",), f"expected 1..65535, got {port}")
    accounts = tuple(
        check.account(item, ("accounts", i))
        for i, item in enumerate(reader.sequence(data, (), "accounts"))
    )
    members = tuple(
        check.member(item, ("members", i))
        for i, item in enumerate(reader.sequence(data, (), "members"))
    )
    users = {a.id for a in accounts} | {m.id for m in members}
    groups = tuple(
        check.group(item, ("groups", i), users)
        for i, item in enumerate(reader.sequence(data, (), "groups"))
    )
    return World(
        version=version,
        dc_id=dc_id,
        port=port,
        accounts=accounts,
        members=members,
        groups=groups,
        traffic=check.traffic(data.get("traffic"), ("traffic",)),
    )


def load_world(path: Path) -> World:
    """Read and validate a world file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise WorldError(f"{path}: no such world file") from None
    return parse_world(text, source=path.name)


def world_to_dict(world: World) -> dict[str, Any]:
    """The plain-data form of ``world`` as written to ``world.yaml``."""
    t = world.traffic
    return {
        "version": world.version,
        "dc_id": world.dc_id,
        "port": world.port,
        "accounts": [
            {
                "id": a.id,
                "access_hash": a.access_hash,
                "first_name": a.first_name,
                "username": a.username,
                "phone": a.phone,
                "auth_key": base64.b64encode(a.auth_key).decode("ascii"),
            }
            for a in world.accounts
        ],
        "members": [
            {
                "id": m.id,
                "access_hash": m.access_hash,
                "first_name": m.first_name,
                "last_name": m.last_name,
                "username": m.username,
            }
            for m in world.members
        ],
        "groups": [
            {
                "id": g.id,
                "kind": g.kind,
                "title": g.title,
                "username": g.username,
                "access_hash": g.access_hash,
                "members": list(g.members),
                "admins": list(g.admins),
                "read_only": g.read_only,
                "slowmode_seconds": g.slowmode_seconds,
            }
            for g in world.groups
        ],
        "traffic": {
            "seed": t.seed,
            "messages_per_minute": t.messages_per_minute,
            "mention_ratio": t.mention_ratio,
            "reply_ratio": t.reply_ratio,
            "keyword_ratio": t.keyword_ratio,
            "keywords": list(t.keywords),
            "joins_per_hour": t.joins_per_hour,
        },
    }


def dump_world(world: World, path: Path) -> None:
    """Write ``world`` to ``path`` atomically with mode 0600 (it holds auth keys)."""
    text = yaml.dump(
        world_to_dict(world),
        Dumper=_Dumper,
        sort_keys=False,
        allow_unicode=True,
        default_flow_style=None,
        width=100,
    )
    write_private_file(path, text.encode("utf-8"))


# --------------------------------------------------------------------------- runtime state


class SandboxRuleError(AppError):
    """A request the world refuses; ``rpc_code``/``rpc_message`` are Telegram's answer."""

    rpc_code: ClassVar[int] = 400
    rpc_message: ClassVar[str] = "BAD_REQUEST"

    @property
    def rpc_error(self) -> tuple[int, str]:
        """The (code, message) pair for the server's ``RpcError``."""
        return self.rpc_code, self.rpc_message


class PeerInvalid(SandboxRuleError):
    rpc_message = "PEER_ID_INVALID"


class UserInvalid(SandboxRuleError):
    rpc_message = "USER_ID_INVALID"


class ChatForbidden(SandboxRuleError):
    """Not a member of the basic group (Telegram answers CHAT_ID_INVALID / PEER_ID_INVALID)."""

    rpc_message = "CHAT_ID_INVALID"


class ChannelPrivate(SandboxRuleError):
    """Not a member of the supergroup."""

    rpc_message = "CHANNEL_PRIVATE"


class ChatWriteForbidden(SandboxRuleError):
    status_code = 403
    rpc_code = 403
    rpc_message = "CHAT_WRITE_FORBIDDEN"


class MessageEmpty(SandboxRuleError):
    rpc_message = "MESSAGE_EMPTY"


class MessageTooLong(SandboxRuleError):
    rpc_message = "MESSAGE_TOO_LONG"


class ReplyInvalid(SandboxRuleError):
    rpc_message = "REPLY_MESSAGE_ID_INVALID"


class UserAlreadyParticipant(SandboxRuleError):
    rpc_message = "USER_ALREADY_PARTICIPANT"


class SlowmodeWait(SandboxRuleError):
    status_code = 429
    rpc_code = 420

    def __init__(self, seconds: int) -> None:
        super().__init__(f"slow mode: wait {seconds} s")
        self.seconds = seconds

    @property
    def rpc_error(self) -> tuple[int, str]:
        return self.rpc_code, f"SLOWMODE_WAIT_{self.seconds}"


class DifferenceTooLong(SandboxRuleError):
    """The asked pts is older than the backlog; the server answers ``differenceTooLong``."""

    rpc_message = "PERSISTENT_TIMESTAMP_OUTDATED"

    def __init__(self, message: str, *, current_pts: int) -> None:
        super().__init__(message)
        self.current_pts = current_pts


@dataclass(frozen=True, slots=True)
class Delivery:
    """One update as one fleet account sees it.

    Basic groups: ``message_id``, ``pts`` and ``seq`` are the account's own. Supergroups:
    ``message_id`` and ``pts`` are the channel's, shared by every member, and ``seq`` is 0
    (channel updates go out in ``Updates`` with seq 0, outside the account's seq).
    ``origin_id`` names the event across all accounts' views. ``mentions`` are the user
    ids @mentioned in the text; ``reply_to`` is a message id in this account's view (None if
    the account cannot see the replied message), ``reply_to_origin`` the replied message's
    ``origin_id`` (whoever views it; None if not a reply).
    """

    account_id: int
    group_id: int
    kind: EventKind
    message_id: int
    pts: int
    pts_count: int
    seq: int
    date: int
    sender_id: int
    text: str
    reply_to: int | None
    mentions: tuple[int, ...]
    origin_id: int
    random_id: int | None = None
    reply_to_origin: int | None = None

    @property
    def out(self) -> bool:
        """True when the account sent this message itself."""
        return self.sender_id == self.account_id


@dataclass(frozen=True, slots=True)
class UpdateState:
    """The answer to ``updates.getState`` for one account."""

    pts: int
    qts: int
    seq: int
    date: int


class _AccountBox:
    """An account's common message box: basic-group ids, pts, seq, backlog."""

    def __init__(self, backlog_limit: int, history_limit: int) -> None:
        self.pts = 0
        self.qts = 0
        self.seq = 0
        self.last_message_id = 0
        self.backlog: deque[Delivery] = deque(maxlen=backlog_limit)
        self.history_limit = history_limit
        self.remember_limit = backlog_limit + history_limit
        self.history: dict[int, deque[Delivery]] = {}
        #: origin id → this account's message id, for translating replies.
        self.message_by_origin: OrderedDict[int, int] = OrderedDict()
        self.origin_by_message: dict[int, int] = {}

    def remember(self, origin_id: int, message_id: int) -> None:
        self.message_by_origin[origin_id] = message_id
        self.origin_by_message[message_id] = origin_id
        # Ids older than anything history or backlog keeps cannot be replied to any more.
        while len(self.message_by_origin) > self.remember_limit:
            _, old_message = self.message_by_origin.popitem(last=False)
            self.origin_by_message.pop(old_message, None)


class _ChannelBox:
    """A supergroup's shared message ids, pts and backlog (stored once, viewed per account)."""

    def __init__(self, backlog_limit: int) -> None:
        self.pts = 0
        self.last_message_id = 0
        self.backlog: deque[Delivery] = deque(maxlen=backlog_limit)
        self.message_by_origin: OrderedDict[int, int] = OrderedDict()
        self.origin_by_message: dict[int, int] = {}


class WorldState:
    """The running world: memberships, message ids, pts/seq and backlogs.

    Not thread-safe; the server calls it from its one event loop. ``clock`` gives the unix
    time used for message dates and slow mode. `sender_of` knows who sent each of the last
    ``sender_limit`` events world-wide (messages and joins).
    """

    def __init__(
        self,
        world: World,
        *,
        backlog_limit: int = 10_000,
        history_limit: int = 10_000,
        dedupe_limit: int = 100_000,
        sender_limit: int = 100_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.world = world
        self._clock = clock
        self._backlog_limit = backlog_limit
        self._dedupe_limit = dedupe_limit
        self._accounts = {a.id: _AccountBox(backlog_limit, history_limit) for a in world.accounts}
        self._channels = {
            g.id: _ChannelBox(backlog_limit) for g in world.groups if g.kind == "supergroup"
        }
        self._members: dict[int, set[int]] = {g.id: set(g.members) for g in world.groups}
        self._admins: dict[int, frozenset[int]] = {g.id: frozenset(g.admins) for g in world.groups}
        self._users = {a.id for a in world.accounts} | {m.id for m in world.members}
        self._last_origin = 0
        #: (group, sender) → origin of the sender's latest message there.
        self._last_post: dict[tuple[int, int], int] = {}
        self._last_post_at: dict[tuple[int, int], float] = {}
        self._sent: OrderedDict[tuple[int, int], list[Delivery]] = OrderedDict()
        #: origin → sender of the last ``sender_limit`` origins. Origins are consecutive,
        #: so the one falling out is known and a plain dict stays bounded in O(1).
        self._sender_limit = max(1, sender_limit)
        self._sender_by_origin: dict[int, int] = {}

    # ---- reading

    def state(self, account_id: int) -> UpdateState:
        """``updates.getState`` for ``account_id``."""
        box = self._account(account_id)
        return UpdateState(pts=box.pts, qts=box.qts, seq=box.seq, date=int(self._clock()))

    def channel_pts(self, channel_id: int) -> int:
        """The current pts of a supergroup."""
        return self._channel(channel_id).pts

    def members_of(self, group_id: int) -> frozenset[int]:
        """Current member user ids of a group (joins included)."""
        return frozenset(self._group_members(group_id))

    def groups_of(self, account_id: int) -> list[WorldGroup]:
        """The groups ``account_id`` is in now, in world order (for ``getDialogs``)."""
        self._account(account_id)
        return [g for g in self.world.groups if account_id in self._members[g.id]]

    def difference(self, account_id: int, pts: int) -> list[Delivery]:
        """Basic-group deliveries after ``pts``, oldest first (``updates.getDifference``).

        Raises `DifferenceTooLong` when some of them have left the backlog.
        """
        box = self._account(account_id)
        return _after(box.backlog, pts, box.pts, f"account {account_id}")

    def channel_difference(self, account_id: int, channel_id: int, pts: int) -> list[Delivery]:
        """Supergroup messages after ``pts`` as ``account_id`` sees them, oldest first."""
        box = self._channel(channel_id)
        self._require_member(channel_id, account_id)
        events = _after(box.backlog, pts, box.pts, f"channel {channel_id}")
        return [_view(e, account_id, e.message_id, e.reply_to) for e in events]

    def history(
        self, account_id: int, group_id: int, limit: int = 100, offset_id: int = 0
    ) -> list[Delivery]:
        """Newest first, messages with id below ``offset_id`` (0: from the newest)."""
        self._require_member(group_id, account_id)
        if group_id in self._channels:
            source: Iterable[Delivery] = reversed(self._channels[group_id].backlog)
            view = True
        else:
            source = reversed(self._account(account_id).history.get(group_id, ()))
            view = False
        out: list[Delivery] = []
        for event in source:
            if len(out) >= limit:
                break
            if offset_id and event.message_id >= offset_id:
                continue
            out.append(
                _view(event, account_id, event.message_id, event.reply_to) if view else event
            )
        return out

    def sender_of(self, origin_id: int) -> int | None:
        """Who sent the event ``origin_id`` (a member or an account id); None when unknown
        or older than the last ``sender_limit`` events."""
        return self._sender_by_origin.get(origin_id)

    def last_origin(self, group_id: int, sender_id: int) -> int | None:
        """The ``origin_id`` of ``sender_id``'s latest message in a group (None: none yet)."""
        return self._last_post.get((group_id, sender_id))

    def last_message_id(self, group_id: int, sender_id: int, viewer_id: int) -> int | None:
        """The id under which ``viewer_id`` sees ``sender_id``'s latest message in a group."""
        origin = self._last_post.get((group_id, sender_id))
        if origin is None:
            return None
        return self._message_for(group_id, viewer_id, origin)

    # ---- writing

    def post(
        self,
        group_id: int,
        sender_id: int,
        text: str,
        *,
        reply_to_msg_id: int | None = None,
        reply_to_account: int | None = None,
        random_id: int | None = None,
    ) -> list[Delivery]:
        """Post a message; return one delivery per fleet account in the group.

        ``reply_to_msg_id`` is a message id in the sender's own view (for a simulated member
        in a basic group, which has no view, use ``reply_to_account``: the latest message of
        that account in the group). A repeated ``random_id`` from the same sender returns the
        first call's deliveries and posts nothing (a request re-sent after a reconnect).
        """
        if random_id is not None:
            earlier = self._sent.get((sender_id, random_id))
            if earlier is not None:
                return earlier
        group = self._group(group_id)
        self._require_member(group_id, sender_id)
        is_admin = sender_id in self._admins[group_id]
        if group.read_only and not is_admin:
            raise ChatWriteForbidden(f"user {sender_id} cannot write in group {group_id}")
        if not text.strip():
            raise MessageEmpty("message text is empty")
        if len(text) > MESSAGE_MAX_CHARS:
            raise MessageTooLong(f"message has {len(text)} characters, max {MESSAGE_MAX_CHARS}")
        now = self._clock()
        # Slow mode binds fleet accounts only: the simulated members are the sandbox's own
        # puppets, and their Poisson traffic must not bounce off it.
        if group.slowmode_seconds and not is_admin and sender_id in self._accounts:
            last = self._last_post_at.get((group_id, sender_id))
            if last is not None and now - last < group.slowmode_seconds:
                raise SlowmodeWait(math.ceil(group.slowmode_seconds - (now - last)))
        reply_origin = self._reply_origin(group_id, sender_id, reply_to_msg_id, reply_to_account)
        mentions = tuple(
            dict.fromkeys(
                uid
                for name in _MENTION.findall(text)
                if (uid := self.world.user_ids_by_username.get(name.lower())) is not None
            )
        )
        deliveries = self._emit(
            group_id, sender_id, "message", text, reply_origin, mentions, random_id, now
        )
        self._last_post_at[(group_id, sender_id)] = now
        if random_id is not None:
            self._sent[(sender_id, random_id)] = deliveries
            while len(self._sent) > self._dedupe_limit:
                self._sent.popitem(last=False)
        return deliveries

    def join(self, group_id: int, user_id: int) -> list[Delivery]:
        """Add ``user_id`` to a group; the service message goes to every member account."""
        self._group(group_id)
        if user_id not in self._users:
            raise UserInvalid(f"unknown user {user_id}")
        members = self._members[group_id]
        if user_id in members:
            raise UserAlreadyParticipant(f"user {user_id} is already in group {group_id}")
        if group_id not in self._channels and len(members) >= BASIC_GROUP_MAX_MEMBERS:
            raise SandboxRuleError(f"basic group {group_id} is full")
        members.add(user_id)
        return self._emit(group_id, user_id, "join", "", None, (), None, self._clock())

    # ---- internals

    def _emit(
        self,
        group_id: int,
        sender_id: int,
        kind: EventKind,
        text: str,
        reply_origin: int | None,
        mentions: tuple[int, ...],
        random_id: int | None,
        now: float,
    ) -> list[Delivery]:
        self._last_origin += 1
        origin = self._last_origin
        self._sender_by_origin[origin] = sender_id
        self._sender_by_origin.pop(origin - self._sender_limit, None)
        date = int(now)
        recipients = [uid for uid in self._members[group_id] if uid in self._accounts]
        recipients.sort()
        out: list[Delivery] = []
        channel = self._channels.get(group_id)
        if channel is not None:
            channel.pts += 1
            channel.last_message_id += 1
            reply_to = None if reply_origin is None else channel.message_by_origin.get(reply_origin)
            event = Delivery(
                account_id=0,
                group_id=group_id,
                kind=kind,
                message_id=channel.last_message_id,
                pts=channel.pts,
                pts_count=1,
                seq=0,
                date=date,
                sender_id=sender_id,
                text=text,
                reply_to=reply_to,
                mentions=mentions,
                origin_id=origin,
                random_id=random_id,
                reply_to_origin=reply_origin,
            )
            channel.backlog.append(event)
            channel.message_by_origin[origin] = event.message_id
            channel.origin_by_message[event.message_id] = origin
            while len(channel.message_by_origin) > self._backlog_limit:
                _, old_message = channel.message_by_origin.popitem(last=False)
                channel.origin_by_message.pop(old_message, None)
            out = [_view(event, uid, event.message_id, reply_to) for uid in recipients]
        else:
            for uid in recipients:
                box = self._accounts[uid]
                box.pts += 1
                box.seq += 1
                box.last_message_id += 1
                delivery = Delivery(
                    account_id=uid,
                    group_id=group_id,
                    kind=kind,
                    message_id=box.last_message_id,
                    pts=box.pts,
                    pts_count=1,
                    seq=box.seq,
                    date=date,
                    sender_id=sender_id,
                    text=text,
                    reply_to=(
                        None if reply_origin is None else box.message_by_origin.get(reply_origin)
                    ),
                    mentions=mentions,
                    origin_id=origin,
                    random_id=random_id if uid == sender_id else None,
                    reply_to_origin=reply_origin,
                )
                box.backlog.append(delivery)
                box.history.setdefault(group_id, deque(maxlen=box.history_limit)).append(delivery)
                box.remember(origin, delivery.message_id)
                out.append(delivery)
        if kind == "message":
            self._last_post[(group_id, sender_id)] = origin
        return out

    def _reply_origin(
        self,
        group_id: int,
        sender_id: int,
        reply_to_msg_id: int | None,
        reply_to_account: int | None,
    ) -> int | None:
        if reply_to_account is not None:
            origin = self._last_post.get((group_id, reply_to_account))
            if origin is None:
                raise ReplyInvalid(f"user {reply_to_account} has no message in group {group_id}")
            return origin
        if reply_to_msg_id is None:
            return None
        origins = (
            self._channels[group_id].origin_by_message
            if group_id in self._channels
            else self._accounts[sender_id].origin_by_message
            if sender_id in self._accounts
            else {}
        )
        origin = origins.get(reply_to_msg_id)
        if origin is not None:
            return origin
        raise ReplyInvalid(f"no message {reply_to_msg_id} in group {group_id}")

    def _message_for(self, group_id: int, viewer_id: int, origin: int) -> int | None:
        if group_id in self._channels:
            return self._channels[group_id].message_by_origin.get(origin)
        box = self._accounts.get(viewer_id)
        return None if box is None else box.message_by_origin.get(origin)

    def _account(self, account_id: int) -> _AccountBox:
        box = self._accounts.get(account_id)
        if box is None:
            raise UserInvalid(f"no fleet account {account_id}")
        return box

    def _channel(self, channel_id: int) -> _ChannelBox:
        box = self._channels.get(channel_id)
        if box is None:
            raise PeerInvalid(f"no supergroup {channel_id}")
        return box

    def _group(self, group_id: int) -> WorldGroup:
        group = self.world.groups_by_id.get(group_id)
        if group is None:
            raise PeerInvalid(f"no group {group_id}")
        return group

    def _group_members(self, group_id: int) -> set[int]:
        self._group(group_id)
        return self._members[group_id]

    def _require_member(self, group_id: int, user_id: int) -> None:
        if user_id not in self._group_members(group_id):
            if group_id in self._channels:
                raise ChannelPrivate(f"user {user_id} is not in supergroup {group_id}")
            raise ChatForbidden(f"user {user_id} is not in group {group_id}")


def _view(event: Delivery, account_id: int, message_id: int, reply_to: int | None) -> Delivery:
    return Delivery(
        account_id=account_id,
        group_id=event.group_id,
        kind=event.kind,
        message_id=message_id,
        pts=event.pts,
        pts_count=event.pts_count,
        seq=event.seq,
        date=event.date,
        sender_id=event.sender_id,
        text=event.text,
        reply_to=reply_to,
        mentions=event.mentions,
        origin_id=event.origin_id,
        random_id=event.random_id if event.sender_id == account_id else None,
        reply_to_origin=event.reply_to_origin,
    )


def _after(backlog: deque[Delivery], pts: int, current_pts: int, what: str) -> list[Delivery]:
    if pts >= current_pts:
        return []
    oldest_kept = backlog[0].pts - backlog[0].pts_count if backlog else current_pts
    if pts < oldest_kept:
        raise DifferenceTooLong(
            f"{what}: pts {pts} is older than the backlog (from {oldest_kept})",
            current_pts=current_pts,
        )
    out: list[Delivery] = []
    for event in reversed(backlog):
        if event.pts <= pts:
            break
        out.append(event)
    out.reverse()
    return out
