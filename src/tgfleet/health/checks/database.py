"""Checks of the database: does it answer, and quickly; can this code run on its schema."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from tgfleet import migrations
from tgfleet.health.checks.result import DATASTORE, result
from tgfleet.health.schemas import CheckResult, Status
from tgfleet.kit.db import READ_ONLY_OPTION


async def response_time(engine: AsyncEngine, check_limit: float) -> list[CheckResult]:
    """``SELECT 1``; a warning when it took over half ``check_limit`` (seconds)."""
    started = time.perf_counter()
    async with _reading(engine) as connection:
        await connection.execute(text("SELECT 1"))
    elapsed = time.perf_counter() - started
    slow = elapsed > check_limit / 2
    return [
        result(
            DATASTORE,
            Status.WARN if slow else Status.PASS,
            round(elapsed * 1000, 2),
            "ms",
            component_id=engine.dialect.name,
            output=f"slow: over half the check limit of {check_limit:g} s" if slow else None,
        )
    ]


async def schema_revision(engine: AsyncEngine) -> list[CheckResult]:
    """The schema's Alembic revision fits this code: its head passes, a schema ahead of it
    (a newer release migrated first, expand-only: `tgfleet.migrations`) warns and stays
    ready; behind, empty or contracted past this code fails, naming both revisions."""
    await asyncio.to_thread(migrations.known_revisions)  # read from disk once, then cached
    async with _reading(engine) as connection:
        state = await migrations.state_on(connection)
    status = {migrations.Fit.CURRENT: Status.PASS, migrations.Fit.AHEAD: Status.WARN}
    return [
        result(
            DATASTORE,
            status.get(state.fit, Status.FAIL),
            state.revision,
            None,
            output=None if state.fit is migrations.Fit.CURRENT else state.describe(),
        )
    ]


@asynccontextmanager
async def _reading(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection whose transaction only reads: on SQLite a deferred ``BEGIN`` (the
    engine's default is ``BEGIN IMMEDIATE``), so a probe neither takes the write lock nor
    waits behind a writer that holds it (WAL readers never block)."""
    async with engine.connect() as connection:
        await connection.execution_options(**{READ_ONLY_OPTION: True})
        yield connection
