"""Engine, sessions and the unit of work.

One ``AsyncSession`` per request, job or CLI command: it commits when the work succeeds and
rolls back when it raises. Services and repositories only ``flush()``.

SQLite runs in WAL mode with foreign keys on and a busy timeout, and every transaction
starts with ``BEGIN IMMEDIATE``: writers queue on the database lock up front instead of
failing with SQLITE_BUSY when a read transaction later tries to write (the audit chain
reads its head and then appends).
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from tgfleet import metrics
from tgfleet.exceptions import AppError, ServiceUnavailable

CONNECT_TIMEOUT_SECONDS = 5
COMMAND_TIMEOUT_SECONDS = 60
POOL_TIMEOUT_SECONDS = 10
UNREACHABLE = (OSError, TimeoutError, OperationalError, InterfaceError)
READ_ONLY_OPTION = "tgfleet_read_only"


_OPERATIONS = frozenset({"select", "insert", "update", "delete"})
_STARTED = "tgfleet_started"


def _instrument(engine: AsyncEngine) -> None:
    """Time every statement (``tgfleet_db_query_duration_seconds`` by its verb) and count the
    ones that raise (``tgfleet_db_errors_total`` by exception type)."""

    # SQLAlchemy passes every listener argument by position; only some are used here.
    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def _before(*args: Any) -> None:
        context = args[4]
        if context is not None:
            context.__dict__[_STARTED] = time.perf_counter()

    @event.listens_for(engine.sync_engine, "after_cursor_execute")
    def _after(*args: Any) -> None:
        statement, context = args[2], args[4]
        started = context.__dict__.get(_STARTED) if context is not None else None
        if started is None:
            return
        verb = statement.lstrip()[:6].lower()
        operation = verb if verb in _OPERATIONS else "other"
        metrics.DB_QUERY_DURATION.labels(operation).observe(time.perf_counter() - started)

    @event.listens_for(engine.sync_engine, "handle_error")
    def _error(context: Any) -> None:
        original = context.original_exception
        metrics.DB_ERRORS.labels(type(original).__name__).inc()


class DatabaseUnavailable(ServiceUnavailable):
    code = "database_unavailable"


def create_engine(
    url: str,
    *,
    pool_size: int = 10,
    max_overflow: int = 10,
    sqlite_busy_timeout_ms: int = 5000,
    pre_ping: bool = True,
) -> AsyncEngine:
    """Create the async engine for ``url`` (``sqlite+aiosqlite`` or ``postgresql+asyncpg``).

    ``pre_ping=False`` saves a round trip per checkout where a dead connection may simply
    fail one statement (the caller then fails closed and the pool replaces it)."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        database = parsed.database
        if database and database != ":memory:":
            path = Path(database)
            path.parent.mkdir(parents=True, exist_ok=True)
            # Create the file ourselves, 0600; SQLite gives its -wal and -shm files the
            # same mode.
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        engine = create_async_engine(url)
        _configure_sqlite(engine, sqlite_busy_timeout_ms)
        _instrument(engine)
        return engine
    if backend == "postgresql":
        engine = create_async_engine(
            url,
            pool_size=pool_size,
            max_overflow=max_overflow,
            pool_pre_ping=pre_ping,
            pool_recycle=1800,
            pool_timeout=POOL_TIMEOUT_SECONDS,
            connect_args={
                "timeout": CONNECT_TIMEOUT_SECONDS,
                "command_timeout": COMMAND_TIMEOUT_SECONDS,
                "server_settings": {"application_name": "tgfleet"},
            },
        )
        _instrument(engine)
        return engine
    msg = f"unsupported database {backend!r}: use sqlite+aiosqlite:// or postgresql+asyncpg://"
    raise ValueError(msg)


def _configure_sqlite(engine: AsyncEngine, busy_timeout_ms: int) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control from the driver so that we can emit BEGIN IMMEDIATE.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA foreign_keys = ON")
            cursor.execute("PRAGMA synchronous = NORMAL")
            # Freed pages are zeroed, so a crypto-erased secret's ciphertext does not linger
            # in free pages (copies may remain in the WAL until the next checkpoint).
            cursor.execute("PRAGMA secure_delete = ON")
        finally:
            cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        # A read-only unit of work reads a snapshot without blocking writers (WAL).
        read_only = conn.get_execution_options().get(READ_ONLY_OPTION, False)
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


@asynccontextmanager
async def unit_of_work(
    sessionmaker: async_sessionmaker[AsyncSession], *, read_only: bool = False
) -> AsyncIterator[AsyncSession]:
    """One transaction: commit on success, roll back on error.

    ``read_only`` gives one consistent snapshot for long reads (audit verify, export):
    REPEATABLE READ READ ONLY on PostgreSQL, a deferred transaction on SQLite that does not
    hold the write lock.

    An ``AppError`` with ``keeps_changes`` is committed before it propagates (a failed login
    keeps its audit record). A database that cannot be reached or cannot commit becomes a
    ``DatabaseUnavailable`` (503) rather than a bare driver error.
    """
    async with sessionmaker() as session:
        try:
            # Take the connection (and on SQLite the write lock) up front: a database that
            # cannot be reached fails here, as a clear 503, before any work is done.
            options: dict[str, Any] | None = None
            if read_only:
                options = {READ_ONLY_OPTION: True}
                if session.get_bind().dialect.name == "postgresql":
                    options |= {"isolation_level": "REPEATABLE READ", "postgresql_readonly": True}
            await session.connection(execution_options=options)
        except UNREACHABLE as exc:
            msg = "the database cannot be reached right now; nothing was changed"
            raise DatabaseUnavailable(msg) from exc
        try:
            yield session
        except AppError as exc:
            if exc.keeps_changes:
                await _commit(session)
            else:
                await session.rollback()
            raise
        except BaseException:
            await session.rollback()
            raise
        await _commit(session)


async def _commit(session: AsyncSession) -> None:
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        raise
    except DBAPIError as exc:
        await session.rollback()
        msg = "the database did not accept the change; nothing was saved"
        raise DatabaseUnavailable(msg) from exc


async def ping(engine: AsyncEngine) -> None:
    """One round trip to the database; raises whatever the driver raises."""
    async with engine.connect() as connection:
        await connection.execute(text("SELECT 1"))
