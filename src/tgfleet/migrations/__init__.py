"""Alembic migrations, shipped inside the package so an installed tgfleet can migrate.

``upgrade`` and ``downgrade`` block (Alembic drives its own event loop in env.py): call
them before the server's loop starts, or through ``asyncio.to_thread``.

Expand/contract (docs/deploy.md "Upgrades and rollback"): during a rollout the database is
migrated first and the previous release keeps running against it, so a schema *ahead* of
this code (a revision it does not know) is accepted: every migration is additive for the
tables the worker reads (``tests/kit/test_expand_contract.py`` checks each one). A schema
*behind* the code (a revision it knows, short of its head) or an empty one is refused: the
code would use columns that are not there. A release that contracts (drops what older code
still reads) must say so in the database: its migration creates the one-row table
``schema_floor`` naming the oldest revision whose code may still run; code that does not
know that revision refuses as well (`Fit.CONTRACTED`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from functools import cache

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from tgfleet.kit.db import create_engine

SCRIPT_LOCATION = "tgfleet:migrations"
# Written by a contracting migration (none yet): the oldest revision whose code may run.
FLOOR_TABLE = "schema_floor"


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    config.attributes["database_url"] = database_url
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str) -> None:
    command.downgrade(alembic_config(database_url), revision)


@cache
def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


@cache
def known_revisions() -> frozenset[str]:
    """Every revision this code ships (read from disk once; `head_revision` with it)."""
    head_revision()
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    return frozenset(s.revision for s in script.walk_revisions())


class Fit(StrEnum):
    """How the database's schema fits this code (see the module docstring)."""

    CURRENT = "current"  # at this code's head
    AHEAD = "ahead"  # a newer release migrated it (expand-only): this code runs
    BEHIND = "behind"  # an older schema: run `tgfleet db upgrade`
    EMPTY = "empty"  # never migrated
    CONTRACTED = "contracted"  # newer, and its floor is past this code: refuse

    @property
    def runs(self) -> bool:
        return self in {Fit.CURRENT, Fit.AHEAD}


@dataclass(frozen=True)
class SchemaState:
    revision: str | None  # the database's
    floor: str | None  # the oldest revision a contracting migration still lets run
    fit: Fit

    def describe(self) -> str:
        """One sentence for an operator: where the schema is against this code."""
        head = head_revision()
        at = self.revision or "(empty)"
        match self.fit:
            case Fit.CURRENT:
                return f"the schema is at this release's head {head}"
            case Fit.AHEAD:
                return (
                    f"the schema is at {at}, ahead of this release's head {head} (a newer "
                    "release migrated it; its migrations are additive, so this one runs)"
                )
            case Fit.CONTRACTED:
                return (
                    f"the schema is at {at} and was contracted: it needs code of revision "
                    f"{self.floor} or later, this release's head is {head}; run a newer "
                    "release, or `tgfleet db downgrade` with the newer one first"
                )
            case _:
                return (
                    f"the database is at revision {at}, this release expects {head}: "
                    "run `tgfleet db upgrade` first"
                )


def fit_of(revision: str | None, floor: str | None) -> Fit:
    if revision is None:
        return Fit.EMPTY
    if revision == head_revision():
        return Fit.CURRENT
    if revision in known_revisions():
        return Fit.BEHIND
    if floor is not None and floor not in known_revisions():
        return Fit.CONTRACTED
    return Fit.AHEAD


def _read_state(sync: Connection) -> SchemaState:
    revision = MigrationContext.configure(sync).get_current_revision()
    floor = None
    if revision is not None and inspect(sync).has_table(FLOOR_TABLE):
        floor = sync.execute(text("SELECT revision FROM schema_floor")).scalar()
    return SchemaState(revision, floor, fit_of(revision, floor))


async def state_on(connection: AsyncConnection) -> SchemaState:
    return await connection.run_sync(_read_state)


async def schema_state(database_url: str) -> SchemaState:
    """The database's revision, its floor, and how it fits this code."""
    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:
            return await state_on(connection)
    finally:
        await engine.dispose()


async def current_revision(database_url: str) -> str | None:
    """The revision the database is at (None for an empty database)."""
    engine = create_engine(database_url)
    try:
        return await revision_of(engine)
    finally:
        await engine.dispose()


async def revision_of(engine: AsyncEngine) -> str | None:
    async with engine.connect() as connection:
        return await connection.run_sync(
            lambda sync: MigrationContext.configure(sync).get_current_revision()
        )
