"""What the database-direct commands share: settings, logging, one unit of work.

A command is a thin sync shim: ``run_in_session(settings, fn)`` opens the engine, gives
``fn`` a session inside one unit of work (commit on success, roll back on error) and turns
an ``AppError`` into its message on stderr and exit status 1.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tgfleet import migrations
from tgfleet.audit import keys as audit_keys
from tgfleet.audit.schemas import AuditContext
from tgfleet.auth import service as auth_service
from tgfleet.cli._runtime import console, fail, os_user
from tgfleet.config import Settings, unknown_settings
from tgfleet.exceptions import AppError
from tgfleet.kit.data_dir import ensure_data_dir
from tgfleet.kit.db import UNREACHABLE, create_sessionmaker, engine_for, unit_of_work
from tgfleet.logging import configure_logging, get_logger
from tgfleet.vault.service import Vault

T = TypeVar("T")


def load_settings(*, log_level: str | None = "WARNING") -> Settings:
    """Settings from the environment; a bad value or unsafe data dir exits with its message."""
    try:
        settings = Settings.load()
    except ValueError as exc:
        raise fail(f"invalid settings: {exc}", 2) from exc
    # TGFLEET_LOG_LEVEL=DEBUG wins over a command's quieter default: it is how an operator
    # asks for the traceback of an unexpected error.
    level = settings.log_level if log_level is None or settings.log_level == "DEBUG" else log_level
    configure_logging(level=level, json=settings.effective_log_json)
    for name in unknown_settings(os.environ):
        get_logger(__name__).warning("config.unknown_variable", variable=name)
    try:
        ensure_data_dir(settings)
    except AppError as exc:
        raise fail(exc.message, 2) from exc
    audit_keys.configure(settings)  # loaded by the first audit record the command appends
    return settings


def migrate(settings: Settings, revision: str = "head") -> str | None:
    """Upgrade the schema and return the revision reached; unreachable database: exit 1.
    A schema ahead of this release (a newer one migrated it) stays as it is: upgrading to
    "head" has nothing to do (expand/contract, `tgfleet.migrations`); a contracted one
    past this release exits 2."""
    url = settings.effective_database_url
    state = schema_state(settings)
    if state.fit is migrations.Fit.CONTRACTED:
        raise fail(state.describe(), 2)
    if revision == "head" and state.fit is migrations.Fit.AHEAD:
        get_logger(__name__).warning("db.schema_ahead", revision=state.revision)
        return state.revision
    return _migrating(url, lambda: migrations.upgrade(url, revision))


def downgrade(settings: Settings, revision: str) -> str | None:
    """Take the schema back to ``revision`` with this release's downgrade steps (it drops
    what the later migrations added); the revision reached. Unreachable database: exit 1."""
    url = settings.effective_database_url
    return _migrating(url, lambda: migrations.downgrade(url, revision))


def _migrating(url: str, step: Callable[[], None]) -> str | None:
    try:
        step()
        return asyncio.run(migrations.current_revision(url))
    except UNREACHABLE as exc:
        raise fail(f"the database cannot be reached: {type(exc).__name__}") from exc
    except AppError as exc:
        raise fail(exc.message) from exc


def schema_state(settings: Settings) -> migrations.SchemaState:
    """Where the database's schema is against this code; unreachable database: exit 1."""
    try:
        return asyncio.run(migrations.schema_state(settings.effective_database_url))
    except UNREACHABLE as exc:
        raise fail(f"the database cannot be reached: {type(exc).__name__}") from exc


def require_current_schema(settings: Settings) -> None:
    """Exit 2 unless this code can run on the schema: at its head, or ahead of it (a
    rollout migrates first and the release before keeps running: expand/contract,
    `tgfleet.migrations`); behind, empty or contracted past this code it cannot."""
    state = schema_state(settings)
    if not state.fit.runs:
        raise fail(state.describe(), 2)
    if state.fit is migrations.Fit.AHEAD:
        console.print(state.describe(), highlight=False)


def load_vault(settings: Settings) -> Vault:
    """The vault's keyring from its configured source; no usable key exits 2."""
    try:
        return Vault.load(settings)
    except AppError as exc:
        raise fail(exc.message, 2) from exc


def load_audit_keys(settings: Settings) -> None:
    """This process's audit keys, loaded now (the key file created on first use); a key
    that cannot be used exits 2 with its message, before the command starts serving."""
    try:
        audit_keys.configure(settings)
        audit_keys.load_configured()
    except AppError as exc:
        raise fail(exc.message, 2) from exc


def with_sessionmaker(
    settings: Settings, work: Callable[[async_sessionmaker[AsyncSession]], Awaitable[T]]
) -> T:
    """Run ``work`` with a sessionmaker, for jobs that commit in several units of work."""

    async def main() -> T:
        engine = engine_for(settings)
        try:
            return await work(create_sessionmaker(engine))
        finally:
            await engine.dispose()

    try:
        return asyncio.run(main())
    except AppError as exc:
        raise fail(exc.message) from exc


def security_for(settings: Settings) -> auth_service.Security:
    try:
        return auth_service.Security.from_settings(settings)
    except AppError as exc:
        raise fail(exc.message, 2) from exc


def cli_audit_context() -> AuditContext:
    return AuditContext(actor=f"cli:{os_user()}", ip=None, request_id=None)


def run_in_session(
    settings: Settings,
    work: Callable[[AsyncSession], Awaitable[T]],
    *,
    read_only: bool = False,
) -> T:
    """Run ``work`` in one unit of work against the configured database."""

    async def in_one_unit(maker: async_sessionmaker[AsyncSession]) -> T:
        ensure_data_dir(settings)  # before the engine's first connection (SQLite's file)
        async with unit_of_work(maker, read_only=read_only) as session:
            return await work(session)

    return with_sessionmaker(settings, in_one_unit)
