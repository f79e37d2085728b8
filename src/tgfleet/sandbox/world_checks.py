"""Validation of a parsed world file: every field's type and the world's rules.

`FieldReader` gives typed access to the parsed YAML and fails with the field's path and
line; `WorldValidator` checks each account, member, group and the traffic settings (id
ranges, unique ids, usernames and auth keys, group membership). ``world_file.parse_world``
drives both.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

from tgfleet.kit.yaml_guard import Path as FieldPath
from tgfleet.kit.yaml_guard import Position
from tgfleet.sandbox.world import (
    ACCOUNT_IDS,
    AUTH_KEY_BYTES,
    BASIC_GROUP_IDS,
    BASIC_GROUP_MAX_MEMBERS,
    MEMBER_IDS,
    SUPERGROUP_IDS,
    GroupKind,
    TrafficSettings,
    WorldAccount,
    WorldError,
    WorldGroup,
    WorldMember,
)

_USERNAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{4,31}")


def _format_path(path: FieldPath) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out or "(top level)"


class FieldReader:
    """Typed access to the parsed YAML that fails with the field's path and line."""

    def __init__(self, source: str, positions: Mapping[FieldPath, Position]) -> None:
        self.source = source
        self.positions = positions

    def fail(self, path: FieldPath, problem: str) -> WorldError:
        """The error for ``path``, at the line where its value (or its nearest parent) starts."""
        probe = path
        while probe not in self.positions and probe:
            probe = probe[:-1]
        position = self.positions.get(probe)
        line = None if position is None else position.value_line
        where = f"{self.source} line {line}" if line is not None else self.source
        return WorldError(f"{where}: {_format_path(path)}: {problem}")

    def mapping(self, value: object, path: FieldPath, allowed: Iterable[str]) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(path, "expected a mapping")
        allowed_set = set(allowed)
        for key in value:
            if key not in allowed_set:
                raise self.fail((*path, str(key)), "unknown field")
        return value

    def sequence(self, data: Mapping[str, Any], path: FieldPath, key: str) -> list[Any]:
        value = data.get(key, [])
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.fail((*path, key), "expected a list")
        return value

    def integer(
        self, data: Mapping[str, Any], path: FieldPath, key: str, default: int | None = None
    ) -> int:
        if key not in data or data[key] is None:
            if default is None:
                raise self.fail((*path, key), "missing")
            return default
        value = data[key]
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail((*path, key), f"expected an integer, got {value!r}")
        return value

    def number(self, data: Mapping[str, Any], path: FieldPath, key: str, default: float) -> float:
        value = data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
            raise self.fail((*path, key), f"expected a number, got {value!r}")
        return float(value)

    def text(self, data: Mapping[str, Any], path: FieldPath, key: str) -> str:
        value = self.optional_text(data, path, key)
        if value is None:
            raise self.fail((*path, key), "missing")
        return value

    def optional_text(self, data: Mapping[str, Any], path: FieldPath, key: str) -> str | None:
        value = data.get(key)
        if value is not None and not isinstance(value, str):
            raise self.fail((*path, key), f"expected a string, got {value!r}")
        return value

    def flag(self, data: Mapping[str, Any], path: FieldPath, key: str) -> bool:
        value = data.get(key, False)
        if not isinstance(value, bool):
            raise self.fail((*path, key), f"expected true or false, got {value!r}")
        return value


ACCOUNT_FIELDS = ("id", "access_hash", "first_name", "username", "phone", "auth_key")
MEMBER_FIELDS = ("id", "access_hash", "first_name", "last_name", "username")
GROUP_FIELDS = (
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
TRAFFIC_FIELDS = (
    "seed",
    "messages_per_minute",
    "mention_ratio",
    "reply_ratio",
    "keyword_ratio",
    "keywords",
    "joins_per_hour",
)
WORLD_FIELDS = ("version", "dc_id", "port", "accounts", "members", "groups", "traffic")


class WorldValidator:
    def __init__(self, reader: FieldReader) -> None:
        self.r = reader
        self.ids: set[int] = set()
        self.usernames: set[str] = set()
        self.keys: set[bytes] = set()

    def unique_id(self, value: int, path: FieldPath, ids: range, what: str) -> int:
        if value not in ids:
            raise self.r.fail(path, f"{what} id {value} outside {ids.start}..{ids.stop - 1}")
        if value in self.ids:
            raise self.r.fail(path, f"duplicate id {value}")
        self.ids.add(value)
        return value

    def username(self, value: str | None, path: FieldPath) -> str | None:
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

    def account(self, raw: object, path: FieldPath) -> WorldAccount:
        r = self.r
        data = r.mapping(raw, path, ACCOUNT_FIELDS)
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

    def member(self, raw: object, path: FieldPath) -> WorldMember:
        r = self.r
        data = r.mapping(raw, path, MEMBER_FIELDS)
        return WorldMember(
            id=self.unique_id(r.integer(data, path, "id"), (*path, "id"), MEMBER_IDS, "member"),
            access_hash=r.integer(data, path, "access_hash"),
            first_name=r.optional_text(data, path, "first_name") or "",
            last_name=r.optional_text(data, path, "last_name"),
            username=self.username(r.optional_text(data, path, "username"), (*path, "username")),
        )

    def group(self, raw: object, path: FieldPath, users: set[int]) -> WorldGroup:
        r = self.r
        data = r.mapping(raw, path, GROUP_FIELDS)
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
        self, data: Mapping[str, Any], path: FieldPath, key: str, known: set[int]
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

    def traffic(self, raw: object, path: FieldPath) -> TrafficSettings:
        r = self.r
        if raw is None:
            return TrafficSettings()
        data = r.mapping(raw, path, TRAFFIC_FIELDS)
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
