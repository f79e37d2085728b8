"""The database kit and the migrations, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.pool import QueuePool

from tests.conftest import make_settings
from tgfleet import migrations
from tgfleet.kit.db import create_engine, create_sessionmaker, engine_for, unit_of_work
from tgfleet.models import Model, Role


class TestMigrations:
    async def test_schema_matches_models(self, db_url: str) -> None:
        """The migrated schema has exactly the tables and columns the models declare."""
        engine = create_engine(db_url)

        def diff(connection: Connection) -> list[object]:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            return list(compare_metadata(context, Model.metadata))

        try:
            async with engine.connect() as connection:
                differences = await connection.run_sync(diff)
        finally:
            await engine.dispose()
        assert differences == []

    async def test_downgrade_to_base_and_upgrade_again(self, db_url: str) -> None:
        """Every migration reverses cleanly and re-applies (both databases)."""
        await asyncio.to_thread(migrations.downgrade, db_url, "base")
        assert await migrations.current_revision(db_url) is None
        await asyncio.to_thread(migrations.upgrade, db_url)
        assert await migrations.current_revision(db_url) == migrations.head_revision()

    async def test_builtin_roles_are_seeded(self, db_url: str) -> None:
        engine = create_engine(db_url)
        try:
            async with unit_of_work(create_sessionmaker(engine)) as session:
                rows = (await session.execute(text("SELECT name, builtin FROM role"))).all()
        finally:
            await engine.dispose()
        assert {(name, bool(builtin)) for name, builtin in rows} == {
            ("admin", True),
            ("operator", True),
            ("viewer", True),
            ("auditor", True),
        }


class TestUnitOfWork:
    async def test_commits_on_success(self, db_url: str) -> None:
        engine = create_engine(db_url)
        maker = create_sessionmaker(engine)
        try:
            async with unit_of_work(maker) as session:
                session.add(Role(name="committed", description="", builtin=False, permissions=[]))
            async with unit_of_work(maker) as session:
                found = await session.scalar(
                    text("SELECT count(*) FROM role WHERE name='committed'")
                )
        finally:
            await engine.dispose()
        assert found == 1

    async def test_rolls_back_on_error(self, db_url: str) -> None:
        """An exception inside the unit of work leaves nothing behind."""
        engine = create_engine(db_url)
        maker = create_sessionmaker(engine)
        try:

            async def failing_work() -> None:
                async with unit_of_work(maker) as session:
                    session.add(Role(name="ghost", description="", builtin=False, permissions=[]))
                    await session.flush()
                    raise RuntimeError("boom")

            with pytest.raises(RuntimeError, match="boom"):
                await failing_work()
            async with unit_of_work(maker) as session:
                found = await session.scalar(text("SELECT count(*) FROM role WHERE name='ghost'"))
        finally:
            await engine.dispose()
        assert found == 0


class TestSqlite:
    async def test_pragmas(self, tmp_path: Path) -> None:
        """WAL, foreign keys and the busy timeout are on for every connection."""
        engine = create_engine(
            f"sqlite+aiosqlite:///{tmp_path / 'p.db'}", sqlite_busy_timeout_ms=1234
        )
        try:
            async with engine.connect() as connection:
                mode = await connection.scalar(text("PRAGMA journal_mode"))
                keys = await connection.scalar(text("PRAGMA foreign_keys"))
                timeout = await connection.scalar(text("PRAGMA busy_timeout"))
        finally:
            await engine.dispose()
        assert (mode, keys, timeout) == ("wal", 1, 1234)

    async def test_every_process_opens_the_configured_engine(self, tmp_path: Path) -> None:
        """engine_for (the API, a worker and every CLI command) takes the busy timeout and
        the pool from the settings: `tgfleet worker` used to omit the timeout, the CLI the
        pool size."""
        sqlite = engine_for(
            make_settings(
                f"sqlite+aiosqlite:///{tmp_path / 'e.db'}", tmp_path, sqlite_busy_timeout_ms=4321
            )
        )
        postgres = engine_for(
            make_settings(
                "postgresql+asyncpg://nobody@127.0.0.1:1/none",
                tmp_path,
                db_pool_size=3,
                db_max_overflow=4,
            )
        )
        try:
            async with sqlite.connect() as connection:
                timeout = await connection.scalar(text("PRAGMA busy_timeout"))
            pool = postgres.pool
            assert isinstance(pool, QueuePool)
            assert (timeout, pool.size(), pool._max_overflow) == (4321, 3, 4)
        finally:
            await sqlite.dispose()
            await postgres.dispose()

    def test_unsupported_database_is_refused(self) -> None:
        with pytest.raises(ValueError, match="unsupported database 'mysql'"):
            create_engine("mysql+aiomysql://localhost/x")
