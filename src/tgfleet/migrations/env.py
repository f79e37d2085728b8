"""Alembic environment: runs migrations on the async engine (SQLite or PostgreSQL)."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection

from tgfleet.kit.db import create_engine
from tgfleet.models import Model

config = context.config
target_metadata = Model.metadata


def _database_url() -> str:
    url = config.attributes.get("database_url") or config.get_main_option("sqlalchemy.url")
    if not url:
        msg = "no database URL given to the migrations"
        raise RuntimeError(msg)
    return str(url)


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


# Any fixed 64-bit number: the key of the advisory lock that serialises migrations.
MIGRATION_LOCK_KEY = 0x7467666C656574  # "tgfleet"


async def _run_async() -> None:
    engine = create_engine(_database_url())
    try:
        async with engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                # Several replicas starting at once migrate one after another, not together.
                await connection.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY}
                )
            await connection.run_sync(_run)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    context.configure(url=_database_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(_run_async())
