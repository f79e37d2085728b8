"""Expand/contract, checked: the migrations walked one revision at a time, the schema
reflected before and after each, and what each did to the tables a worker reads.

During a rolling upgrade the database is migrated first and the workers of the release
before keep running against it until they are replaced (docs/deploy.md "Upgrades and
rollback"). That is safe only if every migration is *additive* for those tables: no table
or column dropped or renamed (a rename reflects as a drop and an add), no column added
NOT NULL without a server default (the old code's INSERTs do not name it), no column made
NOT NULL, no type changed except widened (a longer string, an integer to a bigint).
`violations` lists the breaches of one step; `walk` reflects every step.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from alembic.script import ScriptDirectory
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from tgfleet import migrations
from tgfleet.kit.db import create_engine

# The tables `tgfleet worker` reads or writes (its lease loop, runners, reply gate, status
# and traffic batches, vault and audit records). A migration that changes one of them must
# let the previous release's worker keep running.
WORKER_TABLES = frozenset(
    {
        "account",
        "account_event",
        "account_group",
        "account_lease",
        "account_status",
        "audit_chain_head",
        "audit_record",
        "playbook",
        "playbook_version",
        "reply_claim",
        "reply_window",
        "session_secret",
        "traffic_minute",
        "vault_rotation",
        "worker",
    }
)


@dataclass(frozen=True)
class Column:
    type: str
    nullable: bool
    server_default: bool


@dataclass(frozen=True)
class Table:
    columns: dict[str, Column]
    indexes: frozenset[str]
    constraints: frozenset[str]  # unique and foreign-key constraints, by name


Schema = dict[str, Table]


@dataclass(frozen=True)
class Step:
    """One migration: the worker tables' schema before and after it."""

    revision: str
    before: Schema
    after: Schema

    def touched(self) -> list[str]:
        """Worker tables this migration created, dropped or changed."""
        names = (set(self.before) | set(self.after)) & WORKER_TABLES
        return sorted(n for n in names if self.before.get(n) != self.after.get(n))


def revisions() -> list[str]:
    """Every revision from the first to the head, in order."""
    script = ScriptDirectory.from_config(migrations.alembic_config("sqlite://"))
    return [s.revision for s in reversed(list(script.walk_revisions()))]


def _reflect(connection: Connection) -> Schema:
    inspector = inspect(connection)
    schema: Schema = {}
    for name in inspector.get_table_names():
        if name not in WORKER_TABLES:
            continue
        columns = {
            c["name"]: Column(
                type=str(c["type"].compile(connection.dialect)).upper(),
                nullable=bool(c["nullable"]),
                server_default=c.get("default") is not None,
            )
            for c in inspector.get_columns(name)
        }
        indexes = frozenset(str(i["name"]) for i in inspector.get_indexes(name))
        constraints = frozenset(
            str(c["name"])
            for c in [*inspector.get_unique_constraints(name), *inspector.get_foreign_keys(name)]
        )
        schema[name] = Table(columns, indexes, constraints)
    return schema


async def reflect(database_url: str) -> Schema:
    engine = create_engine(database_url, pool_size=1, max_overflow=0)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(_reflect)
    finally:
        await engine.dispose()


async def walk(database_url: str, revision_list: Sequence[str] | None = None) -> list[Step]:
    """Migrate an empty database one revision at a time; a `Step` per revision."""
    steps: list[Step] = []
    before = await reflect(database_url)
    for revision in revision_list or revisions():
        await asyncio.to_thread(migrations.upgrade, database_url, revision)
        after = await reflect(database_url)
        steps.append(Step(revision, before, after))
        before = after
    return steps


_WIDER = {("INTEGER", "BIGINT"), ("SMALLINT", "INTEGER"), ("SMALLINT", "BIGINT")}


def _widened(old: str, new: str) -> bool:
    """``new`` holds every value ``old`` does: a longer (or unbounded) string, a wider int."""
    if (old, new) in _WIDER:
        return True
    old_base, _, old_size = old.partition("(")
    new_base, _, new_size = new.partition("(")
    if old_base != new_base or old_base not in {"VARCHAR", "CHAR", "CHARACTER VARYING"}:
        return False
    return not new_size or (bool(old_size) and int(new_size[:-1]) >= int(old_size[:-1]))


def violations(step: Step) -> list[str]:
    """What this step does to a worker table that the previous release could not live with."""
    found: list[str] = []
    for name, old in step.before.items():
        new = step.after.get(name)
        if new is None:
            found.append(f"{name}: table dropped")
            continue
        for column, was in old.columns.items():
            now = new.columns.get(column)
            if now is None:
                found.append(f"{name}.{column}: column dropped (or renamed)")
                continue
            if was.type != now.type and not _widened(was.type, now.type):
                found.append(f"{name}.{column}: type {was.type} -> {now.type} (not a widening)")
            if was.nullable and not now.nullable:
                found.append(f"{name}.{column}: made NOT NULL")
        for column, now in new.columns.items():
            if column not in old.columns and not now.nullable and not now.server_default:
                found.append(f"{name}.{column}: new NOT NULL column without a server default")
    return found


def summary(steps: Sequence[Step]) -> dict[str, Any]:
    """Revision -> (worker tables touched, violations), for messages."""
    return {s.revision: (s.touched(), violations(s)) for s in steps}
