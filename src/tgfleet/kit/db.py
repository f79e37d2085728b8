"""Engine, sessions and the unit of work.

One ``AsyncSession`` per request, job or CLI command: it commits when the work succeeds and
rolls back when it raises. Services and repositories only ``flush()``.

SQLite runs in WAL mode with foreign keys on and a busy timeout. A unit of work is one of:

- a *write* (the default): ``BEGIN IMMEDIATE``, taken after the writers of this process
  ahead of it (the write gate, in arrival order): the write lock is held from the first
  statement, so a read-then-append (the audit chain) can never fail half-way with
  SQLITE_BUSY;
- a *read* (``deferred=True``, every GET request): a deferred ``BEGIN``, so it reads a WAL
  snapshot and never waits behind a writer. Its first write statement (an audited read, a
  token's last use) ends the snapshot, waits its turn at the gate and for ``BEGIN
  IMMEDIATE``, and runs on the newest data: reads before the first write may be older than
  it, which is what PostgreSQL's READ COMMITTED gives every transaction anyway. Upgrading
  in place instead would fail at once with SQLITE_BUSY whenever another writer committed
  since the snapshot or holds the lock (SQLite invokes no busy handler there);
- a *snapshot* (``read_only=True``, long reads: audit verify and export): one consistent
  snapshot; a write is refused, on SQLite as on PostgreSQL (REPEATABLE READ READ ONLY).

PostgreSQL needs none of this (row locks; readers never block): a write and a read unit of
work are both READ COMMITTED read-write transactions.

Every engine hides SQL parameters (``hide_parameters``): an error's text and any echo
name the statement only, never the values (password hashes, token hashes, ciphertext).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import os
import re
import time
import weakref
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import event, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.util import await_

from tgfleet import metrics
from tgfleet.exceptions import AppError, ServiceUnavailable

if TYPE_CHECKING:
    from tgfleet.config import Settings

CONNECT_TIMEOUT_SECONDS = 5
COMMAND_TIMEOUT_SECONDS = 60
POOL_TIMEOUT_SECONDS = 10
#: SQLite: how long a read waits for one of the engine's read slots (``_WriteGate``).
SQLITE_READ_WAIT_SECONDS = 30
#: SQLite: pooled connections per engine (one writer at a time, reads share the rest).
SQLITE_POOL_SIZE = 15
UNREACHABLE = (OSError, TimeoutError, OperationalError, InterfaceError)
READ_ONLY_OPTION = "tgfleet_read_only"
TRANSACTION_OPTION = "tgfleet_transaction"


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


class WriteInReadOnlyTransaction(RuntimeError):
    """A write statement in a ``read_only`` unit of work: a bug in the caller (PostgreSQL
    refuses it too)."""


class Mode(enum.Enum):
    WRITE = "write"
    READ = "read"
    SNAPSHOT = "snapshot"


class _WriteGate:
    """The writers of one SQLite engine queue here for their turn, in arrival order.

    SQLite admits one writer at a time. Without the gate every writer holds a pooled
    connection while SQLite's busy handler polls for the lock (sleeping up to 100 ms between
    tries, so the last to arrive may be served first and the first may time out): reads
    then wait for a connection behind them. Writers of other processes still meet at the
    busy timeout.

    A writer gives up (503) only when the queue stands still: when no writer ahead of it
    has finished for ``stall_seconds`` (the busy timeout: one is stuck in a long
    transaction), not because the queue is long; under load a moving queue is served in
    order.

    Reads take one of ``read_slots`` first (the pool's size less two), so that the writer
    whose turn it is always finds a pooled connection: the pool serves its waiters in
    order, and behind a hundred reads a writer would hold everyone's turn meanwhile."""

    def __init__(self, stall_seconds: float, read_slots: int) -> None:
        self.stall_seconds = stall_seconds
        self.read_slots = read_slots
        self._loop: asyncio.AbstractEventLoop | None = None
        self._held = False
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._handoffs = 0
        self._reads = asyncio.Semaphore(read_slots)

    def _bind(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # an engine reused by a new event loop: fresh queues
            self._loop, self._held, self._waiters = loop, False, deque()
            self._reads = asyncio.Semaphore(self.read_slots)
        return loop

    async def acquire_read(self) -> None:
        self._bind()
        try:
            async with asyncio.timeout(SQLITE_READ_WAIT_SECONDS):
                await self._reads.acquire()
        except TimeoutError:
            msg = "the database is too busy to answer right now"
            raise DatabaseUnavailable(msg) from None

    def release_read(self) -> None:
        self._reads.release()

    async def acquire(self) -> None:
        loop = self._bind()
        if not self._held and not self._waiters:
            self._held = True
            return
        turn: asyncio.Future[None] = loop.create_future()
        self._waiters.append(turn)
        try:
            await self._wait_for(turn)
        except BaseException:
            if turn.done() and not turn.cancelled():
                self.release()  # handed the gate just as this writer left: pass it on
            else:
                turn.cancel()
                with contextlib.suppress(ValueError):
                    self._waiters.remove(turn)
            raise

    async def _wait_for(self, turn: asyncio.Future[None]) -> None:
        while not turn.done():
            handoffs = self._handoffs
            await asyncio.wait({turn}, timeout=self.stall_seconds)
            if not turn.done() and self._handoffs == handoffs:
                msg = "the database is busy with other changes right now; nothing was changed"
                raise DatabaseUnavailable(msg)

    def release(self) -> None:
        self._handoffs += 1
        while self._waiters:
            turn = self._waiters.popleft()
            if not turn.done():
                turn.set_result(None)  # the gate passes to that writer, still held
                return
        self._held = False


_GATES: weakref.WeakKeyDictionary[Engine, _WriteGate] = weakref.WeakKeyDictionary()


@dataclass(eq=False)  # compared and hashed as itself: it travels in execution options
class _Transaction:
    """One unit of work's transaction, as the SQLite connection events see it (carried in
    the connection's execution options)."""

    mode: Mode
    gate: _WriteGate | None
    holds_gate: bool = False
    holds_read_slot: bool = False
    writing: bool = False

    async def enter(self) -> None:
        """Before a pooled connection is taken: a writer's turn, or a read slot."""
        if self.gate is None:
            return
        if self.mode is Mode.WRITE:
            await self.enter_gate()
        else:
            await self.gate.acquire_read()
            self.holds_read_slot = True

    async def enter_gate(self) -> None:
        if self.gate is not None and not self.holds_gate:
            await self.gate.acquire()
            self.holds_gate = True

    def leave(self) -> None:
        if self.gate is None:
            return
        if self.holds_gate:
            self.holds_gate = False
            self.gate.release()
        if self.holds_read_slot:
            self.holds_read_slot = False
            self.gate.release_read()


_WRITE_STATEMENT = re.compile(
    r"\s*(?:INSERT|UPDATE|DELETE|REPLACE|CREATE|DROP|ALTER)\b", re.IGNORECASE
)


def _writes(statement: str, context: Any) -> bool:
    if context is not None and (
        context.isinsert or context.isupdate or context.isdelete or context.isddl
    ):
        return True
    return _WRITE_STATEMENT.match(statement) is not None


def engine_for(settings: Settings) -> AsyncEngine:
    """The engine every tgfleet process and command opens on the configured database: the
    same pool and SQLite busy timeout for the API, a worker and a CLI command."""
    return create_engine(
        settings.effective_database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        sqlite_busy_timeout_ms=settings.sqlite_busy_timeout_ms,
    )


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
        pool: dict[str, Any] = {}  # in memory: one connection (StaticPool)
        if database and database != ":memory:":
            path = Path(database)
            path.parent.mkdir(parents=True, exist_ok=True)
            # Create the file ourselves, 0600; SQLite gives its -wal and -shm files the
            # same mode.
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
            pool = {
                "pool_size": SQLITE_POOL_SIZE,
                "max_overflow": 0,
                "pool_timeout": SQLITE_READ_WAIT_SECONDS,
            }
        engine = create_async_engine(url, hide_parameters=True, **pool)
        _configure_sqlite(engine, sqlite_busy_timeout_ms, read_slots=SQLITE_POOL_SIZE - 2)
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
            hide_parameters=True,
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


def _configure_sqlite(engine: AsyncEngine, busy_timeout_ms: int, *, read_slots: int) -> None:
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

    _GATES[engine.sync_engine] = _WriteGate(busy_timeout_ms / 1000, read_slots)

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        # A read reads a snapshot without blocking writers or waiting for them (WAL).
        options = conn.get_execution_options()
        state: _Transaction | None = options.get(TRANSACTION_OPTION)
        if state is not None:
            deferred = state.mode is not Mode.WRITE
            state.writing = not deferred
        else:  # a bare connection (health probes, migrations)
            deferred = options.get(READ_ONLY_OPTION, False)
        conn.exec_driver_sql("BEGIN" if deferred else "BEGIN IMMEDIATE")

    # Registered before the statement timing (``_instrument``): a wait for the write lock
    # is the statement's time too.
    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def _before_write(*args: Any) -> None:
        conn, cursor, statement, context = args[0], args[1], args[2], args[4]
        state: _Transaction | None = conn.get_execution_options().get(TRANSACTION_OPTION)
        if state is None or state.writing or not _writes(statement, context):
            return
        if state.mode is Mode.SNAPSHOT:
            msg = "a write statement in a read-only unit of work"
            raise WriteInReadOnlyTransaction(msg)
        if conn.in_nested_transaction():
            msg = "a read unit of work cannot start writing inside a savepoint"
            raise WriteInReadOnlyTransaction(msg)
        # Upgrade the read: end its snapshot (it wrote nothing), wait for the writers ahead,
        # then take the write lock. Outside a transaction SQLite's busy handler waits for
        # the lock; inside a read one it would answer SQLITE_BUSY at once.
        await_(state.enter_gate())
        cursor.execute("COMMIT")
        cursor.execute("BEGIN IMMEDIATE")
        state.writing = True


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


@asynccontextmanager
async def unit_of_work(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    read_only: bool = False,
    deferred: bool = False,
) -> AsyncIterator[AsyncSession]:
    """One transaction: commit on success, roll back on error.

    By default a write (on SQLite the write lock is taken up front). ``deferred`` starts as
    a read that takes the lock only at its first write, so it never waits behind writers
    while it only reads (GET requests); ``read_only`` gives one consistent snapshot for long
    reads (audit verify, export) and refuses writes: REPEATABLE READ READ ONLY on
    PostgreSQL. See the module's docstring.

    An ``AppError`` with ``keeps_changes`` is committed before it propagates (a failed login
    keeps its audit record). A database that cannot be reached or cannot commit becomes a
    ``DatabaseUnavailable`` (503) rather than a bare driver error.
    """
    mode = Mode.SNAPSHOT if read_only else Mode.READ if deferred else Mode.WRITE
    async with sessionmaker() as session:
        bind = session.get_bind()
        state = _Transaction(mode, _GATES.get(bind.engine))
        try:
            await state.enter()
            # Take the connection (and for a write on SQLite the write lock) up front: a
            # database that cannot be reached fails here, as a clear 503, before any work.
            options: dict[str, Any] = {TRANSACTION_OPTION: state}
            if mode is Mode.SNAPSHOT:
                options[READ_ONLY_OPTION] = True
                if bind.dialect.name == "postgresql":
                    options |= {"isolation_level": "REPEATABLE READ", "postgresql_readonly": True}
            await session.connection(execution_options=options)
        except UNREACHABLE as exc:
            state.leave()
            msg = "the database cannot be reached right now; nothing was changed"
            raise DatabaseUnavailable(msg) from exc
        except BaseException:
            state.leave()
            raise
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
        else:
            await _commit(session)
        finally:
            state.leave()


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
