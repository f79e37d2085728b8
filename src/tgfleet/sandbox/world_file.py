"""Reading and writing the world file (``world.yaml``).

`parse_world`/`load_world` read and validate it (a `WorldError` names the field and its
line); `dump_world` writes it atomically with mode 0600, because it holds every account's
auth key.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import yaml

from tgfleet.kit.files import write_private_file
from tgfleet.kit.yaml_guard import YamlRefused, load
from tgfleet.sandbox.world import WORLD_VERSION, World, WorldError
from tgfleet.sandbox.world_checks import (
    WORLD_FIELDS,
    FieldReader,
    WorldValidator,
)

_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
#: Scalars and collections in one world file (100,000 accounts and their members fit).
MAX_WORLD_NODES = 10_000_000
_Dumper: type[yaml.SafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def parse_world(text: str, source: str = "world.yaml") -> World:
    """Parse and validate the YAML text of a world file; `WorldError` names field and line."""
    try:
        document = load(text, max_nodes=MAX_WORLD_NODES, loader=_Loader, unique_keys=False)
    except YamlRefused as exc:
        raise WorldError(f"{source} line {exc.line}: {exc.message}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source} line {mark.line + 1}" if mark is not None else source
        raise WorldError(f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    raw: object = document.data
    reader = FieldReader(source, document.positions)
    check = WorldValidator(reader)
    data = reader.mapping(raw, (), WORLD_FIELDS)
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
